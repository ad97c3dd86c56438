package pr

import (
	"encoding/binary"

	"github.com/prhelper/prhelper/scsi"
)

// Result is the outcome of one command: a SAM status, the sense data when
// Status is CHECK CONDITION, and for a GOOD PR IN the parameter data. Data is
// already cut to the allocation length, with LIO's quirks applied (docs/spc4-pr.md §4):
// it is exactly what the target would transfer.
//
// It is scsi.Result: the engine answers in the same terms as a device, so a
// caller passes it on as it would a device's answer. Sense is fixed-format
// (18 bytes); Result.ParseSense decodes it.
type Result = scsi.Result

// cdbLen is the length of PERSISTENT RESERVE IN/OUT CDBs (SPC-4 §6.15.1, §6.16.1).
const cdbLen = 10

// Execute runs one PERSISTENT RESERVE IN (5Eh) or OUT (5Fh) command from nexus
// n against st and returns the answer. cdb is the CDB (10 bytes or more, e.g.
// the helper protocol's 16); param is the PR OUT parameter list as received. The
// 32-bit PARAMETER LIST LENGTH of CDB bytes 5-8 is the list length the checks
// use, but param is never read beyond its own length: a list shorter than
// announced answers PARAMETER LIST LENGTH ERROR once its bytes are needed.
//
// Checks run in LIO's order (docs/spc4-pr.md §6): a pending unit attention, the SPC-2
// RESERVE conflict, the reservation check for non-holders (§10), then the
// service action's own checks (§3.1, §7). st changes only when the command
// succeeds, except that reporting a unit attention consumes it. Execute never
// panics, whatever st, cdb and param hold.
//
// st is changed in place, its slices included: a caller that keeps another
// copy of the State value (which shares those slices) to compare or to go
// back to takes a deep copy first (Clone).
func Execute(p Profile, st *State, n Nexus, cdb []byte, param []byte) Result {
	if st == nil {
		return checkCondition(senseLUCommFailure)
	}
	if len(cdb) < cdbLen {
		return checkCondition(scsi.SenseInvalidField)
	}
	op := cdb[0]
	if op != scsi.OpPersistentReserveIn && op != scsi.OpPersistentReserveOut {
		return checkCondition(scsi.SenseInvalidOpcode)
	}
	if r, ok := st.reportUA(p, n, op); ok {
		return r
	}
	// §6 step 3 and the PR handlers' first check (§12): while an SPC-2
	// reservation is held every PR IN and PR OUT conflicts, from any initiator,
	// the SPC-2 reserver included.
	if st.SPC2Holder != nil {
		return conflict
	}
	if op == scsi.OpPersistentReserveIn {
		return prIn(p, st, cdb)
	}
	if !st.prOutPasses(p, n, cdb) {
		return conflict
	}
	// The service actions check everything before they change anything, so
	// a command that fails leaves st as it was (the fuzz tests compare a deep
	// copy taken before every failing command): no copy of the state per
	// command, whose cost grew with the registrations (docs/performance.md §5).
	r := prOut(p, st, n, cdb, param)
	if r.Status == scsi.StatusGood {
		st.normalize()
	}
	return r
}

// prOutParams is the decoded PR OUT parameter list (docs/spc4-pr.md §3.1, §3.2).
type prOutParams struct {
	key, sark uint64
	specIPT   bool
	allTgPt   bool
	aptpl     bool
	unreg     bool   // REGISTER AND MOVE byte 17 bit 1
	rtpi      uint16 // REGISTER AND MOVE bytes 18-19
	length    uint64 // PARAMETER LIST LENGTH from the CDB
	list      []byte // the parameter list bytes present (at most length)
}

// full reports whether the whole announced list is present.
func (pp *prOutParams) full() bool { return uint64(len(pp.list)) >= pp.length }

// prOut checks the parameter list the way LIO target_scsi3_emulate_pr_out does
// (docs/spc4-pr.md §3.1 rules 1-3, §6 step 4) and dispatches on the service action.
func prOut(p Profile, st *State, n Nexus, cdb, param []byte) Result {
	sa := cdb[1] & 0x1f
	scope := cdb[2] >> 4
	typ := cdb[2] & 0x0f
	pp := prOutParams{length: uint64(binary.BigEndian.Uint32(cdb[5:9]))}
	// Rule 1: fewer than 24 bytes.
	if pp.length < scsi.PROutParamLen || len(param) < scsi.PROutParamLen {
		return checkCondition(p.ParamListLengthSense)
	}
	pp.list = param
	if uint64(len(pp.list)) > pp.length {
		pp.list = pp.list[:pp.length]
	}
	b := pp.list
	pp.key = binary.BigEndian.Uint64(b[0:8])
	pp.sark = binary.BigEndian.Uint64(b[8:16])
	if sa == scsi.SARegisterAndMove {
		pp.aptpl = b[17]&scsi.MoveAPTPL != 0
		pp.unreg = b[17]&scsi.MoveUnreg != 0
		pp.rtpi = binary.BigEndian.Uint16(b[18:20])
	} else {
		pp.specIPT = b[20]&scsi.ParamSpecIPT != 0
		pp.allTgPt = b[20]&scsi.ParamAllTgPt != 0
		pp.aptpl = b[20]&scsi.ParamAPTPL != 0
	}
	// Rule 2: SPEC_I_PT only with REGISTER.
	if pp.specIPT && sa != scsi.SARegister {
		return checkCondition(scsi.SenseInvalidParam)
	}
	// Rule 3: exactly 24 bytes unless SPEC_I_PT or REGISTER AND MOVE.
	if !pp.specIPT && sa != scsi.SARegisterAndMove && (pp.length != scsi.PROutParamLen) {
		return checkCondition(p.ParamListLengthSense)
	}
	switch sa {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
		return register(p, st, n, sa, &pp)
	case scsi.SAReserve:
		return reserve(p, st, n, scope, typ, &pp)
	case scsi.SARelease:
		return release(p, st, n, scope, typ, &pp)
	case scsi.SAClear:
		return clearAll(p, st, n, &pp)
	case scsi.SAPreempt, scsi.SAPreemptAndAbort:
		return preempt(p, st, n, scope, typ, &pp)
	case scsi.SARegisterAndMove:
		return registerAndMove(p, st, n, &pp)
	}
	// REPLACE LOST RESERVATION (08h) is not emulated by LIO, SCST or tgt, which
	// report RLR_C=0; it and 09h-1Fh are INVALID FIELD IN CDB (§7.9).
	return checkCondition(scsi.SenseInvalidField)
}

// unregisteredNoReservation is the answer to RESERVE, RELEASE, CLEAR and
// REGISTER AND MOVE from an unregistered nexus (D2).
func unregisteredNoReservation(p Profile) Result {
	if p.UnregisteredCommFailure {
		return checkCondition(senseLUCommFailure)
	}
	return conflict
}
