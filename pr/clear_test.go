package pr

import (
	"reflect"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// TestClearAsCLEAR: an administrator's Clear leaves the logical unit exactly as
// a registrant's CLEAR would (SPC-4 §5.7.11.6), except that the registrant that
// would have issued it gets RESERVATIONS PREEMPTED too.
func TestClearAsCLEAR(t *testing.T) {
	a, b, c := defaultNexus(0), defaultNexus(1), Nexus{Initiator: ISCSIInitiator("iqn.2026-01.test:c", ""), RTPI: 2}
	for _, p := range []struct {
		name string
		p    Profile
	}{{"LIO", LIO()}, {"SPC4", SPC4()}} {
		t.Run(p.name, func(t *testing.T) {
			var st State
			for i, n := range []Nexus{a, b, c} {
				param, _ := scsi.PROutParams{SAKey: uint64(0xa0 + i), APTPL: i == 0}.Encode()
				cdb := scsi.PROutCDB(scsi.SARegister, 0, 0, uint32(len(param)))
				if r := Execute(p.p, &st, n, cdb[:], param); r.Status != scsi.StatusGood {
					t.Fatalf("register %d: %v", i, r)
				}
			}
			param, _ := scsi.PROutParams{Key: 0xa1}.Encode()
			cdb := scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeExclusiveAccessRegOnly, uint32(len(param)))
			if r := Execute(p.p, &st, b, cdb[:], param); r.Status != scsi.StatusGood {
				t.Fatalf("reserve: %v", r)
			}
			byCLEAR := st.Clone()
			param, _ = scsi.PROutParams{Key: 0xa0}.Encode()
			cdb = scsi.PROutCDB(scsi.SAClear, 0, 0, uint32(len(param)))
			if r := Execute(p.p, &byCLEAR, a, cdb[:], param); r.Status != scsi.StatusGood {
				t.Fatalf("CLEAR: %v", r)
			}
			admin := st.Clone()
			if !Clear(p.p, &admin) {
				t.Fatal("Clear reported no change")
			}
			// a's queue comes first: Clear raises the conditions in registration order.
			byCLEAR.UnitAttentions = append([]PendingUA{{Nexus: uaTarget(p.p, a), Conditions: []UA{{ASC: 0x2a, ASCQ: ascqReservationsPreempted}}}},
				byCLEAR.UnitAttentions...)
			byCLEAR.normalize()
			admin.normalize()
			if !reflect.DeepEqual(admin, byCLEAR) {
				t.Fatalf("Clear:\n%+v\nCLEAR from a, plus a's unit attention:\n%+v", admin, byCLEAR)
			}
			if admin.Generation != st.Generation+1 || admin.Reservation != nil || len(admin.Registrations) != 0 || len(admin.UnitAttentions) != 3 {
				t.Fatalf("after Clear: %+v", admin)
			}
			// Each former registrant now reports the unit attention first.
			rk := scsi.PRInCDB(scsi.SAReadKeys, 8192)
			for _, n := range []Nexus{a, b, c} {
				r := Execute(p.p, &admin, n, rk[:], nil)
				if s, ok := r.ParseSense(); !ok || s.Key != scsi.KeyUnitAttention || s.ASC != 0x2a || s.ASCQ != ascqReservationsPreempted {
					t.Fatalf("READ KEYS from %s after Clear: %v", n, r)
				}
			}
		})
	}
}

// TestClearNothing: a logical unit without registrations is left as it is.
func TestClearNothing(t *testing.T) {
	st := State{Generation: 7}
	if Clear(LIO(), &st) || st.Generation != 7 {
		t.Fatalf("Clear on an empty LU: %+v", st)
	}
	if Clear(LIO(), nil) {
		t.Fatal("Clear(nil) reported a change")
	}
}
