package pr

import (
	"encoding/binary"

	"github.com/prhelper/prhelper/scsi"
)

// register implements REGISTER (00h) and REGISTER AND IGNORE EXISTING KEY (06h),
// in the order of LIO core_scsi3_emulate_pro_register (SPC-4 §5.7.7 and the
// register behaviours table; docs/spc4-pr.md §7.1).
func register(p Profile, st *State, n Nexus, sa byte, pp *prOutParams) Result {
	i := st.regFor(n)
	if i < 0 {
		// An unregistered nexus must send RESERVATION KEY 0 (RIEK ignores it).
		if sa == scsi.SARegister && pp.key != 0 {
			return conflict
		}
		// SARK 0 from an unregistered nexus is a GOOD no-op that LIO returns
		// before touching APTPL or the generation (D6).
		if pp.sark == 0 {
			if p.GenerationOnNoopRegister {
				st.Generation++
			}
			return good
		}
		regs := st.withAllTgPt(n, Registration{Nexus: n, Key: pp.sark, AllTgPt: pp.allTgPt, APTPL: pp.aptpl}, nil, false)
		if pp.specIPT {
			more, r, ok := st.specIPT(p, n, pp, regs)
			if !ok {
				return r
			}
			regs = more
		}
		if !p.roomFor(st, len(regs)) {
			return checkCondition(senseInsufficientRegistrations)
		}
		// All or nothing: nothing was added before every TransportID checked
		// out. LIO bumps the generation once per registration created.
		st.addRegs(p, regs...)
		st.Generation += uint32(len(regs))
		st.APTPL = pp.aptpl
		return good
	}
	reg := st.Registrations[i]
	// A registered nexus must present its current key, even 0 (libiscsi
	// prout_reregister_key_fails); RIEK skips the check.
	if sa == scsi.SARegister && pp.key != reg.Key {
		return conflict
	}
	if pp.specIPT {
		return checkCondition(scsi.SenseInvalidParam)
	}
	// LIO: a registration made with ALL_TG_PT can be changed only with ALL_TG_PT.
	if reg.AllTgPt && !pp.allTgPt {
		return checkCondition(scsi.SenseInvalidField)
	}
	if pp.sark != 0 {
		// The key is replaced in place: the list position is kept (§4.1).
		st.Registrations[i].Key = pp.sark
		st.touch(i)
		st.Generation++
		st.APTPL = pp.aptpl
		return good
	}
	return unregister(p, st, i, pp)
}

// unregister removes registration i and, for an ALL_TG_PT registration, its
// siblings at the other target ports (same initiator device, same key, also
// ALL_TG_PT), with the implicit release of §7.1.1: a non-all-registrants
// reservation held by a removed registration is released, types 5h/6h then
// queue 2Ah/04h RESERVATIONS RELEASED to every remaining registrant; under an
// all-registrants reservation it survives until the last registrant leaves.
func unregister(p Profile, st *State, i int, pp *prOutParams) Result {
	reg := st.Registrations[i]
	sibling := func(j int, r Registration) bool {
		return j != i && reg.AllTgPt && r.AllTgPt && r.Key == reg.Key && r.Nexus.Initiator.SameNode(reg.Nexus.Initiator)
	}
	if res := st.Reservation; res != nil && !allRegistrants(res.Type) {
		// LIO refuses to drop a sibling that holds the reservation.
		if h := st.holderIndex(); h >= 0 && sibling(h, st.Registrations[h]) {
			return conflict
		}
	}
	var resType byte
	if st.Reservation != nil {
		resType = st.Reservation.Type
	}
	_, holderGone := st.removeRegs(p, func(j int, r Registration) bool { return j == i || sibling(j, r) })
	if st.fixHolder(holderGone) && registrantsOnly(resType) {
		for _, r := range st.Registrations {
			st.addUA(p, r.Nexus, ascqReservationsReleased)
		}
	}
	if p.GenerationOnUnregister {
		st.Generation++
	}
	st.APTPL = pp.aptpl
	return good
}

// withAllTgPt appends r to regs and, when r.AllTgPt is set, a registration of
// the same initiator at every other target port that has the logical unit mapped
// for it (LIO __core_scsi3_alloc_registration: same fabric, a LUN ACL), skipping
// nexuses already registered or, unless dups (Profile.SpecIPTDuplicates, D27),
// already in regs.
func (st *State) withAllTgPt(n Nexus, r Registration, regs []Registration, dups bool) []Registration {
	add := func(x Registration) {
		if st.regExact(x.Nexus) >= 0 {
			return
		}
		for _, y := range regs {
			if !dups && y.Nexus.Equal(x.Nexus) {
				return
			}
		}
		regs = append(regs, x)
	}
	add(r)
	if !r.AllTgPt {
		return regs
	}
	for _, pt := range st.ports(n) {
		if pt.RTPI == r.Nexus.RTPI || !pt.admits(r.Nexus.Initiator) {
			continue
		}
		x := r
		x.Nexus.RTPI = pt.RTPI
		add(x)
	}
	return regs
}

// specIPT decodes the SPEC_I_PT TransportID list (SPC-4 §6.16.3; LIO
// core_scsi3_decode_spec_i_port, docs/spc4-pr.md §3.1 rule 4 and §7.1) and returns
// regs extended with a registration for every TransportID, each at the first
// target port of its protocol that has the logical unit mapped for it.
// TransportIDs registered before the command are skipped; so are the commanding
// nexus and repeats in the list, except under Profile.SpecIPTDuplicates (D27),
// where LIO registers them again. Any error rejects the whole command (ok
// false) with 05/26/00.
func (st *State) specIPT(p Profile, n Nexus, pp *prOutParams, regs []Registration) ([]Registration, Result, bool) {
	bad := checkCondition(scsi.SenseInvalidParam)
	if pp.length < scsi.PROutSpecIPTHdrLen {
		return nil, bad, false
	}
	if !pp.full() {
		return nil, checkCondition(p.ParamListLengthSense), false
	}
	tpdl := uint64(binary.BigEndian.Uint32(pp.list[24:28]))
	if tpdl+scsi.PROutSpecIPTHdrLen != pp.length {
		return nil, bad, false
	}
	for rest := pp.list[scsi.PROutSpecIPTHdrLen:]; len(rest) > 0; {
		init, size, err := parseTransportID(rest)
		if err != nil {
			return nil, bad, false
		}
		rest = rest[size:]
		if p.EnforcePRISIDs && init.Protocol == scsi.ProtoISCSI && init.ISID == "" {
			return nil, bad, false
		}
		port, found := Port{}, false
		for _, pt := range st.ports(n) {
			if pt.admits(init) {
				port, found = pt, true
				break
			}
		}
		if !found {
			return nil, bad, false
		}
		dest := Nexus{Initiator: init, RTPI: port.RTPI}
		if st.regFor(dest) >= 0 || !p.SpecIPTDuplicates && (dest.covers(n) || n.covers(dest)) {
			continue
		}
		regs = st.withAllTgPt(n, Registration{Nexus: dest, Key: pp.sark, AllTgPt: pp.allTgPt, APTPL: pp.aptpl}, regs, p.SpecIPTDuplicates)
	}
	return regs, Result{}, true
}
