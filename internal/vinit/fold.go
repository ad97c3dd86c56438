package vinit

import "github.com/prhelper/prhelper/pr"

// Own returns the registrations of host self's VMs in st: what the host
// remembers when it sees its key on the LUN (docs/virtual-initiators.md §7).
func Own(st *pr.State, hostOf func(pr.Nexus) (string, bool), self string) []pr.Registration {
	var out []pr.Registration
	for _, r := range st.Registrations {
		if h, ok := hostOf(r.Nexus); ok && h == self {
			out = append(out, r)
		}
	}
	return out
}

// Fold folds into st the loss of host self's key on the LUN, which something
// other than self's own plan removed (a bare-metal node's PREEMPT, an
// administrator's CLEAR, another host's PREEMPT): the registrations of seen,
// what Own returned when the key was last seen on the LUN, that st still holds
// with the same key are removed as preempted (pr.Remove). Registrations made
// since then stay: the next plan registers the host again for them. It returns
// the removed registrations; nothing changes when self's key is on the LUN.
func Fold(p pr.Profile, st *pr.State, lun LUN, selfKey uint64, seen []pr.Registration) []pr.Registration {
	if lun.Has(selfKey) || len(seen) == 0 {
		return nil
	}
	return pr.Remove(p, st, func(r pr.Registration) bool {
		for _, s := range seen {
			if s.Key == r.Key && s.Nexus.Equal(r.Nexus) {
				return true
			}
		}
		return false
	})
}
