package pr

import (
	"encoding/binary"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func registerParam(rk, sark uint64, flags byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	p[20] = flags
	return p
}

// TestExecuteEdges covers inputs the scenarios do not: malformed CDBs, a nil
// state, and parameter lists whose bytes and announced length disagree (the
// helper protocol frames PR OUT on CDB bytes 7-8 only).
func TestExecuteEdges(t *testing.T) {
	reg := func(pll uint32) []byte {
		c := scsi.PROutCDB(scsi.SARegister, 0, 0, pll)
		return c[:]
	}
	tests := []struct {
		name    string
		cdb     []byte
		param   []byte
		want    string
		wantGen uint32
	}{
		{"short CDB", []byte{0x5f, 0, 0, 0, 0, 0, 0, 0, 0x18}, registerParam(0, k1, 0), "CC 5/24/00", 0},
		{"not a PR opcode", []byte{0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, "CC 5/20/00", 0},
		{"PLL 24, 24 bytes", reg(24), registerParam(0, k1, 0), "GOOD", 1},
		{"PLL 0x10018, the 24 bytes the helper framed", reg(0x10018), registerParam(0, k1, 0), "CC 5/1a/00", 0},
		{"PLL 24, only 20 bytes received", reg(24), registerParam(0, k1, 0)[:20], "CC 5/1a/00", 0},
		{"PLL 24, 30 bytes received: the first 24 count", reg(24), append(registerParam(0, k1, 0), 1, 2, 3, 4, 5, 6), "GOOD", 1},
		{"SPEC_I_PT, PLL 40 but 28 bytes received", reg(40), append(registerParam(0, k1, scsi.ParamSpecIPT), 0, 0, 0, 12), "CC 5/1a/00", 0},
		{"16-byte helper CDB", func() []byte { c := scsi.PROutCDB(scsi.SARegister, 0, 0, 24); return c[:] }(), registerParam(0, k1, 0), "GOOD", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st State
			r := Execute(LIO(), &st, nx1, tc.cdb, tc.param)
			if got := describe(r); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if st.Generation != tc.wantGen {
				t.Fatalf("generation %d, want %d", st.Generation, tc.wantGen)
			}
		})
	}
	c := scsi.PRInCDB(0, 8)
	if r := Execute(LIO(), nil, nx1, c[:], nil); describe(r) != "CC 2/08/00" {
		t.Fatalf("nil state: %s", describe(r))
	}
	if r := CheckAccess(LIO(), &State{}, nx1, nil); describe(r) != "CC 5/24/00" {
		t.Fatalf("empty CDB: %s", describe(r))
	}
}

// TestReportUnitAttentionsOff checks that with ReportUnitAttentions false the
// conditions are still recorded in State but never reported or consumed.
func TestReportUnitAttentionsOff(t *testing.T) {
	p := LIO()
	p.ReportUnitAttentions = false
	var st State
	out := func(n Nexus, sa, typ byte, rk, sark uint64) string {
		c := scsi.PROutCDB(sa, 0, typ, 24)
		return describe(Execute(p, &st, n, c[:], registerParam(rk, sark, 0)))
	}
	for _, step := range []struct {
		got, want string
	}{
		{out(nx1, scsi.SARegister, 0, 0, k1), "GOOD"},
		{out(nx2, scsi.SARegister, 0, 0, k2), "GOOD"},
		{out(nx1, scsi.SAReserve, 6, k1, 0), "GOOD"},
		{out(nx1, scsi.SARelease, 6, k1, 0), "GOOD"},
	} {
		if step.got != step.want {
			t.Fatalf("got %s, want %s", step.got, step.want)
		}
	}
	if len(st.UnitAttentions) != 1 || st.UnitAttentions[0].Conditions[0] != (UA{0x2a, 4}) {
		t.Fatalf("unit attentions %+v, want 2A/04 for I2", st.UnitAttentions)
	}
	c := scsi.PRInCDB(0, 8192)
	if r := Execute(p, &st, nx2, c[:], nil); r.Status != scsi.StatusGood {
		t.Fatalf("READ KEYS from I2 = %s", describe(r))
	}
	if len(st.UnitAttentions) != 1 {
		t.Fatal("an unreported unit attention was consumed")
	}
}

// TestNodeACLGranularity checks D16: LIO queues unit attentions per initiator
// name at a target port, so another ISID of the same name sees them; per I_T
// nexus (SPC-4 profile) it does not.
func TestNodeACLGranularity(t *testing.T) {
	other := Nexus{Initiator: ISCSIInitiator(nx2.Initiator.Name, "00023d0000ff"), RTPI: 1}
	for _, tc := range []struct {
		p    Profile
		want string
	}{{LIO(), "CC 6/2a/04"}, {SPC4(), "GOOD"}} {
		var st State
		run := func(n Nexus, sa, typ byte, rk, sark uint64) {
			c := scsi.PROutCDB(sa, 0, typ, 24)
			if r := Execute(tc.p, &st, n, c[:], registerParam(rk, sark, 0)); r.Status != scsi.StatusGood {
				t.Fatalf("%s: %s", tc.p.Name, describe(r))
			}
		}
		run(nx1, scsi.SARegister, 0, 0, k1)
		run(nx2, scsi.SARegister, 0, 0, k2)
		run(nx1, scsi.SAReserve, 5, k1, 0)
		run(nx1, scsi.SARelease, 5, k1, 0)
		if got := describe(CheckAccess(tc.p, &st, other, []byte{0, 0, 0, 0, 0, 0})); got != tc.want {
			t.Errorf("%s: TUR from I2's other ISID = %s, want %s", tc.p.Name, got, tc.want)
		}
	}
}

// TestProfiles checks that the two profiles differ where §14 says they do,
// so that a field silently copied from one to the other fails here.
func TestProfiles(t *testing.T) {
	l, s := LIO(), SPC4()
	if l.Name != "lio" || s.Name != "spc4" {
		t.Fatal("names")
	}
	differ := []struct {
		name string
		a, b any
	}{
		{"D1", l.ReleaseTypeMismatchInvalidRelease, s.ReleaseTypeMismatchInvalidRelease},
		{"D2", l.UnregisteredCommFailure, s.UnregisteredCommFailure},
		{"D4", l.ScopeSense, s.ScopeSense},
		{"D5", l.GenerationOnUnregister, s.GenerationOnUnregister},
		{"D8", l.PreemptRepresentative, s.PreemptRepresentative},
		{"D9", l.PreemptRemovesCaller, s.PreemptRemovesCaller},
		{"D10", l.ReleaseChecksNonHolderKey, s.ReleaseChecksNonHolderKey},
		{"D11", l.ShortAllocationInvalid, s.ShortAllocationInvalid},
		{"D12", l.FullStatusCountsFitting, s.FullStatusCountsFitting},
		{"D13", l.ReadReservationHeaderOnly, s.ReadReservationHeaderOnly},
		{"D14", l.ReadKeysWholeKeys, s.ReadKeysWholeKeys},
		{"D15", l.UAClearAll, s.UAClearAll},
		{"D16", l.NodeACLGranularity, s.NodeACLGranularity},
		{"D18", l.ClearResetsAPTPL, s.ClearResetsAPTPL},
		{"D22", l.ModeSenseRegisteredUnderEA, s.ModeSenseRegisteredUnderEA},
		{"D23", l.ReadCapacity16AlwaysAllowed, s.ReadCapacity16AlwaysAllowed},
		{"D24", l.SyncCacheUnregisteredUnderWE, s.SyncCacheUnregisteredUnderWE},
		{"D25", l.CRHAllRegistrantsROAR, s.CRHAllRegistrantsROAR},
		{"D26", l.NoDataPROutByDirection, s.NoDataPROutByDirection},
		{"D27", l.SpecIPTDuplicates, s.SpecIPTDuplicates},
		{"D28", l.MoveSourceScope, s.MoveSourceScope},
		{"D29", l.SharedRegisteredFlag, s.SharedRegisteredFlag},
	}
	for _, d := range differ {
		if d.a == d.b {
			t.Errorf("%s: LIO and SPC-4 profiles agree (%v)", d.name, d.a)
		}
	}
	if got := l.Capabilities.Encode(); string(got) != string([]byte{0, 8, 0x1d, 0x90, 0xea, 1, 0, 0}) {
		t.Errorf("LIO capabilities % x", got)
	}
}

// TestHostileState runs commands against states a caller could build by hand
// that break the invariants UnmarshalBinary enforces: the engine must answer,
// not panic.
func TestHostileState(t *testing.T) {
	states := []State{
		{Reservation: &Reservation{Holder: nx1, Type: 3}},
		{Reservation: &Reservation{Holder: nx1, Type: 8}},
		{Registrations: []Registration{reg(nx1, 0), reg(nx1, k1)}, Reservation: &Reservation{Holder: nx2, Type: 2}},
		{UnitAttentions: []PendingUA{{Nexus: nx1}}},
		{Ports: []Port{{RTPI: 9, Protocol: 0xff, Initiators: []Initiator{}}}},
	}
	cdbs := [][]byte{
		func() []byte { c := scsi.PRInCDB(0, 8192); return c[:] }(),
		func() []byte { c := scsi.PRInCDB(1, 8192); return c[:] }(),
		func() []byte { c := scsi.PRInCDB(3, 8192); return c[:] }(),
		func() []byte { c := scsi.PROutCDB(scsi.SARelease, 0, 3, 24); return c[:] }(),
		func() []byte { c := scsi.PROutCDB(scsi.SAPreempt, 0, 8, 24); return c[:] }(),
		func() []byte { c := scsi.PROutCDB(scsi.SARegister, 0, 0, 24); return c[:] }(),
		{0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0},
		{0x16},
	}
	for i, s := range states {
		for _, c := range cdbs {
			for _, n := range []Nexus{nx1, nx2} {
				st := s.Clone()
				Execute(LIO(), &st, n, c, registerParam(k1, 0, 0))
				CheckAccess(SPC4(), &st, n, c)
			}
		}
		_ = i
	}
}

// TestPreemptOwnKeyAllRegistrants: under an all-registrants reservation a SARK
// that matches only the caller's own registration still matches a registered
// key (SPC-4 §5.7.11.4), as LIO answers: GOOD, found by the LIO differential
// (tools/prgen, seed 12 step 473). SARK 0 from the only registrant makes it the
// holder with the new type.
func TestPreemptOwnKeyAllRegistrants(t *testing.T) {
	setup := func(regs ...Nexus) *State {
		st := &State{}
		for i, n := range regs {
			c := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
			Execute(LIO(), st, n, c[:], registerParam(0, uint64(0xa0+i), 0))
		}
		c := scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeExclusiveAccessAllRegs, 24)
		if r := Execute(LIO(), st, regs[0], c[:], registerParam(0xa0, 0, 0)); r.Status != scsi.StatusGood {
			t.Fatalf("reserve: %s", describe(r))
		}
		return st
	}
	preempt := func(st *State, n Nexus, rk, sark uint64, typ byte) Result {
		c := scsi.PROutCDB(scsi.SAPreempt, 0, typ, 24)
		return Execute(LIO(), st, n, c[:], registerParam(rk, sark, 0))
	}
	st := setup(nx1, nx2)
	gen := st.Generation
	if r := preempt(st, nx2, 0xa1, 0xa1, scsi.TypeExclusiveAccessAllRegs); r.Status != scsi.StatusGood {
		t.Fatalf("own key: %s", describe(r))
	}
	if len(st.Registrations) != 2 || st.Reservation == nil || st.Reservation.Type != scsi.TypeExclusiveAccessAllRegs || st.Generation != gen+1 {
		t.Fatalf("own key changed the state: %+v", st)
	}
	if r := preempt(st, nx2, 0xa1, 0xee, scsi.TypeExclusiveAccessAllRegs); r.Status != scsi.StatusReservationConflict {
		t.Fatalf("unregistered SARK: %s", describe(r))
	}
	st = setup(nx1)
	if r := preempt(st, nx1, 0xa0, 0, scsi.TypeWriteExclusiveAllRegs); r.Status != scsi.StatusGood {
		t.Fatalf("SARK 0, only registrant: %s", describe(r))
	}
	if st.Reservation == nil || st.Reservation.Type != scsi.TypeWriteExclusiveAllRegs {
		t.Fatalf("reservation %+v", st.Reservation)
	}
}
