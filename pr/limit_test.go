package pr

import (
	"encoding/binary"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// TestMaxRegistrations is issue 12 item 3: SPEC_I_PT registrations were
// unbounded (10,000 on one LU). Past Profile.MaxRegistrations a command that
// would add registrations answers 05/55/04 INSUFFICIENT REGISTRATION RESOURCES
// and changes nothing (SPC-4 §5.7.7; docs/spc4-pr.md §7.7); changing an
// existing registration still works at the limit.
func TestMaxRegistrations(t *testing.T) {
	p := LIO()
	p.MaxRegistrations = 3
	sas := func(i int) Nexus { return Nexus{Initiator: SASInitiator(0x5001405b00000000 | uint64(i)), RTPI: 1} }
	sasTID := func(i int) []byte {
		t := make([]byte, 24)
		t[0] = scsi.ProtoSAS
		binary.BigEndian.PutUint64(t[4:12], 0x5001405b00000000|uint64(i))
		return t
	}
	reg := func(st *State, n Nexus, rk, sark uint64, tids ...[]byte) string {
		param := registerParam(rk, sark, 0)
		if len(tids) > 0 {
			param[20] |= scsi.ParamSpecIPT
			var list []byte
			for _, t := range tids {
				list = append(list, t...)
			}
			param = binary.BigEndian.AppendUint32(param, uint32(len(list)))
			param = append(param, list...)
		}
		c := scsi.PROutCDB(scsi.SARegister, 0, 0, uint32(len(param)))
		return describe(Execute(p, st, n, c[:], param))
	}
	full := "CC 5/55/04"

	var st State
	for i := 1; i <= 3; i++ {
		if got := reg(&st, sas(i), 0, uint64(i)); got != "GOOD" {
			t.Fatalf("REGISTER %d: %s", i, got)
		}
	}
	if got := reg(&st, sas(4), 0, 4); got != full {
		t.Errorf("4th REGISTER past a limit of 3: %s, want %s", got, full)
	}
	c := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
	if got := describe(Execute(p, &st, sas(5), c[:], registerParam(0, 5, 0))); got != full {
		t.Errorf("RIEK past the limit: %s, want %s", got, full)
	}
	if got := reg(&st, sas(2), 2, 22); got != "GOOD" {
		t.Errorf("key change at the limit: %s, want GOOD", got)
	}
	if len(st.Registrations) != 3 || st.Generation != 4 {
		t.Fatalf("state changed by refused commands: %d registrations, generation %d", len(st.Registrations), st.Generation)
	}

	// SPEC_I_PT: all or nothing.
	var sp State
	if got := reg(&sp, sas(1), 0, 1, sasTID(2), sasTID(3), sasTID(4)); got != full {
		t.Errorf("SPEC_I_PT for 4 registrations past a limit of 3: %s, want %s", got, full)
	}
	if len(sp.Registrations) != 0 {
		t.Fatalf("refused SPEC_I_PT left %d registrations", len(sp.Registrations))
	}
	if got := reg(&sp, sas(1), 0, 1, sasTID(2), sasTID(3)); got != "GOOD" {
		t.Errorf("SPEC_I_PT for 3 registrations: %s, want GOOD", got)
	}

	// REGISTER AND MOVE to a new nexus at the limit; with UNREG the count stays.
	res := scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusive, 24)
	if got := describe(Execute(p, &sp, sas(1), res[:], registerParam(1, 0, 0))); got != "GOOD" {
		t.Fatalf("RESERVE: %s", got)
	}
	move := func(unreg bool) string {
		mp := make([]byte, 24)
		binary.BigEndian.PutUint64(mp[0:8], 1)
		binary.BigEndian.PutUint64(mp[8:16], 9)
		if unreg {
			mp[17] = scsi.MoveUnreg
		}
		binary.BigEndian.PutUint16(mp[18:20], 1)
		binary.BigEndian.PutUint32(mp[20:24], 24)
		mp = append(mp, sasTID(7)...)
		c := scsi.PROutCDB(scsi.SARegisterAndMove, 0, scsi.TypeWriteExclusive, uint32(len(mp)))
		return describe(Execute(p, &sp, sas(1), c[:], mp))
	}
	if got := move(false); got != full {
		t.Errorf("REGISTER AND MOVE to a new nexus at the limit: %s, want %s", got, full)
	}
	if got := move(true); got != "GOOD" {
		t.Errorf("REGISTER AND MOVE with UNREG at the limit: %s, want GOOD", got)
	}
}
