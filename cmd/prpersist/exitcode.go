package main

import (
	"fmt"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Exit statuses, the sense categories sg3_utils' include/sg_lib.h defines
// (SG_LIB_SYNTAX_ERROR, SG_LIB_CAT_*, SG_LIB_FILE_ERROR) and sg_persist returns,
// so that scripts written for sg_persist read prpersist's status the same way.
const (
	exitOK            = 0  // SG_LIB_CAT_CLEAN
	exitSyntax        = 1  // SG_LIB_SYNTAX_ERROR
	exitNotReady      = 2  // SG_LIB_CAT_NOT_READY: sense key 2
	exitMediumHard    = 3  // SG_LIB_CAT_MEDIUM_HARD: sense keys 3, 4 and 8
	exitIllegalReq    = 5  // SG_LIB_CAT_ILLEGAL_REQ: sense key 5 except 20h/00h and 21h/00h
	exitUnitAttention = 6  // SG_LIB_CAT_UNIT_ATTENTION: sense key 6
	exitDataProtect   = 7  // SG_LIB_CAT_DATA_PROTECT: sense key 7
	exitInvalidOp     = 9  // SG_LIB_CAT_INVALID_OP: 5/20h/00h
	exitCopyAborted   = 10 // SG_LIB_CAT_COPY_ABORTED: sense key 0Ah
	exitAborted       = 11 // SG_LIB_CAT_ABORTED_COMMAND: sense key 0Bh, ASC other than 10h
	exitMiscompare    = 14 // SG_LIB_CAT_MISCOMPARE: sense key 0Eh
	exitFile          = 15 // SG_LIB_FILE_ERROR
	exitNoSense       = 20 // SG_LIB_CAT_NO_SENSE: sense key 0
	exitRecovered     = 21 // SG_LIB_CAT_RECOVERED: sense key 1
	exitLBARange      = 22 // SG_LIB_LBA_OUT_OF_RANGE: 5/21h/00h
	exitResConflict   = 24 // SG_LIB_CAT_RES_CONFLICT: status 18h
	exitBusy          = 26 // SG_LIB_CAT_BUSY: status 08h
	exitTaskSetFull   = 27 // SG_LIB_CAT_TS_FULL: status 28h
	exitACAActive     = 28 // SG_LIB_CAT_ACA_ACTIVE: status 30h
	exitTaskAborted   = 29 // SG_LIB_CAT_TASK_ABORTED: status 40h
	exitProtection    = 40 // SG_LIB_CAT_PROTECTION: 0Bh/10h/xx
	exitMalformed     = 97 // SG_LIB_CAT_MALFORMED
	exitSense         = 98 // SG_LIB_CAT_SENSE: sense data of no other category
	exitOther         = 99 // SG_LIB_CAT_OTHER
)

// senseCategory maps parsed sense to its category the way sg_lib's
// sg_err_category_sense does.
func senseCategory(s scsi.Sense) int {
	switch s.Key {
	case scsi.KeyNoSense:
		return exitNoSense
	case scsi.KeyRecoveredError:
		return exitRecovered
	case scsi.KeyNotReady:
		return exitNotReady
	case scsi.KeyMediumError, scsi.KeyHardwareError, scsi.KeyBlankCheck:
		return exitMediumHard
	case scsi.KeyIllegalRequest:
		switch {
		case s.ASC == 0x20 && s.ASCQ == 0:
			return exitInvalidOp
		case s.ASC == 0x21 && s.ASCQ == 0:
			return exitLBARange
		}
		return exitIllegalReq
	case scsi.KeyUnitAttention:
		return exitUnitAttention
	case scsi.KeyDataProtect:
		return exitDataProtect
	case scsi.KeyCopyAborted:
		return exitCopyAborted
	case scsi.KeyAbortedCommand:
		if s.ASC == 0x10 {
			return exitProtection
		}
		return exitAborted
	case scsi.KeyMiscompare:
		return exitMiscompare
	}
	return exitSense
}

// replyCategory is the exit status for a helper reply. It departs from
// sg_persist in one place: sg_ll_persistent_reserve_in/out treat CHECK CONDITION
// with NO SENSE or RECOVERED ERROR as success, but a helper sends no data with
// CHECK CONDITION (docs/pr-helper-protocol.md §2.4), so there is nothing to show and prpersist
// reports 20 or 21 instead of printing an empty payload. CHECK CONDITION without
// parsable sense is SG_LIB_CAT_OTHER, as sg_cmds_process_resp makes it.
func replyCategory(rep *wire.Reply) (cat int, sense scsi.Sense, hasSense bool) {
	switch rep.Status {
	case scsi.StatusGood, scsi.StatusConditionMet:
		return exitOK, scsi.Sense{}, false
	case scsi.StatusCheckCondition:
		s, ok := scsi.ParseSense(rep.Sense[:])
		if !ok {
			return exitOther, s, false
		}
		return senseCategory(s), s, true
	case scsi.StatusReservationConflict:
		return exitResConflict, scsi.Sense{}, false
	case scsi.StatusBusy:
		return exitBusy, scsi.Sense{}, false
	case scsi.StatusTaskSetFull:
		return exitTaskSetFull, scsi.Sense{}, false
	case scsi.StatusACAActive:
		return exitACAActive, scsi.Sense{}, false
	case scsi.StatusTaskAborted:
		return exitTaskAborted, scsi.Sense{}, false
	}
	return exitOther, scsi.Sense{}, false
}

// categoryString is the text sg3_utils 1.46 gives an exit status (sg_lib's
// sg_exit2str table, used by sg_get_category_sense_str): sg_persist prints it
// after "PR in (...): " and "sg_persist failed: ". With longer (sg_persist -v)
// the explanation is appended. The lab transcripts show "Device not ready",
// "Unit attention" and "Reservation conflict" from this table.
func categoryString(cat int, longer bool) string {
	name, more := "", ""
	switch cat {
	case exitOK:
		name, more = "No errors", "may also convey true"
	case exitSyntax:
		name, more = "Syntax error", "command line options (usually)"
	case exitNotReady:
		name, more = "Device not ready", "type: sense key"
	case exitMediumHard:
		name, more = "Medium or hardware error", "type: sense key (plus blank check for tape)"
	case exitIllegalReq:
		name, more = "Illegal request", "type: sense key, apart from Invalid opcode"
	case exitUnitAttention:
		name, more = "Unit attention", "type: sense key"
	case exitDataProtect:
		name, more = "Data protect", "type: sense key; write protected media?"
	case exitInvalidOp:
		name, more = "Illegal request, Invalid opcode", "type: sense key + asc,ascq"
	case exitCopyAborted:
		name, more = "Copy aborted", "type: sense key"
	case exitAborted:
		name, more = "Aborted command", "type: sense key, other than protection related (asc=0x10)"
	case exitMiscompare:
		name, more = "Miscompare", "type: sense key"
	case exitFile:
		name = "File error"
	case exitNoSense:
		name, more = "No sense key", "type: probably additional sense code"
	case exitRecovered:
		name, more = "Recovered error (warning)", "type: sense key"
	case exitLBARange:
		name = "LBA out of range"
	case exitResConflict:
		name, more = "Reservation conflict", "type: SCSI status"
	case exitBusy:
		name, more = "Busy", "type: SCSI status"
	case exitTaskSetFull:
		name, more = "Task set full", "type: SCSI status"
	case exitACAActive:
		name, more = "ACA active", "type: SCSI status"
	case exitTaskAborted:
		name, more = "Task aborted", "type: SCSI status"
	case exitProtection:
		name = "Aborted command, protection error"
	case exitMalformed:
		name, more = "Malformed SCSI command", "trouble building command"
	case exitSense:
		name, more = "Some other sense error", "try '-v' option for more information"
	case exitOther:
		name, more = "Some other error", "possible transport of driver issue"
	default:
		return fmt.Sprintf("Exit status: %d", cat)
	}
	if longer && more != "" {
		return name + ", " + more
	}
	return name
}

// senseShown reports whether sg_persist prints the decoded sense without -v:
// sg3_utils' sg_cmds_process_helper stays quiet for the common categories and
// prints the rest (unit attention, medium/hardware error, recovered, other).
func senseShown(cat int) bool {
	switch cat {
	case exitNotReady, exitInvalidOp, exitIllegalReq, exitLBARange, exitAborted, exitCopyAborted,
		exitDataProtect, exitProtection, exitNoSense, exitMiscompare:
		return false
	}
	return true
}
