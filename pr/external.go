package pr

// Remove takes away the registrations for which drop returns true, as a
// preemption by an initiator outside st would (SPC-4 §5.13.11.4: the
// registrations with the preempted key go, each with REGISTRATIONS PREEMPTED
// for its nexus; docs/spc4-pr.md §7.5): the order of the others is kept, a
// reservation whose holder went is released (every remaining registrant gets
// RESERVATIONS RELEASED, as when a holder unregisters) unless it is an
// all-registrants one with registrations left, and PRgeneration is bumped when
// anything went. It returns the removed registrations.
//
// It is for a caller that keeps st in step with something the engine does not
// see, such as a real logical unit whose registrations another initiator
// preempted (docs/virtual-initiators.md §7); commands go through Execute.
func Remove(p Profile, st *State, drop func(Registration) bool) []Registration {
	if st == nil {
		return nil
	}
	gone, holderGone := st.removeRegs(p, func(_ int, r Registration) bool { return drop(r) })
	if len(gone) == 0 {
		return nil
	}
	for _, r := range gone {
		st.addUA(p, r.Nexus, ascqRegistrationsPreempted)
	}
	if st.fixHolder(holderGone) {
		for _, r := range st.Registrations {
			st.addUA(p, r.Nexus, ascqReservationsReleased)
		}
	}
	st.Generation++
	st.normalize()
	return gone
}

// Release ends st's reservation as a RELEASE by its holder would (SPC-4
// §5.13.11.2.2; docs/spc4-pr.md §7.3): the registrations stay, and for the
// registrants-only and all-registrants types every registrant but the holder
// gets RESERVATIONS RELEASED. It returns the released reservation, nil when
// there was none.
//
// It is for a caller that keeps st in step with a real logical unit whose
// reservation another initiator now holds (docs/virtual-initiators.md §7);
// commands go through Execute.
func Release(p Profile, st *State) *Reservation {
	if st == nil || st.Reservation == nil {
		return nil
	}
	res := *st.Reservation
	i := st.holderIndex()
	st.Reservation = nil
	if i >= 0 {
		st.clearStaleScope(i)
	}
	if registrantsOnly(res.Type) || allRegistrants(res.Type) {
		for j, r := range st.Registrations {
			if j != i {
				st.addUA(p, r.Nexus, ascqReservationsReleased)
			}
		}
	}
	st.normalize()
	return &res
}
