package fence_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// watched is a memory store that can watch (store.Watcher), as the etcd
// store does, and counts the coordinator's full reads (List).
type watched struct {
	*memory.Store
	lists atomic.Int64
	mu    sync.Mutex
	subs  map[chan struct{}]string // channel -> prefix
}

func newWatched() *watched { return &watched{Store: memory.New(), subs: map[chan struct{}]string{}} }

func (w *watched) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	err := w.Store.Update(ctx, key, fn)
	w.mu.Lock()
	for ch, p := range w.subs {
		if strings.HasPrefix(key, p) {
			store.Signal(ch)
		}
	}
	w.mu.Unlock()
	return err
}

func (w *watched) List(ctx context.Context, prefix string) ([]store.Entry, error) {
	w.lists.Add(1)
	return w.Store.List(ctx, prefix)
}

func (w *watched) Watch(ctx context.Context, prefix string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	store.Signal(ch) // started: as the etcd store, a first signal
	w.mu.Lock()
	w.subs[ch] = prefix
	w.mu.Unlock()
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		delete(w.subs, ch)
		close(ch)
		w.mu.Unlock()
	}()
	return ch
}

func watchedHelper(t *testing.T, st store.Store, id string) *helper {
	reg := fence.NewRegistry()
	c := fence.New(fence.Options{Store: st, KeyPrefix: emulate.KeyPrefix, Profile: pr.LIO(), Policy: fence.Kill{}, Registry: reg,
		Timeout: 5 * time.Second, Poll: time.Millisecond, HelperID: id, Alive: always, Sweep: time.Hour})
	return &helper{reg: reg, coord: c, be: emulate.New(st, pr.LIO()).WithFencing(c)}
}

// TestWatchReplacesPolling: on a store that can watch, a coordinator serving
// a VM does not read every value at every Poll (the lab's etcd members were
// kept busy by an idle helper's 20 scans a second); it reads them when a
// logical unit changed. And that is enough to fence: the victim's helper,
// which does not sweep, learns of the record only from the watch,
// and the evictor still gets GOOD only after the victim exited. (Sweep is an
// hour: each coordinator sweeps once, at its start.)
func TestWatchReplacesPolling(t *testing.T) {
	st := newWatched()
	h1 := watchedHelper(t, st, "helper-vm1")
	h2 := watchedHelper(t, st, "helper-vm2")
	q1, q2 := qemu(t), qemu(t)
	h1.track(t, vm1, q1.Process.Pid)
	h2.track(t, vm2, q2.Process.Pid)
	h1.run(t)
	h2.run(t)
	time.Sleep(200 * time.Millisecond) // about 200 ticks of Poll each
	// Each coordinator: the first sweep and the watch's first signal, at most
	// one read each. Polling would have read at every tick.
	if n := st.lists.Load(); n > 4 {
		t.Fatalf("%d full reads of the store by two idle coordinators in 200 ms: they poll instead of watching", n)
	}
	before := st.lists.Load()
	setupWERO(t, h1.be)
	deadline := time.Now().Add(30 * time.Second)
	for st.lists.Load() == before {
		if time.Now().After(deadline) {
			t.Fatal("no read of the store after a logical unit changed: the watch did not wake the coordinators")
		}
		time.Sleep(time.Millisecond)
	}
	mustGood(t, h2.be, vm2, scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, 0xb2, 0xa1)
	if !exited(q1.Process.Pid) {
		t.Fatal("GOOD while vm1 (served by the other helper, which learns of records only by the watch) still runs")
	}
	if exited(q2.Process.Pid) {
		t.Fatal("vm2 was killed")
	}
}
