package pr

import (
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func TestRemove(t *testing.T) {
	p := LIO()
	a := Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:a", ""), RTPI: 1}
	b := Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:b", ""), RTPI: 1}
	c := Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:c", ""), RTPI: 1}
	for _, tc := range []struct {
		typ      byte
		released bool // the reservation ends when a (its holder) goes
	}{
		{scsi.TypeWriteExclusive, true},
		{scsi.TypeExclusiveAccessRegOnly, true},
		{scsi.TypeWriteExclusiveAllRegs, false},
	} {
		st := State{Generation: 7, Registrations: []Registration{{Nexus: a, Key: 1}, {Nexus: b, Key: 2}, {Nexus: c, Key: 3}},
			Reservation: &Reservation{Holder: a, Type: tc.typ}}
		gone := Remove(p, &st, func(r Registration) bool { return r.Key != 2 && r.Nexus.Equal(a) || r.Key == 3 })
		if len(gone) != 2 || !gone[0].Nexus.Equal(a) || !gone[1].Nexus.Equal(c) {
			t.Fatalf("type %d: removed %+v", tc.typ, gone)
		}
		if len(st.Registrations) != 1 || !st.Registrations[0].Nexus.Equal(b) || st.Generation != 8 {
			t.Fatalf("type %d: left %+v generation %d", tc.typ, st.Registrations, st.Generation)
		}
		if (st.Reservation == nil) != tc.released || (!tc.released && !st.Reservation.Holder.Equal(b)) {
			t.Fatalf("type %d: reservation %+v", tc.typ, st.Reservation)
		}
		if err := st.Validate(); err != nil {
			t.Fatal(err)
		}
		// a learns of its preemption on its next command; b of the release.
		want := map[Nexus]UA{a: {0x2a, ascqRegistrationsPreempted}, c: {0x2a, ascqRegistrationsPreempted}}
		if tc.released {
			want[b] = UA{0x2a, ascqReservationsReleased}
		}
		for n, u := range want {
			cdb := scsi.PRInCDB(scsi.SAReadKeys, 64)
			if r := Execute(p, &st, n, cdb[:], nil); r.Status != scsi.StatusCheckCondition || string(r.Sense) != string(u.Sense().Fixed()) {
				t.Errorf("type %d: %s's next command: %s, want %v", tc.typ, n, r, u)
			}
		}
		if gone := Remove(p, &st, func(Registration) bool { return false }); gone != nil || st.Generation != 8 {
			t.Errorf("removing nothing: %v, generation %d", gone, st.Generation)
		}
	}
	if Remove(p, nil, nil) != nil {
		t.Error("nil state")
	}
}

// TestRelease: Release leaves the state a RELEASE by the holder leaves
// (Execute), byte for byte, for every type and profile; without a
// reservation it changes nothing.
func TestRelease(t *testing.T) {
	a := Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:a", ""), RTPI: 1}
	b := Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:b", ""), RTPI: 1}
	for _, p := range []Profile{LIO(), SPC4()} {
		for _, typ := range []byte{1, 3, 5, 6, 7, 8} {
			var st State
			for _, c := range []struct {
				n       Nexus
				sa      byte
				rk, sak uint64
			}{{a, scsi.SARegister, 0, 1}, {b, scsi.SARegister, 0, 2}, {a, scsi.SAReserve, 1, 0}} {
				cdb := scsi.PROutCDB(c.sa, 0, typ, 24)
				if r := Execute(p, &st, c.n, cdb[:], registerParam(c.rk, c.sak, 0)); r.Status != scsi.StatusGood {
					t.Fatalf("%s type %d: %s", p.Name, typ, r)
				}
			}
			want := st.Clone()
			cdb := scsi.PROutCDB(scsi.SARelease, 0, typ, 24)
			if r := Execute(p, &want, a, cdb[:], registerParam(1, 0, 0)); r.Status != scsi.StatusGood {
				t.Fatalf("%s type %d RELEASE: %s", p.Name, typ, r)
			}
			if got := Release(p, &st); got == nil || got.Type != typ || !got.Holder.Equal(a) {
				t.Fatalf("%s type %d: released %+v", p.Name, typ, got)
			}
			wb, _ := want.MarshalBinary()
			gb, _ := st.MarshalBinary()
			if string(wb) != string(gb) {
				t.Fatalf("%s type %d: Release left %+v, RELEASE %+v", p.Name, typ, st, want)
			}
			if Release(p, &st) != nil {
				t.Fatalf("%s type %d: released twice", p.Name, typ)
			}
		}
	}
}
