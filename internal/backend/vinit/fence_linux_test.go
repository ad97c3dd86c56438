package vinit

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/backend/sgio"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// recorder is a fencing policy that records its victims and fences nothing.
type recorder struct {
	mu  *sync.Mutex
	log *[]string
}

func (r recorder) String() string { return "record" }

func (r recorder) Fence(_ context.Context, t fence.Target) error {
	r.mu.Lock()
	*r.log = append(*r.log, t.Victim)
	r.mu.Unlock()
	return nil
}

// newFencedHost is newHost with the fencing coordinator of docs/fencing.md
// (a recording policy) under both the emulation and the fold; vms are the
// initiators this helper serves (this test process stands for their QEMU).
func newFencedHost(t *testing.T, id string, st store.Store, l *realLU, rec recorder, vms ...string) *Backend {
	c := fence.New(fence.Options{Store: st, KeyPrefix: emulate.KeyPrefix, Profile: pr.LIO(), Policy: rec,
		Registry: fence.NewRegistry(), Timeout: 5 * time.Second, Poll: 2 * time.Millisecond,
		HelperID: id, Alive: func(string) bool { return true }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, vm := range vms {
		rel, err := c.TrackPID(vm, os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rel)
	}
	sg, err := sgio.New(sgio.Options{Ioctl: l.ioctl})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{
		Emulate:        emulate.New(st, pr.LIO()).WithFencing(c),
		Lower:          func(int) (backend.Backend, error) { return sg, nil },
		Store:          st,
		StateKeyPrefix: emulate.KeyPrefix,
		ParseInitiator: emulate.ParseInitiator,
		Host:           id,
		Fencing:        c,
		Dup:            l.dup,
		Close:          l.closeFD,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFoldFences: B's VM holds Write Exclusive; a bare-metal node preempts
// host A's key; A's poll evicts A's two VMs in the emulated state, and since
// the reservation refuses them writes there, A's fencing fences both before
// the poll ends (docs/virtual-initiators.md §7, docs/fencing.md).
func TestFoldFences(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdA, fdB, fdC)
	var mu sync.Mutex
	var fenced []string
	rec := recorder{mu: &mu, log: &fenced}
	ha := newFencedHost(t, "host-a", st, l, rec, a1, a2)
	hb := newFencedHost(t, "host-b", st, l, rec, b1)
	good(t)(out(t, ha, fdA, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, ha, fdA, a2, scsi.SARegister, 0, 0, 0x12))
	good(t)(out(t, hb, fdB, b1, scsi.SARegister, 0, 0, 0x21))
	good(t)(out(t, hb, fdB, b1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x21, 0))
	if len(fenced) != 0 {
		t.Fatalf("fenced before the preemption: %v", fenced)
	}
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
	if err := ha.PollKept(context.Background(), lu); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := slices.Clone(fenced)
	mu.Unlock()
	slices.Sort(got)
	if !slices.Equal(got, []string{a1, a2}) {
		t.Fatalf("fenced %v, want a1 and a2", got)
	}
	if k := emuKeys(t, hb, fdB, b1); !slices.Equal(k, []uint64{0x21}) {
		t.Fatalf("the guests' keys: %#x", k)
	}
}
