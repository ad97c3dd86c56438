package fence

import (
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// writeCDB is the probe the access table is asked about: WRITE(10) of one block
// at LBA 0. Every write command (WRITE(6/12/16), WRITE SAME, UNMAP, ...) is in
// the same class of the SPC-4 conflict table (docs/fencing.md), so one probe
// answers for all of them.
var writeCDB = []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}

// MayWrite reports whether real storage with state st lets nexus n write: the
// access table of the engine (pr.CheckAccess), asked about a WRITE without the
// unit attentions pending for n (a unit attention is reported once and does not
// decide access) and without changing st.
func MayWrite(p pr.Profile, st *pr.State, n pr.Nexus) bool {
	c := st.Clone()
	c.UnitAttentions = nil
	return pr.CheckAccess(p, &c, n, writeCDB).Status == scsi.StatusGood
}

// Evicted returns the I_T nexuses that the PR OUT command of nexus by, which
// changed the logical unit's state from before to after, evicted and that must
// be fenced (docs/fencing.md, "Who is fenced"): each nexus that had a
// registration in before and has none in after, whose initiator is not by's
// initiator (a command never fences its own sender: REGISTER AND MOVE with
// UNREG, or an initiator unregistering itself, is voluntary), and to which the
// access table of after refuses writes. It is pure: no I/O, the states are not
// changed. The result is in before's registration order, each nexus once.
func Evicted(p pr.Profile, before, after *pr.State, by pr.Nexus) []pr.Nexus {
	return EvictedWhere(before, after, by, func(n pr.Nexus) bool { return !MayWrite(p, after, n) })
}

// EvictedWhere is Evicted with the last question, whether real storage now
// refuses nexus n writes, answered by refused instead of after's access table:
// for a change the engine only mirrors, whose real storage is elsewhere (the
// real LUN under virtual initiators, docs/virtual-initiators.md §7).
func EvictedWhere(before, after *pr.State, by pr.Nexus, refused func(n pr.Nexus) bool) []pr.Nexus {
	if before == nil || after == nil {
		return nil
	}
	var out []pr.Nexus
	for _, r := range before.Registrations {
		n := r.Nexus
		if n.Initiator.SameNode(by.Initiator) {
			continue
		}
		if registered(after, n) {
			continue
		}
		dup := false
		for _, o := range out {
			if o.Equal(n) {
				dup = true
			}
		}
		if dup || !refused(n) {
			continue
		}
		out = append(out, n)
	}
	return out
}

// registered reports whether st holds a registration for exactly nexus n.
func registered(st *pr.State, n pr.Nexus) bool {
	for _, r := range st.Registrations {
		if r.Nexus.Equal(n) {
			return true
		}
	}
	return false
}

// InitiatorName returns the name under which a connection's identity policy
// names initiator i (backend.Request.Initiator), so that a fenced nexus can be
// matched to the connections of its VM: the iSCSI name for iSCSI, naa.<16 hex
// digits> for SAS.
func InitiatorName(i pr.Initiator) string {
	switch i.Protocol {
	case scsi.ProtoISCSI:
		return i.Name
	case scsi.ProtoSAS:
		const digits = "0123456789abcdef"
		b := []byte("naa.0000000000000000")
		for k := 0; k < 16; k++ {
			b[len(b)-1-k] = digits[(i.Addr>>(4*k))&0xf]
		}
		return string(b)
	}
	return i.String()
}
