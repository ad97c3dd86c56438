package pr

// Clear is an administrator's CLEAR (prhelperctl clear): what PERSISTENT
// RESERVE OUT CLEAR does (SPC-4 §5.7.11.6; docs/spc4-pr.md §7.4) when no
// registrant issues it. The reservation is released, every registration is
// removed, every registered I_T nexus gets the unit attention 2Ah/03h
// RESERVATIONS PREEMPTED (there is no issuing nexus to spare), the generation
// goes up by one, and PTPL_A is reset as the profile's CLEAR resets it. The
// SPC-2 reservation and the target ports are kept, as CLEAR keeps them.
//
// A logical unit without registrations has nothing to clear: Clear then
// changes nothing (not even the generation) and returns false.
func Clear(p Profile, st *State) bool {
	if st == nil || len(st.Registrations) == 0 {
		return false
	}
	st.Reservation = nil
	gone, _ := st.removeRegs(p, func(int, Registration) bool { return true })
	for _, r := range gone {
		st.addUA(p, r.Nexus, ascqReservationsPreempted)
	}
	st.Generation++
	if p.ClearResetsAPTPL {
		st.APTPL = false
	}
	return true
}
