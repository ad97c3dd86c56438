package pr

import (
	"encoding/binary"
	"strings"

	"github.com/prhelper/prhelper/scsi"
)

// Operation codes the access check (docs/spc4-pr.md §10) and the SPC-2 reservation
// logic (§12) know by name.
const (
	opReserve6        = 0x16
	opRelease6        = 0x17
	opReserve10       = 0x56
	opRelease10       = 0x57
	opLogSense        = 0x4d
	opAccessCtrlIn    = 0x86
	opAccessCtrlOut   = 0x87
	opServiceActIn12  = 0xab
	opServiceActIn16  = 0x9e
	opReadCapacity10  = 0x25
	opMaintenanceIn   = 0xa3
	opModeSense6      = 0x1a
	opModeSense10     = 0x5a
	opReadAttribute   = 0x8c
	opReadBuffer      = 0x3c
	opReceiveDiag     = 0x1c
	opSecurityProtoIn = 0xa2
	opSyncCache10     = 0x35
	opSyncCache16     = 0x91
	saReadCapacity16  = 0x10
)

// dataDirection is a command's data transfer direction.
type dataDirection int

const (
	dirNone dataDirection = iota
	dirIn
	dirOut
)

// direction classifies a CDB by data direction for LIO's rule 4 (§10). The
// table covers the SBC-3/SPC-4 commands a disk sees; VERIFY and FORMAT UNIT
// transfer data only with BYTCHK / FMTDATA set; unknown opcodes count as
// no-data.
func direction(cdb []byte) dataDirection {
	b1 := byte(0)
	if len(cdb) > 1 {
		b1 = cdb[1]
	}
	switch cdb[0] {
	case 0x08, 0x28, 0xa8, 0x88, // READ(6/10/12/16)
		opServiceActIn16, opServiceActIn12, 0x37, 0xb7, // READ CAPACITY(16) etc., READ DEFECT DATA
		0x84, opModeSense6, opModeSense10, opReadBuffer, opReceiveDiag, // RECEIVE COPY RESULTS, ...
		opSecurityProtoIn, opReadAttribute, opMaintenanceIn, opInquiry, opReportLUNs,
		opRequestSense, opLogSense, opReadCapacity10, scsi.OpPersistentReserveIn, opAccessCtrlIn:
		return dirIn
	case 0x0a, 0x2a, 0xaa, 0x8a, // WRITE(6/10/12/16)
		0x2e, 0xae, 0x8e, // WRITE AND VERIFY
		0x41, 0x93, 0x42, 0x89, 0x8b, // WRITE SAME(10/16), UNMAP, COMPARE AND WRITE, ORWRITE
		0x15, 0x55, 0x3b, 0x1d, 0x83, // MODE SELECT(6/10), WRITE BUFFER, SEND DIAGNOSTIC, EXTENDED COPY
		0xa4, 0xb5, scsi.OpPersistentReserveOut, opAccessCtrlOut: // MAINTENANCE OUT, SECURITY PROTOCOL OUT
		return dirOut
	case 0x2f, 0xaf, 0x8f: // VERIFY(10/12/16): data-out only with BYTCHK
		if b1&0x06 != 0 {
			return dirOut
		}
	case 0x04: // FORMAT UNIT: data-out only with FMTDATA
		if b1&0x10 != 0 {
			return dirOut
		}
	}
	return dirNone
}

// serviceAction returns the service action field of byte 1, or 0xff.
func serviceAction(cdb []byte) byte {
	if len(cdb) < 2 {
		return 0xff
	}
	return cdb[1] & 0x1f
}

// alwaysAllowed is rule 1 of LIO core_scsi3_pr_seq_non_holder (§10): commands a
// non-holder may always run. READ CAPACITY(16) joins with ReadCapacity16AlwaysAllowed (D23).
func alwaysAllowed(p Profile, cdb []byte) bool {
	switch cdb[0] {
	case opInquiry, opLogSense, opReportLUNs, opRequestSense, scsi.OpPersistentReserveIn,
		opAccessCtrlIn, opAccessCtrlOut, opServiceActIn12, opReadCapacity10, scsi.OpTestUnitReady,
		opReserve6, opReserve10, opRelease6, opRelease10:
		return true
	case opMaintenanceIn:
		switch serviceAction(cdb) {
		case 0x0b, 0x05, 0x0e, 0x0a, 0x0f: // REPORT ALIASES, IDENTIFYING INFORMATION, PRIORITY, TARGET PORT GROUPS, TIMESTAMP
			return true
		}
	case opServiceActIn16:
		return p.ReadCapacity16AlwaysAllowed && serviceAction(cdb) == saReadCapacity16
	}
	return false
}

// readCheckClass reports whether cdb is on rule 2 of §10 (MODE SENSE, READ
// ATTRIBUTE, READ BUFFER, RECEIVE DIAGNOSTIC RESULTS, SECURITY PROTOCOL IN,
// MAINTENANCE IN 0Ch/0Dh/10h): allowed when registered or under the WE types.
// known is false for a MAINTENANCE IN service action LIO does not know (RC).
func readCheckClass(cdb []byte) (in, known bool) {
	switch cdb[0] {
	case opModeSense6, opModeSense10, opReadAttribute, opReadBuffer, opReceiveDiag, opSecurityProtoIn:
		return true, true
	case opMaintenanceIn:
		switch serviceAction(cdb) {
		case 0x0c, 0x0d, 0x10:
			return true, true
		}
		return true, false
	}
	return false, true
}

// isSyncCache reports SYNCHRONIZE CACHE(10/16).
func isSyncCache(cdb []byte) bool { return cdb[0] == opSyncCache10 || cdb[0] == opSyncCache16 }

// accessHolder is LIO's holder test in the reservation check (§6 step 3): the
// (representative) holder registration identifies the nexus.
func (st *State) accessHolder(n Nexus) bool {
	h := st.holderIndex()
	return h >= 0 && st.Registrations[h].Nexus.covers(n)
}

// accessRegistered is "registered" for the reservation check. With
// NodeACLGranularity (D16) it is LIO's DEF_PR_REG_ACTIVE flag: any registration
// of the nexus's initiator device at its target port, forced off when the holder
// is that device with another ISID; otherwise the nexus itself is registered.
// Under SharedRegisteredFlag (D29) a registration whose flag removal cleared
// (Registration.FlagCleared) does not count.
func (st *State) accessRegistered(p Profile, n Nexus) bool {
	flagged := func(r Registration) bool { return !p.SharedRegisteredFlag || !r.FlagCleared }
	if !p.NodeACLGranularity {
		i := st.regFor(n)
		return i >= 0 && flagged(st.Registrations[i])
	}
	if h := st.holderIndex(); h >= 0 {
		hn := st.Registrations[h].Nexus
		if hn.RTPI == n.RTPI && hn.Initiator.SameNode(n.Initiator) && hn.Initiator.ISID != "" &&
			!strings.EqualFold(hn.Initiator.ISID, n.Initiator.ISID) {
			return false
		}
	}
	for _, r := range st.Registrations {
		if r.Nexus.RTPI == n.RTPI && r.Nexus.Initiator.SameNode(n.Initiator) {
			return flagged(r)
		}
	}
	return false
}

// prOutAllowed is rule 3 of §10 for PERSISTENT RESERVE OUT from a non-holder
// while a reservation exists: REGISTER and RIEK always pass; CLEAR, PREEMPT,
// PREEMPT AND ABORT and RELEASE need a registration; RESERVE and REGISTER AND
// MOVE fall to rule 4 as data-out commands (so only registrants under the
// registrants-only and all-registrants types pass); anything else conflicts.
func (st *State) prOutAllowed(p Profile, n Nexus, sa byte) bool {
	if st.Reservation == nil || st.accessHolder(n) {
		return true
	}
	reg := st.accessRegistered(p, n)
	switch sa {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
		return true
	case scsi.SAClear, scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARelease:
		return reg
	case scsi.SAReserve, scsi.SARegisterAndMove:
		t := st.Reservation.Type
		return reg && (registrantsOnly(t) || allRegistrants(t))
	}
	return false
}

// prOutPasses is the reservation check of a PR OUT CDB: prOutAllowed, and with
// NoDataPROutByDirection (D26) a CLEAR, PREEMPT, PREEMPT AND ABORT, RELEASE,
// RESERVE or REGISTER AND MOVE without a parameter list (PARAMETER LIST LENGTH
// 0: no data-out) from an unregistered nexus under a Write Exclusive family
// reservation: LIO judges it by data direction (rule 4 of §10, no data-out
// passes) and its handler then answers PARAMETER LIST LENGTH ERROR.
func (st *State) prOutPasses(p Profile, n Nexus, cdb []byte) bool {
	sa := serviceAction(cdb)
	if st.prOutAllowed(p, n, sa) {
		return true
	}
	if !p.NoDataPROutByDirection || len(cdb) < 9 || binary.BigEndian.Uint32(cdb[5:9]) != 0 {
		return false
	}
	switch sa {
	case scsi.SAClear, scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARelease, scsi.SAReserve, scsi.SARegisterAndMove:
		return writeExclusiveFamily(st.Reservation.Type) && !st.accessRegistered(p, n)
	}
	return false
}

// nonHolderAllowed decides whether a non-holder may run a command other than
// PR OUT while a reservation exists (§10; SPC-4 §5.7.1 table 63 and SBC-3 §4.17).
func (st *State) nonHolderAllowed(p Profile, n Nexus, cdb []byte) bool {
	if alwaysAllowed(p, cdb) {
		return true
	}
	t := st.Reservation.Type
	reg := st.accessRegistered(p, n)
	we := writeExclusiveFamily(t)
	ea := t == scsi.TypeExclusiveAccess
	if cdb[0] == scsi.OpPersistentReserveOut {
		return st.prOutPasses(p, n, cdb)
	}
	if in, known := readCheckClass(cdb); in {
		return known && (we || (reg && (!ea || p.ModeSenseRegisteredUnderEA)))
	}
	if isSyncCache(cdb) && !reg && we && !p.SyncCacheUnregisteredUnderWE {
		return false
	}
	roar := registrantsOnly(t) || allRegistrants(t)
	if p.AccessByDataDirection {
		// LIO rule 4, by data direction.
		dir := direction(cdb)
		switch {
		case t == scsi.TypeWriteExclusive:
			if reg {
				return dir == dirIn
			}
			return dir != dirOut
		case ea:
			return false
		case roar && reg:
			return true
		case writeExclusiveFamily(t):
			return dir != dirOut
		}
		return false
	}
	// SPC-4 table: registrants of RO/AR types may do everything; reads are
	// allowed under the WE types only; writes and the rest conflict.
	if roar && reg {
		return true
	}
	if isSyncCache(cdb) && we && !reg && p.SyncCacheUnregisteredUnderWE {
		return true
	}
	return we && readLike(cdb)
}

// readLike reports the commands the SPC-4/SBC-3 conflict table treats as reads
// (allowed under WRITE EXCLUSIVE): READ, VERIFY, PRE-FETCH, READ CAPACITY(16)
// and the other data-in commands.
func readLike(cdb []byte) bool {
	switch cdb[0] {
	case 0x2f, 0xaf, 0x8f, 0x34, 0x90: // VERIFY(10/12/16), PRE-FETCH(10/16)
		return true
	}
	return direction(cdb) == dirIn
}

// CheckAccess is the target's gate for a command other than the engine's own:
// it answers whether nexus n may run cdb now, without running it. In order
// (docs/spc4-pr.md §6): a pending unit attention is reported and cleared (CHECK
// CONDITION 06h; REQUEST SENSE instead returns it as GOOD data, INQUIRY and
// REPORT LUNS leave it pending); a nexus other than the SPC-2 reserver gets
// RESERVATION CONFLICT except for INQUIRY and RELEASE; a non-holder of the
// persistent reservation gets RESERVATION CONFLICT unless §10 allows the
// command. GOOD means the command may proceed. RESERVE(6/10) and RELEASE(6/10)
// are executed here, with the CRH exceptions of §12, and change st.SPC2Holder.
// PR IN/OUT CDBs get the same gate as in Execute but are not executed.
//
// The helper only sees PR commands: it arbitrates reservations and does not
// fence I/O. CheckAccess exists so that a caller that does see the data path (a
// test, an emulated target) can apply the same rules.
func CheckAccess(p Profile, st *State, n Nexus, cdb []byte) Result {
	if st == nil {
		return checkCondition(senseLUCommFailure)
	}
	if len(cdb) == 0 {
		return checkCondition(scsi.SenseInvalidField)
	}
	op := cdb[0]
	if r, ok := st.reportUA(p, n, op); ok {
		return r
	}
	if op == opRequestSense {
		s := scsi.SenseNoSense
		if p.ReportUnitAttentions {
			if u, ok := st.takeUA(p, n); ok {
				s = u.Sense()
			}
		}
		return Result{Status: scsi.StatusGood, Data: s.Fixed()}
	}
	if h := st.SPC2Holder; h != nil && !h.covers(n) {
		switch op {
		case opInquiry, opRelease6, opRelease10:
		default:
			return conflict
		}
	}
	if op == scsi.OpPersistentReserveIn || op == scsi.OpPersistentReserveOut {
		if st.SPC2Holder != nil {
			return conflict
		}
		if op == scsi.OpPersistentReserveOut && !st.prOutPasses(p, n, cdb) {
			return conflict
		}
		return good
	}
	if st.Reservation != nil && !st.accessHolder(n) && !st.nonHolderAllowed(p, n, cdb) {
		return conflict
	}
	switch op {
	case opReserve6, opReserve10:
		return st.spc2Reserve(p, n)
	case opRelease6, opRelease10:
		return st.spc2Release(p, n)
	}
	return good
}

// crh applies SPC-4 §5.7.3 (LIO target_check_scsi2_reservation_conflict, §12)
// to an SPC-2 RESERVE or RELEASE while registrations exist: done is true with
// GOOD (no-op) for the holder, or with CRHAllRegistrantsROAR for any registrant
// under a registrants-only or all-registrants reservation, and true with RC for
// every other nexus.
func (st *State) crh(p Profile, n Nexus) (Result, bool) {
	if len(st.Registrations) == 0 {
		return Result{}, false
	}
	i := st.regFor(n)
	if i < 0 {
		return conflict, true
	}
	if h := st.holderIndex(); h == i {
		return good, true
	}
	if r := st.Reservation; r != nil && p.CRHAllRegistrantsROAR && (registrantsOnly(r.Type) || allRegistrants(r.Type)) {
		return good, true
	}
	return conflict, true
}

// spc2Reserve is RESERVE(6/10) (SPC-2 §7.21) under CRH=1.
func (st *State) spc2Reserve(p Profile, n Nexus) Result {
	if r, done := st.crh(p, n); done {
		return r
	}
	if h := st.SPC2Holder; h != nil && !h.covers(n) {
		return conflict
	}
	h := n
	st.SPC2Holder = &h
	return good
}

// spc2Release is RELEASE(6/10) (SPC-2 §7.17) under CRH=1: releasing a
// reservation held by another nexus, or none, is GOOD and does nothing.
func (st *State) spc2Release(p Profile, n Nexus) Result {
	if r, done := st.crh(p, n); done {
		return r
	}
	if h := st.SPC2Holder; h != nil && h.covers(n) {
		st.SPC2Holder = nil
	}
	return good
}
