//go:build lab

package linuxpr

// This test runs inside the storage lab VM (test/lab, Linux 6.1, LIO over
// tcm_loop), driven by testdata/lab.sh: LINUXPR_LAB_MPATH is a dm-multipath map
// over two I_T nexuses of one LU, LINUXPR_LAB_C a third nexus to the same LU
// outside the map ("another host"). It checks the ioctl path against a real
// SCSI target: the kernel's fan-out of IOC_PR_REGISTER to every path, forced
// APTPL, RESERVATION CONFLICT, PREEMPT, CLEAR, and the SG_IO fallback for READ
// KEYS / READ RESERVATION on a kernel without IOC_PR_READ_*.

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
)

func labOpen(t *testing.T, env string) int {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Skipf("%s not set: run through testdata/lab.sh in the lab VM", env)
	}
	fd, err := unix.Open(p, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

func TestLab(t *testing.T) {
	mp := labOpen(t, "LINUXPR_LAB_MPATH")
	c := labOpen(t, "LINUXPR_LAB_C")
	kinds := map[int]DeviceKind{}
	for _, fd := range []int{mp, c} {
		info, err := device.Classify(fd, device.Sysfs{})
		if err != nil {
			t.Fatalf("classify fd %d: %v", fd, err)
		}
		kinds[fd] = KindOf(info)
		t.Logf("fd %d: %s → %s", fd, info, kinds[fd])
		if kinds[fd] != KindSCSI {
			t.Errorf("fd %d: kind %s, want scsi", fd, kinds[fd])
		}
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, nil))
	b, err := New(Options{Kind: func(fd int) DeviceKind { return kinds[fd] }, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sg, err := sgio.New(sgio.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	do := func(fd int, req *backend.Request) scsi.Result {
		t.Helper()
		req.FD = fd
		rep, err := b.Execute(ctx, req)
		t.Logf("fd %d cdb % x → status %#x sense % x data % x (err %v)", fd, req.CDB[:10], rep.Status, rep.Sense, rep.Data, err)
		return rep
	}
	out := func(fd int, sa, typ byte, key, saKey uint64, flags byte) scsi.Result {
		t.Helper()
		return do(fd, &backend.Request{CDB: scsi.PROutCDB(sa, 0, typ, 24), Param: param(key, saKey, flags)})
	}
	// in retries past unit attentions (06h), which SG_IO passes on: one per
	// path, and the map may send each try down another path.
	in := func(fd int, sa byte) scsi.Result {
		t.Helper()
		rep := do(fd, &backend.Request{CDB: scsi.PRInCDB(sa, 8192)})
		for i := 0; i < 4 && rep.Status == scsi.StatusCheckCondition && rep.Sense[2]&0x0f == scsi.KeyUnitAttention; i++ {
			rep = do(fd, &backend.Request{CDB: scsi.PRInCDB(sa, 8192)})
		}
		return rep
	}
	keys := func(fd int) scsi.Keys {
		t.Helper()
		rep := in(fd, scsi.SAReadKeys)
		k, err := scsi.DecodeKeys(rep.Data)
		if rep.Status != 0 || err != nil {
			t.Fatalf("READ KEYS: %#x %v", rep.Status, err)
		}
		return k
	}
	resv := func(fd int) scsi.Reservation {
		t.Helper()
		rep := in(fd, scsi.SAReadReservation)
		r, err := scsi.DecodeReservation(rep.Data)
		if rep.Status != 0 || err != nil {
			t.Fatalf("READ RESERVATION: %#x %v", rep.Status, err)
		}
		return r
	}
	sameKeys := func(got []uint64, want ...uint64) bool {
		if len(got) != len(want) {
			return false
		}
		for i := range got {
			if got[i] != want[i] {
				return false
			}
		}
		return true
	}

	var u unix.Utsname
	_ = unix.Uname(&u)
	t.Logf("kernel %s", bytes.TrimRight(u.Release[:], "\x00"))

	// 1. REGISTER through the map: the kernel registers every path.
	if rep := out(mp, scsi.SARegister, 0, 0, 0xabc, 0); rep.Status != 0 {
		t.Fatalf("REGISTER on the map: %#x", rep.Status)
	}
	if k := keys(c); !sameKeys(k.Keys, 0xabc, 0xabc) {
		t.Errorf("after REGISTER on the map, keys = %x, want abc twice (one per path)", k.Keys)
	}
	if b.haveRead {
		t.Log("kernel has IOC_PR_READ_*")
	} else {
		t.Log("kernel lacks IOC_PR_READ_*: READ KEYS/RESERVATION went through SG_IO")
	}
	// sd sets APTPL on REGISTER whatever the guest asked: LIO reports PTPL_A.
	o := sg.Do(c, scsi.PRInCDB(scsi.SAReportCapabilities, 8), nil)
	if o.Reply.Status == scsi.StatusCheckCondition && o.Reply.Sense[2]&0x0f == scsi.KeyUnitAttention {
		o = sg.Do(c, scsi.PRInCDB(scsi.SAReportCapabilities, 8), nil)
	}
	rep, err := o.Reply, o.Err
	if caps, derr := scsi.DecodeCapabilities(rep.Data); err != nil || derr != nil || !caps.PTPLA {
		t.Errorf("device capabilities after an IOC_PR_REGISTER with APTPL 0: %+v %v %v, want PTPL_A", caps, err, derr)
	}

	// 2. RESERVE WE-RO through the map, seen from the map and from C.
	if rep := out(mp, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0xabc, 0, 0); rep.Status != 0 {
		t.Fatalf("RESERVE on the map: %#x", rep.Status)
	}
	for _, fd := range []int{mp, c} {
		if r := resv(fd); !r.Held || r.Key != 0xabc || r.Type != scsi.TypeWriteExclusiveRegOnly || r.Scope != 0 {
			t.Errorf("fd %d: READ RESERVATION = %+v, want abc type 5", fd, r)
		}
	}

	// 3. C registers; its RESERVE conflicts.
	if rep := out(c, scsi.SARegister, 0, 0, 0xdef, 0); rep.Status != 0 {
		t.Fatalf("REGISTER on C: %#x", rep.Status)
	}
	if rep := out(c, scsi.SAReserve, scsi.TypeExclusiveAccess, 0xdef, 0, 0); rep.Status != scsi.StatusReservationConflict {
		t.Errorf("RESERVE EA from C: %#x, want RESERVATION CONFLICT", rep.Status)
	}
	if k := keys(c); !sameKeys(k.Keys, 0xabc, 0xabc, 0xdef) {
		t.Errorf("keys = %x, want abc abc def", k.Keys)
	}

	// 4. C preempts the map's key and takes EA.
	if rep := out(c, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0xdef, 0xabc, 0); rep.Status != 0 {
		t.Fatalf("PREEMPT from C: %#x", rep.Status)
	}
	if r := resv(c); !r.Held || r.Key != 0xdef || r.Type != scsi.TypeExclusiveAccess {
		t.Errorf("after PREEMPT: %+v, want def type 3", r)
	}

	// 5. The map's paths are unregistered: REGISTER with the old key is not
	// GOOD (the first answer may be the unit attention, which the kernel
	// reports as PR_STS_IOERR → 0B/00/06); REGISTER AND IGNORE works.
	rep = out(mp, scsi.SARegister, 0, 0xabc, 0x123, 0)
	if rep.Status == 0 {
		t.Errorf("REGISTER with a preempted key: GOOD, want a refusal")
	}
	var ok bool
	for range 4 {
		if rep = out(mp, scsi.SARegisterAndIgnoreExisting, 0, 0, 0x123, 0); rep.Status == 0 {
			ok = true
			break
		}
		if rep.Status != scsi.StatusCheckCondition || senseField(rep) != fixed(0x0b, 0, 6) {
			t.Errorf("REGISTER AND IGNORE: %#x % x, want GOOD or 0B/00/06 for a unit attention", rep.Status, rep.Sense)
		}
	}
	if !ok {
		t.Fatal("REGISTER AND IGNORE on the map never succeeded")
	}
	if k := keys(c); len(k.Keys) != 3 || k.Keys[0] != 0xdef {
		t.Errorf("keys = %x, want def and 123 per path", k.Keys)
	}

	// 6. What the ioctls cannot do is refused without touching the LU.
	if rep := out(c, scsi.SARegister, 0, 0xdef, 0x777, scsi.ParamSpecIPT); rep.Status != 2 || senseField(rep) != fixed(5, 0x26, 0) {
		t.Errorf("SPEC_I_PT: %#x % x", rep.Status, rep.Sense)
	}
	if rep := in(c, scsi.SAReadFullStatus); rep.Status != 2 || senseField(rep) != fixed(5, 0x24, 0) {
		t.Errorf("READ FULL STATUS: %#x % x", rep.Status, rep.Sense)
	}

	// 7. CLEAR from C: nothing left.
	if rep := out(c, scsi.SAClear, 0, 0xdef, 0, 0); rep.Status != 0 {
		t.Fatalf("CLEAR: %#x", rep.Status)
	}
	if k := keys(c); len(k.Keys) != 0 || k.AdditionalLength != 0 {
		t.Errorf("after CLEAR: %+v", k)
	}
	if r := resv(mp); r.Held {
		t.Errorf("after CLEAR: %+v", r)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}
