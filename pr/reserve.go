package pr

import "github.com/prhelper/prhelper/scsi"

// reserve implements RESERVE (01h) in the order of LIO core_scsi3_pro_reserve
// (SPC-4 §5.7.9; docs/spc4-pr.md §7.2). The generation never changes and no unit
// attention is raised.
func reserve(p Profile, st *State, n Nexus, scope, typ byte, pp *prOutParams) Result {
	// The type is checked first, before the registration.
	if !validType(typ) {
		return checkCondition(scsi.SenseInvalidField)
	}
	i := st.regFor(n)
	if i < 0 {
		return unregisteredNoReservation(p)
	}
	if pp.key != st.Registrations[i].Key {
		return conflict
	}
	if scope != 0 {
		return checkCondition(p.ScopeSense)
	}
	if res := st.Reservation; res != nil {
		// Another holder, or the holder asking for another type or scope: RC.
		// The holder repeating its reservation: GOOD, nothing changes. A
		// scope left by a move (D28) differs from every SCOPE sent.
		if !st.isHolder(i) || res.Type != typ || res.Scope != scope || res.StaleScope != 0 {
			return conflict
		}
		return good
	}
	st.Reservation = &Reservation{Holder: st.Registrations[i].Nexus, Type: typ, Scope: scope}
	st.clearStaleScope(i)
	return good
}

// release implements RELEASE (02h) in the order of LIO
// core_scsi3_emulate_pro_release (SPC-4 §5.7.11.2; docs/spc4-pr.md §7.3). LIO does not
// validate the TYPE code here.
func release(p Profile, st *State, n Nexus, scope, typ byte, pp *prOutParams) Result {
	i := st.regFor(n)
	if i < 0 {
		return unregisteredNoReservation(p)
	}
	if p.ReleaseChecksNonHolderKey && pp.key != st.Registrations[i].Key {
		return conflict
	}
	res := st.Reservation
	if res == nil || !st.isHolder(i) {
		// No reservation, or a registered non-holder: GOOD, no-op (LIO does
		// not look at the key on this path, D10).
		return good
	}
	if pp.key != st.Registrations[i].Key {
		return conflict
	}
	if res.Type != typ || res.Scope != scope || res.StaleScope != 0 {
		if p.ReleaseTypeMismatchInvalidRelease {
			return checkCondition(senseInvalidRelease)
		}
		return conflict
	}
	st.Reservation = nil
	st.clearStaleScope(i)
	// Types 5h-8h tell every other registrant the reservation is gone (§9).
	if registrantsOnly(res.Type) || allRegistrants(res.Type) {
		for j, r := range st.Registrations {
			if j != i {
				st.addUA(p, r.Nexus, ascqReservationsReleased)
			}
		}
	}
	return good
}

// clearAll implements CLEAR (03h) as LIO core_scsi3_emulate_pro_clear does (SPC-4
// §5.7.11.6; docs/spc4-pr.md §7.4): any registrant with its key releases the
// reservation and removes every registration; the others get 2Ah/03h
// RESERVATIONS PREEMPTED; the generation goes up by one.
func clearAll(p Profile, st *State, n Nexus, pp *prOutParams) Result {
	i := st.regFor(n)
	if i < 0 {
		return unregisteredNoReservation(p)
	}
	if pp.key != st.Registrations[i].Key {
		return conflict
	}
	st.Reservation = nil
	gone, _ := st.removeRegs(p, func(int, Registration) bool { return true })
	for j, r := range gone {
		if j != i {
			st.addUA(p, r.Nexus, ascqReservationsPreempted)
		}
	}
	st.Generation++
	if p.ClearResetsAPTPL {
		st.APTPL = false
	}
	return good
}
