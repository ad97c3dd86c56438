package main

import (
	"testing"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// TestReplyCategory pins the exit status for each reply class to sg3_utils'
// SG_LIB_CAT_* numbers (include/sg_lib.h).
func TestReplyCategory(t *testing.T) {
	cc := func(key, asc, ascq byte) *wire.Reply {
		r := &wire.Reply{Status: scsi.StatusCheckCondition}
		r.SetSense(scsi.Sense{Key: key, ASC: asc, ASCQ: ascq}.Fixed())
		return r
	}
	descriptor := &wire.Reply{Status: scsi.StatusCheckCondition}
	descriptor.SetSense([]byte{0x72, 0x06, 0x2a, 0x05, 0, 0, 0, 0})
	tests := []struct {
		name string
		rep  *wire.Reply
		want int
	}{
		{"GOOD", &wire.Reply{Status: scsi.StatusGood}, 0},
		{"CONDITION MET", &wire.Reply{Status: scsi.StatusConditionMet}, 0},
		{"NOT READY 02/04/00", cc(2, 0x04, 0), 2},
		{"LIO 02/08/00 for unregistered RESERVE", cc(2, 0x08, 0), 2},
		{"MEDIUM ERROR", cc(3, 0x11, 0), 3},
		{"HARDWARE ERROR", cc(4, 0x44, 0), 3},
		{"BLANK CHECK", cc(8, 0, 0), 3},
		{"ILLEGAL REQUEST 05/24/00", cc(5, 0x24, 0), 5},
		{"ILLEGAL REQUEST 05/26/04", cc(5, 0x26, 4), 5},
		{"ILLEGAL REQUEST 05/20/00 invalid opcode", cc(5, 0x20, 0), 9},
		{"ILLEGAL REQUEST 05/21/00 LBA out of range", cc(5, 0x21, 0), 22},
		{"UNIT ATTENTION 06/2A/05", cc(6, 0x2a, 5), 6},
		{"UNIT ATTENTION, descriptor format", descriptor, 6},
		{"DATA PROTECT", cc(7, 0x27, 7), 7},
		{"COPY ABORTED", cc(0xa, 0, 0), 10},
		{"ABORTED COMMAND 0B/08/00", cc(0xb, 0x08, 0), 11},
		{"ABORTED COMMAND 0B/10/01 protection", cc(0xb, 0x10, 1), 40},
		{"MISCOMPARE", cc(0xe, 0x1d, 0), 14},
		{"NO SENSE", cc(0, 0, 0), 20},
		{"RECOVERED ERROR", cc(1, 0x17, 0), 21},
		{"VENDOR SPECIFIC key", cc(9, 0, 0), 98},
		{"VOLUME OVERFLOW", cc(0xd, 0, 0), 98},
		{"CHECK CONDITION without sense", &wire.Reply{Status: scsi.StatusCheckCondition}, 99},
		{"RESERVATION CONFLICT", &wire.Reply{Status: scsi.StatusReservationConflict}, 24},
		{"BUSY", &wire.Reply{Status: scsi.StatusBusy}, 26},
		{"TASK SET FULL", &wire.Reply{Status: scsi.StatusTaskSetFull}, 27},
		{"ACA ACTIVE", &wire.Reply{Status: scsi.StatusACAActive}, 28},
		{"TASK ABORTED", &wire.Reply{Status: scsi.StatusTaskAborted}, 29},
		{"unknown status 0x22", &wire.Reply{Status: 0x22}, 99},
	}
	for _, tc := range tests {
		if got, _, _ := replyCategory(tc.rep); got != tc.want {
			t.Errorf("%s: exit %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestCategoryStrings(t *testing.T) {
	tests := []struct {
		cat    int
		longer bool
		want   string
	}{
		{exitResConflict, false, "Reservation conflict"}, // transcripts: "sg_persist failed: Reservation conflict"
		{exitUnitAttention, false, "Unit attention"},     // "PR in (Read reservation): Unit attention"
		{exitNotReady, false, "Device not ready"},        // lab: "PR out (register and move): Device not ready"
		{exitResConflict, true, "Reservation conflict, type: SCSI status"},
		{exitMalformed, false, "Malformed SCSI command"},
		{exitInvalidOp, false, "Illegal request, Invalid opcode"},
		{exitOther, true, "Some other error, possible transport of driver issue"},
		{exitFile, true, "File error"},
		{123, false, "Exit status: 123"},
	}
	for _, tc := range tests {
		if got := categoryString(tc.cat, tc.longer); got != tc.want {
			t.Errorf("categoryString(%d, %v) = %q, want %q", tc.cat, tc.longer, got, tc.want)
		}
	}
}

func TestSenseShown(t *testing.T) {
	for cat, want := range map[int]bool{exitUnitAttention: true, exitMediumHard: true, exitRecovered: true, exitSense: true,
		exitNotReady: false, exitIllegalReq: false, exitInvalidOp: false, exitAborted: false, exitNoSense: false} {
		if got := senseShown(cat); got != want {
			t.Errorf("senseShown(%d) = %v, want %v", cat, got, want)
		}
	}
}
