package pr

import (
	"encoding/binary"
	"strings"

	"github.com/prhelper/prhelper/scsi"
)

// registerAndMove implements REGISTER AND MOVE (07h) in the order of LIO
// core_scsi3_emulate_register_and_move (SPC-4 §5.7.8; docs/spc4-pr.md §3.2, §7.6): the
// holder hands its reservation, type and scope unchanged, to another I_T nexus,
// registering it with SARK (or overwriting its key). No unit attention is raised.
func registerAndMove(p Profile, st *State, n Nexus, pp *prOutParams) Result {
	bad := checkCondition(scsi.SenseInvalidParam)
	i := st.regFor(n)
	if i < 0 {
		return unregisteredNoReservation(p)
	}
	if pp.key != st.Registrations[i].Key {
		return conflict
	}
	if pp.sark == 0 {
		return checkCondition(p.MoveZeroKeySense)
	}
	tpdl := uint64(binary.BigEndian.Uint32(pp.list[20:24]))
	if tpdl+scsi.RegisterMoveHdrLen != pp.length {
		return bad
	}
	if !pp.full() {
		return checkCondition(p.ParamListLengthSense)
	}
	var port Port
	found := false
	for _, pt := range st.ports(n) {
		if pt.RTPI == pp.rtpi {
			port, found = pt, true
			break
		}
	}
	tid := pp.list[scsi.RegisterMoveHdrLen:]
	if !found || len(tid) == 0 || tid[0]&0x0f != port.Protocol {
		return bad
	}
	init, _, err := parseTransportID(tid)
	if err != nil {
		return bad
	}
	// The destination may not be the caller's own initiator port.
	own := st.Registrations[i].Nexus.Initiator
	if init.SameNode(own) && (init.ISID == "" || own.ISID == "" || strings.EqualFold(init.ISID, own.ISID)) {
		return bad
	}
	if !port.admits(init) {
		return bad
	}
	res := st.Reservation
	if res == nil {
		return checkCondition(scsi.SenseInvalidField)
	}
	if !st.isHolder(i) || allRegistrants(res.Type) {
		return conflict
	}
	dest := Nexus{Initiator: init, RTPI: port.RTPI}
	d := st.regFor(dest)
	if d < 0 && !pp.unreg && !p.roomFor(st, 1) {
		return checkCondition(senseInsufficientRegistrations)
	}
	if d < 0 {
		st.addRegs(p, Registration{Nexus: dest, Key: pp.sark, APTPL: pp.aptpl})
		d = len(st.Registrations) - 1
	} else {
		// Current LIO overwrites an existing destination key with SARK.
		st.Registrations[d].Key = pp.sark
		st.touch(d)
	}
	st.Generation++
	st.Reservation = &Reservation{Holder: st.Registrations[d].Nexus, Type: res.Type, Scope: res.Scope}
	if p.MoveSourceScope {
		// LIO (D28): the destination holds with the scope its registration
		// carried; the source keeps the type as its scope.
		st.Reservation.StaleScope = st.Registrations[d].StaleScope
		st.Registrations[i].StaleScope = res.Type
		st.touch(i)
	}
	if pp.unreg {
		// The caller's registration, not a second one of its nexus (D27).
		st.removeRegs(p, func(j int, _ Registration) bool { return j == i })
	}
	st.APTPL = pp.aptpl
	return good
}
