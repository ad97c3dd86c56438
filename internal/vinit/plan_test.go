package vinit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

var allTypes = []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
	scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}

// mustGood fails unless r, or the same command again after the unit attention
// r reports, is GOOD.
func mustGood(t *testing.T, w *world, r pr.Result) {
	t.Helper()
	if s, ok := r.ParseSense(); r.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention {
		r = w.again()
	}
	if r.Status != scsi.StatusGood {
		t.Fatalf("guest command: %s", r)
	}
}

// TestScripted walks the cases of docs/virtual-initiators.md §3-§5 for every
// type: two VMs on host a reserve against and preempt each other while the LUN
// shows a's key alone; a VM on b takes the reservation from a VM on a with a
// PREEMPT (a registers again for its other VM); b evicts both of a's VMs and
// its own plan preempts a's key; everybody leaves and the LUN is empty.
func TestScripted(t *testing.T) {
	for _, typ := range allTypes {
		t.Run(fmt.Sprintf("type%d", typ), func(t *testing.T) {
			w := newWorld(t, 2, "a", "b")
			a1, a2, b1 := w.vms["a"][0], w.vms["a"][1], w.vms["b"][0]
			ka := w.keys["a"]

			mustGood(t, w, w.guest(a1, scsi.SARegister, 0, 0, 0x11))
			mustGood(t, w, w.guest(a2, scsi.SARegister, 0, 0, 0x12))
			mustGood(t, w, w.guest(a1, scsi.SAReserve, typ, 0x11, 0))
			if w.converge("a") == 0 {
				t.Fatal("nothing sent for a's first VM")
			}
			w.check()
			if l := w.read("b"); !slices.Equal(l.Keys, []uint64{ka}) || l.Reservation == nil || l.Reservation.Type != typ {
				t.Fatalf("LUN after a's reservation: %+v", l)
			}
			// a2 preempts a1 on host a: the LUN does not change.
			mustGood(t, w, w.guest(a2, scsi.SAPreempt, typ, 0x12, 0x11))
			if n := w.converge("a"); n != 0 && !AllRegistrants(typ) {
				t.Fatalf("a VM of a preempting another of a sent %d commands", n)
			}
			w.check()

			// b1 registers and preempts a2, the holder (for the
			// all-registrants types: a2's registration).
			mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0, 0x21))
			w.converge("b")
			w.check()
			mustGood(t, w, w.guest(a1, scsi.SARegister, 0, 0, 0x11))
			w.converge("a")
			mustGood(t, w, w.guest(b1, scsi.SAPreempt, typ, 0x21, 0x12))
			w.converge("b")
			w.check()
			if !w.read("a").Has(ka) {
				t.Fatal("a is not registered for a1")
			}
			// b1 evicts a1 too: a has no VM left, b's own plan preempts a's key.
			mustGood(t, w, w.guest(b1, scsi.SAPreempt, typ, 0x21, 0x11))
			plan := w.reconcile("b")
			if !slices.ContainsFunc(plan, func(c Command) bool { return c.Action == scsi.SAPreempt && c.SAKey == ka }) {
				t.Fatalf("b's plan after evicting a: %v", plan)
			}
			if w.read("b").Has(ka) {
				t.Fatal("a's key is still on the LUN")
			}
			w.converge("b")
			w.check()
			if res := pr.CheckAccess(pr.LIO(), &w.lun, w.sas["a"], write10); res.Status != scsi.StatusReservationConflict {
				t.Fatalf("a's WRITE on the LUN: %s", res)
			}
			// b1 leaves: the LUN is empty.
			mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0x21, 0))
			w.converge("b")
			w.check()
			if l := w.read("a"); len(l.Keys) != 0 || l.Reservation != nil {
				t.Fatalf("LUN after everybody left: %+v", l)
			}
		})
	}
}

// TestRandomSequences is the differential of docs/virtual-initiators.md §9:
// random PR OUT sequences from six VMs on three hosts; after each, every host
// applies its plan (the acting VM's host first) until none has anything to
// send, and check compares the rights between hosts. Before the other hosts
// act, checkActor checks what the acting host's plan alone must do.
func TestRandomSequences(t *testing.T) {
	seeds := 200
	steps := 150
	if testing.Short() {
		seeds = 20
	}
	for seed := 1; seed <= seeds; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 15))
		w := newWorld(t, 2, "a", "b", "c")
		var all []string
		for _, h := range w.hosts {
			all = append(all, w.vms[h]...)
		}
		good, sent := 0, 0
		for range steps {
			vm := all[rng.IntN(len(all))]
			cur := w.vmKey(vm)
			key := cur
			if rng.IntN(10) == 0 {
				key = uint64(rng.IntN(4))
			}
			sark := uint64(rng.IntN(5)) // VM keys collide across hosts: 1-4
			typ := allTypes[rng.IntN(len(allTypes))]
			if r := w.emu.Reservation; r != nil && rng.IntN(2) == 0 {
				typ = r.Type
			}
			var sa byte
			switch rng.IntN(10) {
			case 0, 1:
				sa = scsi.SARegister
				if cur != 0 && rng.IntN(2) == 0 {
					sark = 0
				}
			case 2:
				sa = scsi.SARegisterAndIgnoreExisting
				key = 0
			case 3, 4:
				sa = scsi.SAReserve
			case 5:
				sa = scsi.SARelease
			case 6, 7, 8:
				sa = scsi.SAPreempt
			case 9:
				sa = scsi.SAClear
				if rng.IntN(3) != 0 {
					continue
				}
			}
			if w.guest(vm, sa, typ, key, sark).Status != scsi.StatusGood {
				continue
			}
			good++
			h := w.host[w.vmNexus(vm).Initiator]
			sent += len(w.reconcile(h))
			w.checkActor(h)
			sent += w.converge(h)
			w.check()
		}
		if seed <= 3 || seed == seeds {
			t.Logf("seed %d: %d of %d guest commands GOOD, %d LUN commands", seed, good, steps, sent)
		}
		if t.Failed() {
			t.Fatalf("seed %d", seed)
		}
	}
}

// TestPlanTable checks plans the sequences above rarely reach.
func TestPlanTable(t *testing.T) {
	keys := map[string]uint64{"a": 0xa, "b": 0xb}
	res := func(typ byte, holder string) *HostReservation { return &HostReservation{Type: typ, Holder: holder} }
	cases := []struct {
		name string
		d    Desired
		lun  LUN
		want []Command
		err  error
	}{
		{"a foreign key holds what a should: registered, then refused",
			Desired{Registered: map[string]bool{"a": true}, Reservation: res(scsi.TypeWriteExclusive, "a")},
			LUN{Keys: []uint64{0xf}, Reservation: &LUNReservation{Type: scsi.TypeWriteExclusive, Key: 0xf}},
			[]Command{{Action: scsi.SARegisterAndIgnoreExisting, SAKey: 0xa}}, ErrForeignHolder},
		{"a foreign key is never preempted, even with nothing desired",
			Desired{Registered: map[string]bool{"a": true}},
			LUN{Keys: []uint64{0xa, 0xf}, Reservation: &LUNReservation{Type: scsi.TypeExclusiveAccess, Key: 0xf}},
			nil, nil},
		{"a holds what b should have: a leaves it to b's PREEMPT",
			Desired{Registered: map[string]bool{"b": true}, Reservation: res(scsi.TypeWriteExclusive, "b")},
			LUN{Keys: []uint64{0xa, 0xb}, Reservation: &LUNReservation{Type: scsi.TypeWriteExclusive, Key: 0xa}},
			nil, nil},
		{"a is the last registrant of an all-registrants reservation b should have",
			Desired{Registered: map[string]bool{"b": true}, Reservation: res(scsi.TypeExclusiveAccessAllRegs, "b")},
			LUN{Keys: []uint64{0xa}, Reservation: &LUNReservation{Type: scsi.TypeExclusiveAccessAllRegs, Key: 0xa}},
			nil, nil},
		{"the type of a's own reservation changes with a PREEMPT of its own key",
			Desired{Registered: map[string]bool{"a": true}, Reservation: res(scsi.TypeExclusiveAccess, "a")},
			LUN{Keys: []uint64{0xa}, Reservation: &LUNReservation{Type: scsi.TypeWriteExclusive, Key: 0xa}},
			[]Command{{Action: scsi.SAPreempt, Type: scsi.TypeExclusiveAccess, Key: 0xa, SAKey: 0xa}}, nil},
		{"an evicted host's reservation, none desired: preempted and released",
			Desired{Registered: map[string]bool{"a": true}},
			LUN{Keys: []uint64{0xb, 0xa}, Reservation: &LUNReservation{Type: scsi.TypeExclusiveAccess, Key: 0xb}},
			[]Command{{Action: scsi.SAPreempt, Type: scsi.TypeExclusiveAccess, Key: 0xa, SAKey: 0xb},
				{Action: scsi.SARelease, Type: scsi.TypeExclusiveAccess, Key: 0xa}}, nil},
	}
	for _, c := range cases {
		got, err := Plan(c.d, "a", keys, c.lun)
		if !errors.Is(err, c.err) || !slices.Equal(got, c.want) {
			t.Errorf("%s:\n got %v, %v\nwant %v, %v", c.name, got, err, c.want, c.err)
		}
	}
	if _, err := Plan(Desired{}, "z", keys, LUN{}); err == nil {
		t.Error("a host without a key planned")
	}
}

func TestReadLUN(t *testing.T) {
	w := newWorld(t, 1, "a", "b")
	mustGood(t, w, w.guest(w.vms["a"][0], scsi.SARegister, 0, 0, 1))
	mustGood(t, w, w.guest(w.vms["b"][0], scsi.SARegister, 0, 0, 2))
	mustGood(t, w, w.guest(w.vms["b"][0], scsi.SAReserve, scsi.TypeWriteExclusiveAllRegs, 2, 0))
	w.converge("b")
	l := w.read("a")
	if want := []uint64{w.keys["b"], w.keys["a"]}; !slices.Equal(l.Keys, want) || l.Reservation == nil ||
		l.Reservation.Type != scsi.TypeWriteExclusiveAllRegs || l.Reservation.Key != w.keys["b"] {
		t.Fatalf("ReadLUN: %+v", l)
	}
	res := w.lunDo("a", scsi.PRInCDB(scsi.SAReadFullStatus, 40), nil)
	if _, err := ReadLUN(res.Data); !errors.Is(err, ErrTruncated) {
		t.Errorf("READ FULL STATUS cut at 40 bytes: %v", err)
	}
	if _, err := ReadLUN([]byte{0, 0}); err == nil {
		t.Error("2 bytes decoded")
	}
}

func TestDesireUnknownHost(t *testing.T) {
	known := pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2026-01.test:known", ""), RTPI: 1}
	stranger := pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2026-01.test:stranger", ""), RTPI: 1}
	hostOf := func(n pr.Nexus) (string, bool) { return "a", n.Equal(known) }
	st := pr.State{Registrations: []pr.Registration{{Nexus: stranger, Key: 1}, {Nexus: known, Key: 2}},
		Reservation: &pr.Reservation{Holder: stranger, Type: scsi.TypeExclusiveAccessAllRegs}}
	d := Desire(&st, hostOf)
	if !d.Registered["a"] || len(d.Registered) != 1 || d.Reservation == nil || d.Reservation.Holder != "a" {
		t.Errorf("all-registrants, representative on no host: %+v %+v", d, d.Reservation)
	}
	st.Reservation.Type = scsi.TypeExclusiveAccess
	if d := Desire(&st, hostOf); d.Reservation != nil {
		t.Errorf("exclusive access held on no host: desired %+v", d.Reservation)
	}
}

// TestFold: a bare-metal node preempts host a's key on the LUN; a's VMs
// registered when a last saw its key are evicted in the emulated state, a VM
// registered since keeps its registration, and a's next plan registers a
// again for it (docs/virtual-initiators.md §7).
func TestFold(t *testing.T) {
	w := newWorld(t, 3, "a", "b")
	a1, a2, a3, b1 := w.vms["a"][0], w.vms["a"][1], w.vms["a"][2], w.vms["b"][0]
	mustGood(t, w, w.guest(a1, scsi.SARegister, 0, 0, 0x11))
	mustGood(t, w, w.guest(a2, scsi.SARegister, 0, 0, 0x12))
	mustGood(t, w, w.guest(a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	mustGood(t, w, w.guest(b1, scsi.SARegister, 0, 0, 0x21))
	w.converge("a")
	w.check()
	seen := Own(&w.emu, w.hostOf, "a")
	if len(seen) != 2 {
		t.Fatalf("a's own registrations: %+v", seen)
	}
	if got := Fold(pr.LIO(), &w.emu, w.read("a"), w.keys["a"], seen); got != nil {
		t.Fatalf("folded with a's key on the LUN: %+v", got)
	}
	// A bare-metal node (a third initiator on the LUN) registers and
	// preempts a's key: it holds the reservation now.
	bm := pr.Nexus{Initiator: pr.SASInitiator(0x500140500000beef), RTPI: 1}
	for _, c := range []struct {
		sa   byte
		key  uint64
		sark uint64
	}{{scsi.SARegister, 0, 0xbeef}, {scsi.SAPreempt, 0xbeef, w.keys["a"]}} {
		p, _ := scsi.PROutParams{Key: c.key, SAKey: c.sark}.Encode()
		cdb := scsi.PROutCDB(c.sa, 0, scsi.TypeWriteExclusive, 24)
		if r := pr.Execute(pr.LIO(), &w.lun, bm, cdb[:], p); r.Status != scsi.StatusGood {
			t.Fatalf("bare metal %s: %s", scsi.CommandName(cdb[:]), r)
		}
	}
	// a3 registered after a last saw its key.
	mustGood(t, w, w.guest(a3, scsi.SARegister, 0, 0, 0x13))
	lun := w.read("a")
	gone := Fold(pr.LIO(), &w.emu, lun, w.keys["a"], seen)
	if len(gone) != 2 || w.vmKey(a1) != 0 || w.vmKey(a2) != 0 || w.vmKey(a3) != 0x13 || w.vmKey(b1) != 0x21 {
		t.Fatalf("folded %+v, emulated %+v", gone, w.emu.Registrations)
	}
	if w.emu.Reservation != nil {
		t.Fatalf("a1's reservation kept: %+v", w.emu.Reservation)
	}
	// a1 learns it was preempted on its next command.
	cdb := scsi.PRInCDB(scsi.SAReadKeys, 64)
	if r := pr.Execute(pr.LIO(), &w.emu, w.vmNexus(a1), cdb[:], nil); r.Status != scsi.StatusCheckCondition {
		t.Fatalf("a1's next command: %s", r)
	}
	// a's plan registers a again for a3; the bare-metal reservation stays.
	plan := w.reconcile("a")
	if len(plan) != 1 || plan[0].Action != scsi.SARegisterAndIgnoreExisting {
		t.Fatalf("a's plan after the fold: %v", plan)
	}
	if l := w.read("b"); !l.Has(w.keys["a"]) || l.Reservation == nil || l.Reservation.Key != 0xbeef {
		t.Fatalf("LUN: %+v", l)
	}
}
