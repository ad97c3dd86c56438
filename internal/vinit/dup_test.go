package vinit

import (
	"slices"
	"testing"

	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// guestSpecIPT is REGISTER with SPEC_I_PT from VM vm: key 0, service action
// key sark, for vm's own nexus and every one of tids.
func (w *world) guestSpecIPT(vm string, sark uint64, tids ...string) pr.Result {
	w.last = func() pr.Result { return w.guestSpecIPT(vm, sark, tids...) }
	pp := scsi.PROutParams{SAKey: sark, SpecIPT: true}
	for _, n := range tids {
		pp.TransportIDs = append(pp.TransportIDs, scsi.ISCSIPortTransportID(n, w.isid))
	}
	p, err := pp.Encode()
	if err != nil {
		w.t.Fatal(err)
	}
	cdb := scsi.PROutCDB(scsi.SARegister, 0, 0, uint32(len(p)))
	res := pr.Execute(pr.LIO(), &w.emu, w.vmNexus(vm), cdb[:], p)
	w.log = append(w.log, "guest "+vm+" REGISTER SPEC_I_PT: "+res.String())
	return res
}

// regsOf counts the registrations of vm's nexus in the emulated state.
func (w *world) regsOf(vm string) int {
	n := 0
	for _, r := range w.emu.Registrations {
		if r.Nexus.Equal(w.vmNexus(vm)) {
			n++
		}
	}
	return n
}

// TestSpecIPTDuplicates: LIO's SPEC_I_PT quirk (docs/spc4-pr.md §14.2, D27)
// leaves two registrations of one VM's nexus in the emulated state. Desire
// counts the VM's host once, the plan and the rights between hosts hold
// (docs/virtual-initiators.md §3), the fold removes both registrations of a
// VM seen on a lost key, and the fencing rule (fence.Evicted, docs/fencing.md)
// fences such a VM once when both go, and not while its second stays.
func TestSpecIPTDuplicates(t *testing.T) {
	if !pr.LIO().SpecIPTDuplicates {
		t.Fatal("the LIO profile no longer has SpecIPTDuplicates: this test checks nothing")
	}
	w := newWorld(t, 2, "a", "b").withISID("23d000000001")
	a1, a2, b1 := w.vms["a"][0], w.vms["a"][1], w.vms["b"][0]
	// a1 names itself and b1 twice: a1 and b1 each get two registrations.
	mustGood(t, w, w.guestSpecIPT(a1, 0x11, a1, b1, b1))
	if w.regsOf(a1) != 2 || w.regsOf(b1) != 2 {
		t.Fatalf("no duplicate registrations: %+v", w.emu.Registrations)
	}
	d := w.desired()
	if len(d.Registered) != 2 || !d.Registered["a"] || !d.Registered["b"] {
		t.Fatalf("desired hosts %v", d.Registered)
	}
	w.converge("a")
	w.check()
	mustGood(t, w, w.guest(a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	w.converge("a")
	w.check()
	// a1 unregisters its first registration: the reservation goes with it
	// (§14.2), a1 stays registered by its second, host a stays on the LUN.
	mustGood(t, w, w.guest(a1, scsi.SARegister, 0, 0x11, 0))
	if w.regsOf(a1) != 1 || w.emu.Reservation != nil {
		t.Fatalf("after a1's unregistration: %+v %+v", w.emu.Registrations, w.emu.Reservation)
	}
	w.converge("a")
	w.check()
	if d := w.desired(); !d.Registered["a"] || d.Reservation != nil {
		t.Fatalf("desired %+v", d)
	}

	// The fencing rule: a2 preempts b1's key under its Write Exclusive; both
	// of b1's registrations go, b1 is fenced once.
	mustGood(t, w, w.guest(a2, scsi.SARegister, 0, 0, 0x12))
	mustGood(t, w, w.guest(a2, scsi.SAReserve, scsi.TypeWriteExclusive, 0x12, 0))
	before := clone(t, &w.emu)
	mustGood(t, w, w.guest(a2, scsi.SAPreempt, scsi.TypeWriteExclusive, 0x12, 0x11))
	if got := fence.Evicted(pr.LIO(), before, &w.emu, w.vmNexus(a2)); !slices.EqualFunc(got, []pr.Nexus{w.vmNexus(a1), w.vmNexus(b1)}, pr.Nexus.Equal) {
		t.Fatalf("evicted %v, want a1 and b1 once each", got)
	}
	w.converge("a")
	w.check()
	if w.read("a").Has(w.keys["b"]) {
		t.Fatal("host b, with no VM registered, is still on the LUN")
	}

	// A nexus whose first registration goes while its second stays is not
	// evicted: b1 registers twice again (naming itself), changes its first
	// key, and a2 preempts only that key.
	mustGood(t, w, w.guestSpecIPT(b1, 0x21, b1))
	mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0x21, 0x22))
	before = clone(t, &w.emu)
	mustGood(t, w, w.guest(a2, scsi.SAPreempt, scsi.TypeWriteExclusive, 0x12, 0x22))
	if w.regsOf(b1) != 1 {
		t.Fatalf("b1's registrations after the preemption of its first: %+v", w.emu.Registrations)
	}
	if got := fence.Evicted(pr.LIO(), before, &w.emu, w.vmNexus(a2)); len(got) != 0 {
		t.Fatalf("evicted %v: b1 is still registered", got)
	}
	w.converge("a")
	w.check()

	// The fold: host b's key is lost on the LUN; both of b1's registrations
	// as b last saw them go (seen holds both).
	mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0x21, 0))
	mustGood(t, w, w.guestSpecIPT(b1, 0x21, b1))
	w.converge("b")
	seen := Own(&w.emu, w.hostOf, "b")
	if len(seen) != 2 {
		t.Fatalf("b's own registrations: %+v", seen)
	}
	p, _ := scsi.PROutParams{Key: w.keys["a"], SAKey: w.keys["b"]}.Encode()
	cdb := scsi.PROutCDB(scsi.SAPreempt, 0, scsi.TypeWriteExclusive, 24)
	if r := pr.Execute(pr.LIO(), &w.lun, w.sas["a"], cdb[:], p); r.Status != scsi.StatusGood {
		t.Fatalf("preempting b's key on the LUN: %s", r)
	}
	if gone := Fold(pr.LIO(), &w.emu, w.read("b"), w.keys["b"], seen); len(gone) != 2 || w.regsOf(b1) != 0 {
		t.Fatalf("folded %+v, emulated %+v", gone, w.emu.Registrations)
	}
}

// clone is a deep copy of st.
func clone(t *testing.T, st *pr.State) *pr.State {
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var c pr.State
	if err := c.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &c
}

// TestLUNMayWrite is the write column of SPC-4 §5.13.1's table for a host's
// key (docs/virtual-initiators.md §3), which the fold judges its victims by
// (§7).
func TestLUNMayWrite(t *testing.T) {
	const h, o = 0xa, 0xb
	res := func(typ byte, k uint64) *LUNReservation { return &LUNReservation{Type: typ, Key: k} }
	for _, c := range []struct {
		lun  LUN
		want bool
	}{
		{LUN{}, true},
		{LUN{Keys: []uint64{o}}, true},
		{LUN{Keys: []uint64{o}, Reservation: res(scsi.TypeWriteExclusiveRegOnly, o)}, false},
		{LUN{Keys: []uint64{o}, Reservation: res(scsi.TypeExclusiveAccessAllRegs, o)}, false},
		{LUN{Keys: []uint64{h, o}, Reservation: res(scsi.TypeWriteExclusive, o)}, false},
		{LUN{Keys: []uint64{h, o}, Reservation: res(scsi.TypeExclusiveAccess, o)}, false},
		{LUN{Keys: []uint64{h, o}, Reservation: res(scsi.TypeWriteExclusive, h)}, true},
		{LUN{Keys: []uint64{h, o}, Reservation: res(scsi.TypeWriteExclusiveRegOnly, o)}, true},
		{LUN{Keys: []uint64{h, o}, Reservation: res(scsi.TypeExclusiveAccessRegOnly, o)}, true},
		{LUN{Keys: []uint64{o, h}, Reservation: res(scsi.TypeWriteExclusiveAllRegs, o)}, true},
	} {
		if got := c.lun.MayWrite(h); got != c.want {
			t.Errorf("%+v (reservation %+v): MayWrite %v, want %v", c.lun, c.lun.Reservation, got, c.want)
		}
	}
}

// TestMirrorForeign: a bare-metal node reserves on the LUN while both hosts
// stay registered; MirrorForeign shows its key and reservation in the
// emulated state, after which the rights between hosts are again those of
// the VMs (docs/virtual-initiators.md §3, §7) and the plans send nothing; a
// VM's reservation the LUN no longer gives is released; the mirror goes when
// the foreign key releases.
func TestMirrorForeign(t *testing.T) {
	w := newWorld(t, 2, "a", "b")
	a1, a2, b1 := w.vms["a"][0], w.vms["a"][1], w.vms["b"][0]
	hostKey := func(k uint64) bool { return k == w.keys["a"] || k == w.keys["b"] }
	bm := pr.Nexus{Initiator: pr.SASInitiator(0x500140500000beef), RTPI: 1}
	bare := func(sa, typ byte, key, sark uint64) {
		t.Helper()
		p, _ := scsi.PROutParams{Key: key, SAKey: sark}.Encode()
		cdb := scsi.PROutCDB(sa, 0, typ, 24)
		if r := pr.Execute(pr.LIO(), &w.lun, bm, cdb[:], p); r.Status != scsi.StatusGood {
			t.Fatalf("bare metal %s: %s", scsi.CommandName(cdb[:]), r)
		}
	}
	mustGood(t, w, w.guest(a1, scsi.SARegister, 0, 0, 0x11))
	mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0, 0x21))
	w.converge("a")
	w.check()
	if released, changed := MirrorForeign(pr.LIO(), &w.emu, w.read("a"), hostKey); released != nil || changed {
		t.Fatalf("nothing foreign, but released %+v changed %v", released, changed)
	}
	for _, typ := range []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly, scsi.TypeExclusiveAccessRegOnly} {
		bare(scsi.SARegister, 0, 0, 0xbeef)
		bare(scsi.SAReserve, typ, 0xbeef, 0)
		if released, changed := MirrorForeign(pr.LIO(), &w.emu, w.read("a"), hostKey); released != nil || !changed {
			t.Fatalf("type %d: released %+v changed %v", typ, released, changed)
		}
		if r := w.emu.Reservation; r == nil || !r.Holder.Equal(Foreign) || r.Type != typ {
			t.Fatalf("type %d: emulated reservation %+v", typ, r)
		}
		if _, changed := MirrorForeign(pr.LIO(), &w.emu, w.read("b"), hostKey); changed {
			t.Fatalf("type %d: the mirror changed again", typ)
		}
		w.checkRights()
		if n := w.converge("b"); n != 0 {
			t.Fatalf("type %d: %d commands sent under the foreign reservation", typ, n)
		}
		if r := w.guest(a2, scsi.SARegister, 0, 0, 0x12); r.Status != scsi.StatusGood {
			t.Fatalf("a2 REGISTER: %s", r)
		}
		if r := w.guest(a2, scsi.SAReserve, scsi.TypeWriteExclusive, 0x12, 0); r.Status != scsi.StatusReservationConflict {
			t.Fatalf("type %d: a2 RESERVE under the foreign reservation: %s", typ, r)
		}
		w.converge("a")
		w.checkRights()
		// The foreign key leaves: the mirror goes with it.
		bare(scsi.SARegister, 0, 0xbeef, 0)
		if released, changed := MirrorForeign(pr.LIO(), &w.emu, w.read("a"), hostKey); released != nil || !changed || w.emu.Reservation != nil ||
			slices.ContainsFunc(w.emu.Registrations, func(r pr.Registration) bool { return r.Nexus.Equal(Foreign) }) {
			t.Fatalf("type %d after the foreign key left: released %+v changed %v, emulated %+v %+v", typ, released, changed, w.emu.Registrations, w.emu.Reservation)
		}
		w.converge("a")
		w.check()
		mustGood(t, w, w.guest(a2, scsi.SARegister, 0, 0x12, 0))
	}
	// a1 holds Exclusive Access; the LUN loses host a's reservation (a helper
	// behind) and the bare-metal node reserves: a1's reservation is released.
	mustGood(t, w, w.guest(a1, scsi.SAReserve, scsi.TypeExclusiveAccess, 0x11, 0))
	w.converge("a")
	w.check()
	w.lun.Reservation = nil
	bare(scsi.SARegister, 0, 0, 0xbeef)
	bare(scsi.SAReserve, scsi.TypeWriteExclusive, 0xbeef, 0)
	released, changed := MirrorForeign(pr.LIO(), &w.emu, w.read("a"), hostKey)
	if released == nil || !released.Holder.Equal(w.vmNexus(a1)) || released.Type != scsi.TypeExclusiveAccess || !changed {
		t.Fatalf("released %+v changed %v", released, changed)
	}
	if w.vmKey(a1) != 0x11 || w.emu.Reservation == nil || !w.emu.Reservation.Holder.Equal(Foreign) {
		t.Fatalf("emulated %+v %+v", w.emu.Registrations, w.emu.Reservation)
	}
	w.checkRights()
}
