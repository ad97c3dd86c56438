package pr

import "github.com/prhelper/prhelper/scsi"

// preempt implements PREEMPT (04h) and PREEMPT AND ABORT (05h) with LIO's
// decision procedure (core_scsi3_pro_preempt; SPC-4 §5.7.11.4, figure 9;
// docs/spc4-pr.md §7.5). PREEMPT AND ABORT differs only in aborting the preempted
// nexuses' outstanding commands, which is the task manager's business: the
// engine has no task set, so both service actions change the state alike.
func preempt(p Profile, st *State, n Nexus, scope, typ byte, pp *prOutParams) Result {
	// 1. The type is checked before anything else.
	if !validType(typ) {
		return checkCondition(scsi.SenseInvalidField)
	}
	// 2. The caller must be registered and present its key.
	i := st.regFor(n)
	if i < 0 || pp.key != st.Registrations[i].Key {
		return conflict
	}
	// 3. LU_SCOPE only (D4).
	if scope != 0 {
		return checkCondition(p.ScopeSense)
	}
	res := st.Reservation
	ar := res != nil && allRegistrants(res.Type)
	// 4. SARK 0 is meaningful only under an all-registrants reservation (D7).
	if !ar && pp.sark == 0 {
		if res == nil && p.PreemptZeroKeyNoReservationConflict {
			return conflict
		}
		return checkCondition(scsi.SenseInvalidParam)
	}
	caller := st.Registrations[i].Nexus
	h := st.holderIndex()
	caseB := res != nil && h >= 0 && st.Registrations[h].Key == pp.sark && (!ar || p.PreemptRepresentative)
	if !caseB {
		return preemptRegistrations(p, st, i, typ, scope, pp.sark, ar)
	}
	// 6. Case B: SARK is the holder's key. The registrations with that key go
	// (not the caller's: a holder may preempt itself), the caller holds the
	// reservation with the new type and scope, and if those changed every other
	// remaining registrant learns that the old reservation was released.
	// Registrations are told apart by position, not nexus: a second
	// registration of the caller's nexus (D27) is another registration.
	old := *res
	ci := i
	gone, _ := st.removeRegs(p, func(j int, r Registration) bool {
		drop := j != i && r.Key == pp.sark
		if drop && j < i {
			ci--
		}
		return drop
	})
	for _, r := range gone {
		st.addUA(p, r.Nexus, ascqRegistrationsPreempted)
	}
	st.Reservation = &Reservation{Holder: caller, Type: typ, Scope: scope}
	st.clearStaleScope(ci)
	// A scope left by a move (D28) counts as a change.
	if old.Type != typ || old.Scope != scope || old.StaleScope != 0 {
		for j, r := range st.Registrations {
			if j != ci {
				st.addUA(p, r.Nexus, ascqReservationsReleased)
			}
		}
	}
	st.Generation++
	return good
}

// preemptRegistrations is case A of §7.5 step 5: no reservation, or SARK is not
// the holder's key. Without an all-registrants reservation the registrations
// with key SARK are removed (the caller's too under PreemptRemovesCaller, D9)
// and the reservation, if any, is untouched; TYPE is ignored. Under an
// all-registrants reservation SARK 0 removes every other registration and gives
// the caller the reservation with the CDB type; a non-zero SARK removes the
// other registrations with that key. A SARK that matches no registered key is
// RC. Under an all-registrants reservation the caller's own key counts as a
// match (SPC-4 §5.7.11.4: the key matches a registered reservation key; LIO's
// core_scsi3_pro_preempt clears sa_res_key_unmatched before it skips the calling
// nexus), so a PREEMPT naming only the caller, or SARK 0 with the caller the only
// registrant, is GOOD.
func preemptRegistrations(p Profile, st *State, i int, typ, scope byte, sark uint64, ar bool) Result {
	caller := st.Registrations[i].Nexus
	ci := i // the caller's index after the removal, while it stays
	matched := false
	for _, r := range st.Registrations {
		if ar && (sark == 0 || r.Key == sark) {
			matched = true
		}
	}
	// Only the caller's own registration goes without a unit attention: a
	// second registration of its nexus (D27) is told like any other.
	var told []Nexus
	gone, holderGone := st.removeRegs(p, func(j int, r Registration) bool {
		var drop bool
		if !ar {
			drop = r.Key == sark && (j != i || p.PreemptRemovesCaller)
		} else {
			drop = j != i && (sark == 0 || r.Key == sark)
		}
		if drop && j != i {
			told = append(told, r.Nexus)
		}
		if drop && j < i {
			ci--
		}
		return drop
	})
	if len(gone) == 0 && !matched {
		return conflict
	}
	for _, n := range told {
		st.addUA(p, n, ascqRegistrationsPreempted)
	}
	if ar && sark == 0 {
		st.Reservation = &Reservation{Holder: caller, Type: typ, Scope: scope}
		st.clearStaleScope(ci)
	} else {
		st.fixHolder(holderGone)
	}
	st.Generation++
	return good
}
