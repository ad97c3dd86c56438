package etcd_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// TestCommitterPulls holds a transaction in flight (its only member stopped) and
// checks how the next one is formed (docs/performance.md §5.6.1): the requests for
// a key whose write waits for the busy committer join that write, and those for the
// key whose write is in flight form a write chained after it, which the committer
// sends with the waiting one as soon as the first commits. Two transactions in all:
// {a1} and {a2-a4, b1-b5}; before, b's later requests and a's next batch each took
// transactions of their own.
func TestCommitterPulls(t *testing.T) {
	c := etcdtest.Start(t, 1)
	var mu sync.Mutex
	var commits []int
	s := open(t, c, func(o *etcd.Options) {
		// The member is stopped for as long as the test needs: no attempt may
		// time out meanwhile (that would be an unknown outcome, resent).
		o.Timeout, o.AttemptTimeout = 10*time.Minute, 5*time.Minute
		o.OnCommit = func(cm store.Commit) {
			mu.Lock()
			commits = append(commits, cm.Updates)
			mu.Unlock()
		}
	})
	ctx := context.Background()
	for _, k := range []string{"a", "b"} { // warm the caches: no reads while stopped
		if err := s.Update(ctx, k, storetest.Increment); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for !ok() {
			time.Sleep(time.Millisecond)
		}
		t.Logf("%s; stats %+v", what, s.Stats())
	}
	before := s.Stats()
	mu.Lock()
	commits = nil
	mu.Unlock()
	var waits []func() error
	c.Pause(c.Members[0])
	waits = append(waits, s.Queue(ctx, "a", storetest.Increment))
	waitFor("a1's write taken, its transaction in flight", func() bool { return s.Stats().Writes == before.Writes+1 })
	waits = append(waits, s.Queue(ctx, "b", storetest.Increment))
	waitFor("b1's write waits for the committer", func() bool { r, _, _ := s.Queues("b"); return r == 1 })
	for range 3 {
		waits = append(waits, s.Queue(ctx, "a", storetest.Increment))
	}
	for range 4 {
		waits = append(waits, s.Queue(ctx, "b", storetest.Increment))
	}
	waitFor("a2-a4 and b2-b5 taken from the queues", func() bool {
		_, chained, qa := s.Queues("a")
		_, _, qb := s.Queues("b")
		return chained >= 1 && qa == 0 && qb == 0
	})
	if ready, chained, _ := s.Queues("a"); ready != 1 || chained != 1 {
		t.Errorf("%d writes wait for the committer and %d are chained, want 1 (b1-b5) and 1 (a2-a4)", ready, chained)
	}
	c.Resume(c.Members[0])
	for i, wait := range waits {
		if err := wait(); err != nil {
			t.Errorf("update %d: %v", i, err)
		}
	}
	for k, want := range map[string]string{"a": "5", "b": "6"} {
		if v, err := s.Get(ctx, k); err != nil || string(v) != want {
			t.Errorf("%s = %q (%v), want %s", k, v, err, want)
		}
	}
	after := s.Stats()
	mu.Lock()
	got := slices.Sorted(slices.Values(commits))
	mu.Unlock()
	t.Logf("stats %+v; batches committed (updates each) %v", after, got)
	if n := after.Transactions - before.Transactions; n != 2 {
		t.Errorf("%d transactions, want 2: {a1}, then {a2-a4, b1-b5}", n)
	}
	if n := after.Writes - before.Writes; n != 3 {
		t.Errorf("%d writes sent, want 3", n)
	}
	if !slices.Equal(got, []int{1, 3, 5}) {
		t.Errorf("batches of %v updates, want [1 3 5]", got)
	}
}
