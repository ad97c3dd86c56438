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

// bareMetal runs PR OUT commands from fd's nexus on the LUN (a bare-metal
// node or an administrator), each of which must be GOOD.
func bareMetal(t *testing.T, l *realLU, fd int, cmds ...prOut) {
	t.Helper()
	for _, c := range cmds {
		p, _ := scsi.PROutParams{Key: c.key, SAKey: c.sark}.Encode()
		cdb := scsi.PROutCDB(c.sa, 0, c.typ, 24)
		l.mu.Lock()
		r := pr.Execute(pr.LIO(), &l.st, l.nexus[fd], cdb[:], p)
		l.mu.Unlock()
		if r.Status != scsi.StatusGood {
			t.Fatalf("bare metal %s: %s", scsi.CommandName(cdb[:]), r)
		}
	}
}

type prOut struct {
	sa, typ   byte
	key, sark uint64
}

// TestFoldFences: a bare-metal node changes host A's key on the LUN; A's poll
// evicts A's two VMs in the emulated state, and A's fencing fences them
// before the poll ends when the LUN then refuses host A writes
// (docs/virtual-initiators.md §7, docs/fencing.md):
//   - B's VM holds Write Exclusive, A's key is preempted: both fenced (B's
//     reservation refuses them in the emulated state and on the LUN);
//   - a1 holds Write Exclusive, A's key is preempted by a PREEMPT that takes
//     the reservation: both fenced, although the emulated state the fold
//     leaves has no reservation (the fold released a1's) and so refuses
//     nobody: judged against that state, nobody was fenced;
//   - a1 holds Write Exclusive, an administrator CLEARs the LUN: both evicted,
//     neither fenced (no reservation is left anywhere: real storage would let
//     them write, as after a guest's CLEAR in the emulated state).
func TestFoldFences(t *testing.T) {
	for _, c := range []struct {
		name   string
		holder string // the VM that reserves Write Exclusive
		lun    func(ha *Backend) []prOut
		fenced []string
	}{
		{"another host's VM holds", b1, func(ha *Backend) []prOut {
			return []prOut{{scsi.SARegister, 0, 0, 0xbeef}, {scsi.SAPreempt, scsi.TypeWriteExclusive, 0xbeef, ha.Key()}}
		}, []string{a1, a2}},
		{"the preempted host's VM holds", a1, func(ha *Backend) []prOut {
			return []prOut{{scsi.SARegister, 0, 0, 0xbeef}, {scsi.SAPreempt, scsi.TypeWriteExclusive, 0xbeef, ha.Key()}}
		}, []string{a1, a2}},
		{"an administrator's CLEAR", a1, func(ha *Backend) []prOut {
			return []prOut{{scsi.SARegister, 0, 0, 0xbeef}, {scsi.SAClear, 0, 0xbeef, 0}}
		}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
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
			keyOf := map[string]uint64{a1: 0x11, b1: 0x21}
			hostOf := map[string]*Backend{a1: ha, b1: hb}
			fdOf := map[string]int{a1: fdA, b1: fdB}
			good(t)(out(t, hostOf[c.holder], fdOf[c.holder], c.holder, scsi.SAReserve, scsi.TypeWriteExclusive, keyOf[c.holder], 0))
			if len(fenced) != 0 {
				t.Fatalf("fenced before the preemption: %v", fenced)
			}
			bareMetal(t, l, fdC, c.lun(ha)...)
			if err := ha.PollKept(context.Background(), lu); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := slices.Clone(fenced)
			mu.Unlock()
			slices.Sort(got)
			if !slices.Equal(got, c.fenced) {
				t.Fatalf("fenced %v, want %v", got, c.fenced)
			}
			if k := emuKeys(t, hb, fdB, b1); slices.Contains(k, 0x11) || slices.Contains(k, 0x12) {
				t.Fatalf("host A's VMs are still registered: %#x", k)
			}
		})
	}
}
