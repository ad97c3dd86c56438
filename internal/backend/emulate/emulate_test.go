package emulate

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

const (
	vm1 = "iqn.2025-01.dev.prhelper:vm:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	vm2 = "iqn.2025-01.dev.prhelper:vm:6fa459ea-ee8a-3ca4-894e-db77e160355e"
	lu  = "naa.6001405abd00000000000000000000"
)

func param(rk, sark uint64, flags byte) []byte {
	p := make([]byte, 24)
	for i := 0; i < 8; i++ {
		p[7-i] = byte(rk >> (8 * i))
		p[15-i] = byte(sark >> (8 * i))
	}
	p[20] = flags
	return p
}

type cmd struct {
	init  string
	cdb   [16]byte
	param []byte
}

func out(init string, sa, typ byte, rk, sark uint64) cmd {
	return cmd{init, scsi.PROutCDB(sa, 0, typ, 24), param(rk, sark, 0)}
}

func in(init string, sa byte) cmd { return cmd{init: init, cdb: scsi.PRInCDB(sa, 8192)} }

func run(t *testing.T, b *Backend, lu string, c cmd) scsi.Result {
	t.Helper()
	rep, _ := b.Execute(context.Background(), &backend.Request{CDB: c.cdb, Param: c.param, FD: -1, Initiator: c.init, LU: lu})
	return rep
}

func senseOf(r scsi.Result) scsi.Sense {
	s, _ := scsi.ParseSense(r.Sense[:])
	return s
}

// TestTwoVMsFenceEachOther is the point of emulation: two initiators on one host
// are told apart, so one VM's reservation conflicts for the other, which can
// preempt it.
func TestTwoVMsFenceEachOther(t *testing.T) {
	b := New(memory.New(), pr.LIO())
	steps := []struct {
		c      cmd
		status byte
	}{
		{out(vm1, scsi.SARegister, 0, 0, 0xa1), scsi.StatusGood},
		{out(vm1, scsi.SAReserve, scsi.TypeWriteExclusive, 0xa1, 0), scsi.StatusGood},
		{out(vm2, scsi.SAReserve, scsi.TypeWriteExclusive, 0xb2, 0), scsi.StatusReservationConflict},
		{out(vm2, scsi.SARegister, 0, 0, 0xb2), scsi.StatusGood},
		{out(vm2, scsi.SAReserve, scsi.TypeWriteExclusive, 0xb2, 0), scsi.StatusReservationConflict},
		{out(vm2, scsi.SAPreempt, scsi.TypeWriteExclusive, 0xb2, 0xa1), scsi.StatusGood},
	}
	for i, s := range steps {
		if rep := run(t, b, lu, s.c); rep.Status != s.status {
			t.Fatalf("step %d: status %s sense %v, want %s", i, scsi.StatusName(rep.Status), senseOf(rep), scsi.StatusName(s.status))
		}
	}
	// vm1 was preempted: its next PR command reports the unit attention, as LIO would.
	rep := run(t, b, lu, in(vm1, scsi.SAReadKeys))
	if rep.Status != scsi.StatusCheckCondition || senseOf(rep) != scsi.SenseRegsPreempted {
		t.Fatalf("vm1 after preempt: %s %v", scsi.StatusName(rep.Status), senseOf(rep))
	}
	rep = run(t, b, lu, in(vm1, scsi.SAReadReservation))
	res, err := scsi.DecodeReservation(rep.Data)
	if err != nil || rep.Status != scsi.StatusGood || res.Key != 0xb2 {
		t.Fatalf("reservation after preempt: %v %+v %v", scsi.StatusName(rep.Status), res, err)
	}
	// READ FULL STATUS names vm2 by an iSCSI TransportID built from its name.
	rep = run(t, b, lu, in(vm1, scsi.SAReadFullStatus))
	fs, err := scsi.DecodeFullStatus(rep.Data)
	if err != nil || len(fs.Descriptors) != 1 {
		t.Fatalf("full status %+v %v", fs, err)
	}
	if d := fs.Descriptors[0]; d.TransportID.Protocol != scsi.ProtoISCSI || d.TransportID.Name != vm2 || !d.Holder {
		t.Fatalf("descriptor %+v", d)
	}
}

func TestLogicalUnitsAreSeparate(t *testing.T) {
	b := New(memory.New(), pr.LIO())
	run(t, b, "lu-a", out(vm1, scsi.SARegister, 0, 0, 1))
	run(t, b, "lu-a", out(vm1, scsi.SAReserve, scsi.TypeExclusiveAccess, 1, 0))
	if rep := run(t, b, "lu-b", out(vm2, scsi.SARegister, 0, 0, 2)); rep.Status != scsi.StatusGood {
		t.Fatalf("another LU is affected: %s", scsi.StatusName(rep.Status))
	}
	rep := run(t, b, "lu-b", in(vm2, scsi.SAReadReservation))
	if res, _ := scsi.DecodeReservation(rep.Data); res.Key != 0 {
		t.Fatalf("lu-b has lu-a's reservation: %+v", res)
	}
}

func TestMissingIdentity(t *testing.T) {
	b := New(memory.New(), pr.LIO())
	for name, req := range map[string]*backend.Request{
		"no LU":        {CDB: scsi.PRInCDB(0, 8192), Initiator: vm1},
		"no initiator": {CDB: scsi.PRInCDB(0, 8192), LU: lu, IdentityErr: errors.New("peer has no -uuid")},
		"bad ISID":     {CDB: scsi.PRInCDB(0, 8192), LU: lu, Initiator: vm1 + ",i,0x12"},
	} {
		rep, err := b.Execute(context.Background(), req)
		if rep.Status != scsi.StatusCheckCondition || err == nil {
			t.Errorf("%s: status %s err %v", name, scsi.StatusName(rep.Status), err)
		}
	}
}

// failingStore fails every update with err.
type failingStore struct {
	store.Store
	err error
}

func (f failingStore) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	return f.err
}

func TestStoreFailures(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want scsi.Sense
	}{
		{store.ErrBusy, scsi.SenseIOError},
		{errors.New("disk I/O error"), scsi.SenseTargetFailure},
	} {
		b := New(failingStore{memory.New(), tc.err}, pr.LIO())
		rep := run(t, b, lu, out(vm1, scsi.SARegister, 0, 0, 1))
		if rep.Status != scsi.StatusCheckCondition || senseOf(rep) != tc.want {
			t.Errorf("%v: %s %v, want %v", tc.err, scsi.StatusName(rep.Status), senseOf(rep), tc.want)
		}
	}
}

// TestCorruptStateUntouched: a state the engine cannot read is answered with an
// error and left as it is for a person to look at.
func TestCorruptStateUntouched(t *testing.T) {
	m := memory.New()
	bad := []byte(`{"v":99}`)
	m.Update(context.Background(), keyPrefix+lu, func([]byte) ([]byte, bool, error) { return bad, true, nil })
	b := New(m, pr.LIO())
	rep := run(t, b, lu, out(vm1, scsi.SARegister, 0, 0, 1))
	if rep.Status != scsi.StatusCheckCondition || senseOf(rep) != scsi.SenseTargetFailure {
		t.Fatalf("%s %v", scsi.StatusName(rep.Status), senseOf(rep))
	}
	if got, _ := m.Get(context.Background(), keyPrefix+lu); !bytes.Equal(got, bad) {
		t.Fatalf("state changed to %q", got)
	}
}

// TestDurableAcrossReopen: what was answered GOOD is in the SQLite file after the
// store is closed and opened again.
func TestDurableAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	st, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := New(st, pr.LIO())
	run(t, b, lu, out(vm1, scsi.SARegister, 0, 0, 0x77))
	run(t, b, lu, out(vm1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0x77, 0))
	st.Close()
	st, err = sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	b = New(st, pr.LIO())
	rep := run(t, b, lu, in(vm2, scsi.SAReadReservation))
	res, err := scsi.DecodeReservation(rep.Data)
	if err != nil || res.Key != 0x77 || res.Type != scsi.TypeWriteExclusiveRegOnly {
		t.Fatalf("after reopen: %+v %v", res, err)
	}
}

func TestParseInitiator(t *testing.T) {
	tests := []struct {
		in   string
		want pr.Initiator
		ok   bool
	}{
		{"naa.5001405b00000001", pr.SASInitiator(0x5001405b00000001), true},
		{"NAA.5001405B00000001", pr.SASInitiator(0x5001405b00000001), true},
		{"iqn.1994-05.com.redhat:abc", pr.ISCSIInitiator("iqn.1994-05.com.redhat:abc", ""), true},
		{"IQN.1994-05.COM.Example:X", pr.ISCSIInitiator("iqn.1994-05.com.example:x", ""), true},
		{"iqn.x:y,i,0x23d000000001", pr.ISCSIInitiator("iqn.x:y", "23d000000001"), true},
		{"naa.123", pr.ISCSIInitiator("naa.123", ""), true},
		{"naa.zzzzzzzzzzzzzzzz", pr.Initiator{}, false},
		{"", pr.Initiator{}, false},
		{"iqn.x:y,i,0x12", pr.Initiator{}, false},
		{"iqn.x:y,i,0xzzzzzzzzzzzz", pr.Initiator{}, false},
	}
	for _, tt := range tests {
		got, err := ParseInitiator(tt.in)
		if (err == nil) != tt.ok || (tt.ok && !got.Equal(tt.want)) {
			t.Errorf("ParseInitiator(%q) = %+v, %v; want %+v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
