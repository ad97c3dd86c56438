package vinit

import (
	"slices"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// Foreign is the initiator under which the emulated state shows a reservation
// that a foreign key (one no host has, docs/virtual-initiators.md §2) holds on
// the real LUN (§7): a registration with that key, holding a reservation of
// the LUN's type. No VM has this name (it is no iSCSI name a host records).
var Foreign = pr.Nexus{Initiator: pr.ISCSIInitiator("prhelper.vinit.lun", ""), RTPI: 1}

// ForeignHolder returns the LUN's reservation when a foreign key holds it
// (hostKey false for its key), nil otherwise.
func ForeignHolder(lun LUN, hostKey func(uint64) bool) *LUNReservation {
	if r := lun.Reservation; r != nil && !hostKey(r.Key) {
		return r
	}
	return nil
}

// MirrorForeign makes st show the LUN's reservation when a foreign key holds
// it, and only then (docs/virtual-initiators.md §7): Foreign registered with
// that key holds a reservation of that type. A reservation of st that a VM
// holds is released first, as its holder's RELEASE would (pr.Release): the
// array gives it no longer; it is returned. A mirror the LUN no longer
// justifies (the foreign key released, was preempted, or holds another type
// now) is removed as a preemption would (pr.Remove), and built again when
// needed. changed reports whether st changed.
func MirrorForeign(p pr.Profile, st *pr.State, lun LUN, hostKey func(uint64) bool) (released *pr.Reservation, changed bool) {
	f := ForeignHolder(lun, hostKey)
	mine := func(r pr.Registration) bool { return r.Nexus.Equal(Foreign) }
	i := slices.IndexFunc(st.Registrations, mine)
	res := st.Reservation
	if f != nil && i >= 0 && st.Registrations[i].Key == f.Key && res != nil && res.Holder.Equal(Foreign) && res.Type == f.Type {
		return nil, false // shown as it is
	}
	if i >= 0 {
		pr.Remove(p, st, mine)
		changed = true
	}
	if f == nil {
		return nil, changed
	}
	if st.Reservation != nil {
		released = pr.Release(p, st)
	}
	// The mirror's own unit attentions (from an earlier removal) would answer
	// its commands instead of running them: nobody reads them.
	st.UnitAttentions = slices.DeleteFunc(st.UnitAttentions, func(u pr.PendingUA) bool { return u.Nexus.Equal(Foreign) })
	if len(st.UnitAttentions) == 0 {
		st.UnitAttentions = nil
	}
	for _, c := range []struct {
		sa      byte
		rk, sak uint64
	}{{scsi.SARegisterAndIgnoreExisting, 0, f.Key}, {scsi.SAReserve, f.Key, 0}} {
		param, _ := scsi.PROutParams{Key: c.rk, SAKey: c.sak}.Encode()
		cdb := scsi.PROutCDB(c.sa, 0, f.Type, uint32(len(param)))
		pr.Execute(p, st, Foreign, cdb[:], param)
	}
	return released, true
}
