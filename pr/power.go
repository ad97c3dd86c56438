package pr

// PowerOn applies a power cycle (or target restart) to st, for a store that
// kept the state bytes across it (SPC-4 §5.7.5; docs/spc4-pr.md §7.8, §11). Without
// PTPL_A everything is lost and the generation returns to 0. With PTPL_A the
// registrations and the reservation survive; the generation restarts at the
// number of registrations under RestoreCountsGeneration (LIO re-adds each one
// with a bump) and is kept otherwise. Either way the SPC-2 reservation and every
// pending unit attention are gone, and the target ports are kept; so is every
// registration's cleared "registered" flag (Registration.FlagCleared, D29).
func PowerOn(p Profile, st *State) {
	if st == nil {
		return
	}
	if !st.APTPL {
		r := st.rows
		if r != nil {
			r.Gone, r.IDs = append(r.Gone, r.IDs...), nil
		}
		*st = State{Ports: st.Ports, rows: r}
		return
	}
	st.SPC2Holder = nil
	st.UnitAttentions = nil
	if p.RestoreCountsGeneration {
		st.Generation = uint32(len(st.Registrations))
	}
	// LIO re-adds each registration, which sets its "registered" flag (D29).
	for i := range st.Registrations {
		st.Registrations[i].FlagCleared = false
		st.touch(i)
	}
}
