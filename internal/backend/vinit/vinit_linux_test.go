package vinit

import (
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/backend/sgio"
	kernel "github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	core "github.com/prhelper/prhelper/internal/vinit"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// realLU is a fake kernel below SG_IO: one logical unit answered by the pr
// engine with LIO's profile, each descriptor its own I_T nexus (a host's
// initiator port). It reads and writes the sg_io_hdr as the kernel does.
type realLU struct {
	mu     sync.Mutex
	st     pr.State
	nexus  map[int]pr.Nexus // by fd
	errno  unix.Errno       // when set, every PR OUT fails with it (the device went away)
	prOuts int
}

// dup and closeFD are the kernel's F_DUPFD and close for the fake devices.
// A kept descriptor is a real one (of /dev/null, numbered from 1000, clear of
// the fake numbers), since the fencing flushes it with fdatasync (EINVAL on
// /dev/null, which it ignores).
func (l *realLU) dup(fd int) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.nexus[fd]
	if !ok {
		return -1, unix.EBADF
	}
	null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(null)
	kept, err := unix.FcntlInt(uintptr(null), unix.F_DUPFD_CLOEXEC, 1000)
	if err != nil {
		return -1, err
	}
	l.nexus[kept] = n
	return kept, nil
}

func (l *realLU) closeFD(fd int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.nexus[fd]; !ok || fd < 1000 {
		return unix.EBADF
	}
	delete(l.nexus, fd)
	return unix.Close(fd)
}

// open counts the descriptors dup made that are still open.
func (l *realLU) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for fd := range l.nexus {
		if fd >= 1000 {
			n++
		}
	}
	return n
}

func newRealLU(fds ...int) *realLU {
	l := &realLU{nexus: map[int]pr.Nexus{}}
	for i, fd := range fds {
		l.nexus[fd] = pr.Nexus{Initiator: pr.SASInitiator(0x5001405000000b00 + uint64(i)), RTPI: 1}
	}
	return l
}

func (l *realLU) ioctl(fd int, h *kernel.Hdr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.nexus[fd]
	if !ok {
		return unix.EBADF
	}
	cdb := slices.Clone(unsafe.Slice((*byte)(h.Cmdp), h.CmdLen))
	if l.errno != 0 && cdb[0] == scsi.OpPersistentReserveOut {
		return l.errno
	}
	var data []byte
	if h.Dxferp != nil {
		data = unsafe.Slice((*byte)(h.Dxferp), h.DxferLen)
	}
	var param []byte
	if h.DxferDirection == kernel.DirToDevice {
		param = slices.Clone(data)
		l.prOuts++
	}
	res := pr.Execute(pr.LIO(), &l.st, n, cdb, param)
	if cdb[0] == scsi.OpPersistentReserveIn && int(binary.BigEndian.Uint16(cdb[7:9])) > len(data) {
		// LIO refuses a CDB asking for more than the transfer set up
		// ("DATA overflow"): ILLEGAL REQUEST, INVALID FIELD IN CDB.
		res = scsi.CheckCondition(scsi.SenseInvalidField)
	}
	h.Status = res.Status
	if res.Status == scsi.StatusCheckCondition {
		h.SbLenWr = uint8(copy(unsafe.Slice((*byte)(h.Sbp), h.MxSbLen), res.Sense))
	}
	h.Resid = int32(h.DxferLen)
	if h.DxferDirection == kernel.DirFromDevice && res.Status == scsi.StatusGood {
		h.Resid -= int32(copy(data, res.Data))
	} else if h.DxferDirection == kernel.DirToDevice {
		h.Resid = 0
	}
	return nil
}

// view is READ FULL STATUS from fd (a third host's nexus, for the tests).
func (l *realLU) view(t *testing.T, fd int) core.LUN {
	t.Helper()
	cdb := scsi.PRInCDB(scsi.SAReadFullStatus, core.FullStatusAlloc)
	l.mu.Lock()
	res := pr.Execute(pr.LIO(), &l.st, l.nexus[fd], cdb[:], nil)
	l.mu.Unlock()
	v, err := core.ReadLUN(res.Data)
	if err != nil {
		t.Fatalf("READ FULL STATUS: %s %v", res, err)
	}
	return v
}

// may runs the reservation check of cdb from fd's nexus on the LUN.
func (l *realLU) may(fd int, cdb []byte) scsi.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, _ := l.st.MarshalBinary()
	var c pr.State
	_ = c.UnmarshalBinary(b)
	c.UnitAttentions = nil
	return pr.CheckAccess(pr.LIO(), &c, l.nexus[fd], cdb)
}

const (
	fdA, fdB, fdC = 7, 8, 9
	lu            = "naa.6001405abc0000000000000000000f"
	a1            = "iqn.2026-01.test:a1"
	a2            = "iqn.2026-01.test:a2"
	b1            = "iqn.2026-01.test:b1"
)

// newHost builds host id's helper as the builder does: the emulation over the
// shared store and the sgio backend over the fake kernel.
func newHost(t *testing.T, id string, st store.Store, l *realLU) *Backend {
	sg, err := sgio.New(sgio.Options{Ioctl: l.ioctl})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{
		Emulate:        emulate.New(st, pr.LIO()),
		Lower:          func(int) (backend.Backend, error) { return sg, nil },
		Store:          st,
		StateKeyPrefix: emulate.KeyPrefix,
		ParseInitiator: emulate.ParseInitiator,
		Host:           id,
		Dup:            l.dup,
		Close:          l.closeFD,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func out(t *testing.T, b *Backend, fd int, vm string, sa, typ byte, key, sark uint64) (scsi.Result, error) {
	t.Helper()
	p, _ := scsi.PROutParams{Key: key, SAKey: sark}.Encode()
	req := &backend.Request{CDB: scsi.PROutCDB(sa, 0, typ, uint32(len(p))), Param: p, FD: fd, Initiator: vm, LU: lu}
	for range 3 {
		res, err := b.Execute(context.Background(), req)
		if s, ok := res.ParseSense(); res.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention {
			continue
		}
		return res, err
	}
	t.Fatal("unit attentions without end")
	return scsi.Result{}, nil
}

// emuPRIn is a PR IN (service action sa) as a guest sees it, sent again past
// unit attentions (at most three times); a last answer other than GOOD fails t.
func emuPRIn(t *testing.T, b *Backend, fd int, vm string, sa byte, alloc uint16) []byte {
	t.Helper()
	cdb := scsi.PRInCDB(sa, alloc)
	var res scsi.Result
	var err error
	for range 3 {
		res, err = b.Execute(context.Background(), &backend.Request{CDB: cdb, FD: fd, Initiator: vm, LU: lu})
		if res.Status == scsi.StatusGood {
			return res.Data
		}
	}
	t.Fatalf("%s: %s %v", scsi.CommandName(cdb[:]), res, err)
	return nil
}

// emuKeys is READ KEYS as a guest sees it.
func emuKeys(t *testing.T, b *Backend, fd int, vm string) []uint64 {
	t.Helper()
	k, err := scsi.DecodeKeys(emuPRIn(t, b, fd, vm, scsi.SAReadKeys, 1024))
	if err != nil {
		t.Fatal(err)
	}
	return k.Keys
}

var write10 = []byte{0x2a, 0, 0, 0, 0, 0, 0, 0, 1, 0}

// TestTwoHosts is the scenario (docs/virtual-initiators.md §5, §6)
// with two helpers sharing a store and one LUN: host A's two VMs reserve
// against and preempt each other while the LUN shows only A's key; host B's
// VM evicts both of A's VMs and the LUN then refuses A's writes itself.
func TestTwoHosts(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdB, fdC)
	ha, hb := newHost(t, "host-a", st, l), newHost(t, "host-b", st, l)
	ka, kb := ha.Key(), hb.Key()
	if ka != core.HostKey("host-a") || ka == kb {
		t.Fatalf("keys %#x %#x", ka, kb)
	}

	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, ha, fdA, a2, scsi.SARegister, 0, 0, 0x12))
	good(t)(out(t, ha, fdA, a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{ka}) || v.Reservation == nil ||
		v.Reservation.Type != scsi.TypeWriteExclusive || v.Reservation.Key != ka {
		t.Fatalf("LUN after A's VMs registered and a1 reserved: %+v", v)
	}
	// a2 preempts a1 and takes Exclusive Access: A's reservation changes
	// type; the LUN still shows A alone.
	good(t)(out(t, ha, fdA, a2, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0x12, 0x11))
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{ka}) || v.Reservation == nil || v.Reservation.Type != scsi.TypeExclusiveAccess {
		t.Fatalf("LUN after a2 preempted a1: %+v", v)
	}
	if k := emuKeys(t, ha, fdA, a2); !slices.Equal(k, []uint64{0x12}) {
		t.Fatalf("the guests' keys: %#x", k)
	}
	// a1 registers again; b1 registers, and evicts a1 and a2 (a2 holds).
	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, hb, fdB, b1, scsi.SARegister, 0, 0, 0x21))
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{ka, kb}) {
		t.Fatalf("LUN with both hosts' VMs registered: %+v", v)
	}
	good(t)(out(t, hb, fdB, b1, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0x21, 0x12))
	// A still has a1: B took the reservation with a PREEMPT of A's key, and A
	// registers again at its next plan.
	if v := l.view(t, fdC); v.Reservation == nil || v.Reservation.Key != kb {
		t.Fatalf("LUN after b1 took the reservation: %+v", v)
	}
	if err := ha.Reconcile(context.Background(), lu, fdA); err != nil {
		t.Fatal(err)
	}
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{kb, ka}) {
		t.Fatalf("LUN after A's plan: %+v", v)
	}
	good(t)(out(t, hb, fdB, b1, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0x21, 0x11))
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{kb}) || v.Reservation == nil || v.Reservation.Key != kb {
		t.Fatalf("LUN after b1 evicted every VM of A: %+v", v)
	}
	if res := l.may(fdA, write10); res.Status != scsi.StatusReservationConflict {
		t.Fatalf("A's WRITE on the LUN: %s", res)
	}
	if res := l.may(fdB, write10); res.Status != scsi.StatusGood {
		t.Fatalf("B's WRITE on the LUN: %s", res)
	}
	// A's helper has nothing left to do.
	n := l.prOuts
	if err := ha.Reconcile(context.Background(), lu, fdA); err != nil || l.prOuts != n {
		t.Fatalf("A's plan after its eviction: %v, %d PR OUT", err, l.prOuts-n)
	}
}

func good(t *testing.T) func(scsi.Result, error) {
	return func(res scsi.Result, err error) {
		t.Helper()
		if res.Status != scsi.StatusGood || err != nil {
			t.Fatalf("want GOOD: %s %v", res, err)
		}
	}
}

// TestLUNBehind is a helper whose LUN command fails after the store commit
// (docs/virtual-initiators.md §6): the guest gets HARDWARE ERROR, its
// registration is committed, and the next plan (a new helper, as after a
// restart) brings the LUN in line.
func TestLUNBehind(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdC)
	ha := newHost(t, "host-a", st, l)
	l.errno = unix.ENODEV
	res, err := out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11)
	if s, ok := res.ParseSense(); !ok || s != scsi.SenseTargetFailure || err == nil {
		t.Fatalf("REGISTER with the LUN gone: %s %v", res, err)
	}
	if k := emuKeys(t, ha, fdA, a1); !slices.Equal(k, []uint64{0x11}) {
		t.Fatalf("the registration was not committed: %#x", k)
	}
	if v := l.view(t, fdC); len(v.Keys) != 0 {
		t.Fatalf("LUN: %+v", v)
	}
	l.errno = 0
	restarted := newHost(t, "host-a", st, l)
	if err := restarted.Poll(context.Background(), lu, fdA); err != nil {
		t.Fatal(err)
	}
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{ha.Key()}) {
		t.Fatalf("LUN after the restarted helper's plan: %+v", v)
	}
	// A command the emulation refuses sends nothing to the LUN.
	n := l.prOuts
	res, _ = out(t, ha, fdA, a2, scsi.SAReserve, scsi.TypeWriteExclusive, 0x99, 0)
	if res.Status == scsi.StatusGood || l.prOuts != n {
		t.Fatalf("RESERVE from an unregistered VM: %s, %d PR OUT", res, l.prOuts-n)
	}
}

// emuRes is READ RESERVATION as a guest sees it.
func emuRes(t *testing.T, b *Backend, fd int, vm string) scsi.Reservation {
	t.Helper()
	r, err := scsi.DecodeReservation(emuPRIn(t, b, fd, vm, scsi.SAReadReservation, 64))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestForeignHolder: a reservation a foreign key takes on the LUN while host
// A stays registered (docs/virtual-initiators.md §7) is shown to the guests,
// under the initiator core.Foreign with the foreign key, and never touched:
// a guest's RESERVE conflicts in the emulated state, its PREEMPT of the
// foreign key is answered RESERVATION CONFLICT before anything commits; when
// the foreign key releases, the next poll removes it and a guest may reserve.
// A VM's reservation the array no longer gives (the LUN was behind and a
// foreign key reserved) is released in the emulated state, and the command
// whose poll found it answers HARDWARE ERROR (ErrForeignHolder).
func TestForeignHolder(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdC)
	ha := newHost(t, "host-a", st, l)
	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	bareMetal(t, l, fdC, prOut{scsi.SARegister, 0, 0, 0xf00d}, prOut{scsi.SAReserve, scsi.TypeExclusiveAccess, 0xf00d, 0})
	if err := ha.PollKept(context.Background(), lu); err != nil {
		t.Fatal(err)
	}
	if r := emuRes(t, ha, fdA, a1); !r.Held || r.Key != 0xf00d || r.Type != scsi.TypeExclusiveAccess {
		t.Fatalf("the guests' reservation: %+v", r)
	}
	if k := emuKeys(t, ha, fdA, a1); !slices.Equal(k, []uint64{0x11, 0xf00d}) {
		t.Fatalf("the guests' keys: %#x", k)
	}
	// The emulated state now refuses a1 what the array refuses host A.
	if r, _ := out(t, ha, fdA, a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0); r.Status != scsi.StatusReservationConflict {
		t.Fatalf("RESERVE under the foreign reservation: %s", r)
	}
	if r, _ := out(t, ha, fdA, a1, scsi.SAPreempt, scsi.TypeWriteExclusive, 0x11, 0xf00d); r.Status != scsi.StatusReservationConflict {
		t.Fatalf("PREEMPT of the foreign key: %s", r)
	}
	if k := emuKeys(t, ha, fdA, a1); !slices.Equal(k, []uint64{0x11, 0xf00d}) {
		t.Fatalf("the guests' keys after the refused PREEMPT: %#x", k)
	}
	if v := l.view(t, fdC); v.Reservation == nil || v.Reservation.Key != 0xf00d || !slices.Equal(v.Keys, []uint64{ha.Key(), 0xf00d}) {
		t.Fatalf("the foreign reservation was touched: %+v", v)
	}
	// The foreign key releases: the next poll shows it gone.
	bareMetal(t, l, fdC, prOut{scsi.SARelease, scsi.TypeExclusiveAccess, 0xf00d, 0})
	if err := ha.PollKept(context.Background(), lu); err != nil {
		t.Fatal(err)
	}
	if r := emuRes(t, ha, fdA, a1); r.Held {
		t.Fatalf("the guests' reservation after the foreign RELEASE: %+v", r)
	}
	if k := emuKeys(t, ha, fdA, a1); !slices.Equal(k, []uint64{0x11}) {
		t.Fatalf("the guests' keys after the foreign RELEASE: %#x", k)
	}
	good(t)(out(t, ha, fdA, a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	if v := l.view(t, fdC); v.Reservation == nil || v.Reservation.Key != ha.Key() {
		t.Fatalf("host A does not hold a1's reservation: %+v", v)
	}
	// The LUN falls behind (host A's reservation released by hand) and the
	// foreign key reserves: a2's registration's poll finds a1's emulated
	// reservation one the array does not give, releases it, and says so.
	l.mu.Lock()
	l.st.Reservation = nil
	l.mu.Unlock()
	bareMetal(t, l, fdC, prOut{scsi.SAReserve, scsi.TypeWriteExclusive, 0xf00d, 0})
	res, err := out(t, ha, fdA, a2, scsi.SARegister, 0, 0, 0x12)
	if s, ok := res.ParseSense(); !ok || s != scsi.SenseTargetFailure || !errors.Is(err, core.ErrForeignHolder) {
		t.Fatalf("a2's REGISTER whose poll released a1's reservation: %s %v", res, err)
	}
	if r := emuRes(t, ha, fdA, a2); !r.Held || r.Key != 0xf00d || r.Type != scsi.TypeWriteExclusive {
		t.Fatalf("the guests' reservation: %+v", r)
	}
	if k := emuKeys(t, ha, fdA, a2); !slices.Equal(k, []uint64{0x11, 0x12, 0xf00d}) {
		t.Fatalf("the guests' keys: %#x", k)
	}
	if v := l.view(t, fdC); v.Reservation == nil || v.Reservation.Key != 0xf00d || v.Reservation.Type != scsi.TypeWriteExclusive {
		t.Fatalf("the foreign reservation was touched: %+v", v)
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Error("empty options accepted")
	}
	st := memory.New()
	l := newRealLU(fdA)
	b := newHost(t, "h", st, l)
	if b.Name() != "vinit" {
		t.Errorf("Name %q", b.Name())
	}
	if res, err := b.Execute(context.Background(), nil); res.Status != scsi.StatusCheckCondition || err == nil {
		t.Errorf("nil request: %s %v", res, err)
	}
}

// TestNoRealLUN: a descriptor the backend below cannot serve (a disk image)
// is refused before the emulation commits anything.
func TestNoRealLUN(t *testing.T) {
	st := memory.New()
	b, err := New(Options{
		Emulate:        emulate.New(st, pr.LIO()),
		Lower:          func(int) (backend.Backend, error) { return nil, errors.New("not a SCSI disk") },
		Store:          st,
		StateKeyPrefix: emulate.KeyPrefix,
		ParseInitiator: emulate.ParseInitiator,
		Host:           "host-a",
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := out(t, b, fdA, a1, scsi.SARegister, 0, 0, 0x11)
	if s, ok := res.ParseSense(); !ok || s != scsi.SenseInvalidOpcode || err == nil {
		t.Fatalf("REGISTER on a disk image: %s %v", res, err)
	}
	if keys, _ := st.Keys(context.Background()); len(keys) != 0 {
		t.Fatalf("the store was written: %v", keys)
	}
}

// TestExternalPreempt: a bare-metal node preempts host A's key through a
// third nexus; A's next poll (through the descriptor it kept) evicts A's VMs
// in the emulated state, B's VM sees them gone, and A keeps no descriptor
// once it has nothing on the LUN (docs/virtual-initiators.md §7).
func TestExternalPreempt(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdB, fdC)
	ha, hb := newHost(t, "host-a", st, l), newHost(t, "host-b", st, l)
	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, ha, fdA, a2, scsi.SARegister, 0, 0, 0x12))
	good(t)(out(t, hb, fdB, b1, scsi.SARegister, 0, 0, 0x21))
	good(t)(out(t, ha, fdA, a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	if n := l.open(); n != 2 {
		t.Fatalf("%d descriptors kept, want one per host", n)
	}
	// The bare-metal node: REGISTER, then PREEMPT of A's key, taking A's
	// reservation.
	for _, c := range []struct {
		sa        byte
		key, sark uint64
	}{{scsi.SARegister, 0, 0xbeef}, {scsi.SAPreempt, 0xbeef, ha.Key()}} {
		p, _ := scsi.PROutParams{Key: c.key, SAKey: c.sark}.Encode()
		cdb := scsi.PROutCDB(c.sa, 0, scsi.TypeWriteExclusive, 24)
		l.mu.Lock()
		r := pr.Execute(pr.LIO(), &l.st, l.nexus[fdC], cdb[:], p)
		l.mu.Unlock()
		if r.Status != scsi.StatusGood {
			t.Fatalf("bare metal %s: %s", scsi.CommandName(cdb[:]), r)
		}
	}
	// Two ticks: Run takes the second only after the first one's polls.
	ctx, cancel := context.WithCancel(context.Background())
	ticks := make(chan time.Time)
	done := make(chan struct{})
	go func() { ha.Run(ctx, ticks); close(done) }()
	ticks <- time.Time{}
	ticks <- time.Time{}
	cancel()
	<-done
	// A's VMs are gone; the bare-metal key that holds the reservation now is
	// shown (core.Foreign, docs/virtual-initiators.md §7).
	if k := emuKeys(t, hb, fdB, b1); !slices.Equal(k, []uint64{0x21, 0xbeef}) {
		t.Fatalf("the guests' keys after the bare-metal PREEMPT of A: %#x", k)
	}
	if r := emuRes(t, hb, fdB, b1); !r.Held || r.Key != 0xbeef || r.Type != scsi.TypeWriteExclusive {
		t.Fatalf("the guests' reservation after the bare-metal PREEMPT of A: %+v", r)
	}
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{hb.Key(), 0xbeef}) || v.Reservation == nil || v.Reservation.Key != 0xbeef {
		t.Fatalf("LUN: %+v", v)
	}
	if n := l.open(); n != 1 {
		t.Fatalf("%d descriptors kept, want B's alone", n)
	}
	// a1 is told it was preempted.
	res, _ := ha.Execute(context.Background(), &backend.Request{CDB: scsi.PRInCDB(scsi.SAReadKeys, 64), FD: fdA, Initiator: a1, LU: lu})
	if s, ok := res.ParseSense(); !ok || s.Key != scsi.KeyUnitAttention || s.ASC != 0x2a || s.ASCQ != 0x05 {
		t.Fatalf("a1's next command: %s", res)
	}
	if err := hb.Close(); err != nil || l.open() != 0 {
		t.Fatalf("Close: %v, %d descriptors open", err, l.open())
	}
}

// TestPreemptedWhileDown: a bare-metal node preempts host A's key while A's
// helper is down; the restarted helper's first command folds the loss in
// (A's VMs evicted) instead of registering A again, since what A had on the
// LUN is in the store (docs/virtual-initiators.md §7).
func TestPreemptedWhileDown(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdB, fdC)
	ha, hb := newHost(t, "host-a", st, l), newHost(t, "host-b", st, l)
	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, hb, fdB, b1, scsi.SARegister, 0, 0, 0x21))
	good(t)(out(t, hb, fdB, b1, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, 0x21, 0))
	if err := ha.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sa        byte
		key, sark uint64
	}{{scsi.SARegister, 0, 0xbeef}, {scsi.SAPreempt, 0xbeef, ha.Key()}} {
		p, _ := scsi.PROutParams{Key: c.key, SAKey: c.sark}.Encode()
		cdb := scsi.PROutCDB(c.sa, 0, scsi.TypeWriteExclusiveRegOnly, 24)
		l.mu.Lock()
		r := pr.Execute(pr.LIO(), &l.st, l.nexus[fdC], cdb[:], p)
		l.mu.Unlock()
		if r.Status != scsi.StatusGood {
			t.Fatalf("bare metal %s: %s", scsi.CommandName(cdb[:]), r)
		}
	}
	restarted := newHost(t, "host-a", st, l)
	// a2's first command after the restart: REGISTER.
	good(t)(out(t, restarted, fdA, a2, scsi.SARegister, 0, 0, 0x12))
	if k := emuKeys(t, hb, fdB, b1); !slices.Equal(k, []uint64{0x21, 0x12}) {
		t.Fatalf("the guests' keys: %#x (a1 should be gone, a2 registered since)", k)
	}
	if v := l.view(t, fdC); !slices.Equal(v.Keys, []uint64{hb.Key(), 0xbeef, ha.Key()}) {
		t.Fatalf("LUN: %+v (A registered again for a2 alone)", v)
	}
}
