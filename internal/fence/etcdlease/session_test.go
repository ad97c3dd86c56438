package etcdlease_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/prhelper/prhelper/internal/fence/etcdlease"
	"github.com/prhelper/prhelper/internal/store/etcd/etcdtest"
)

// proxied returns a client of c whose connections pass through proxies the
// test can cut, and a function that cuts (true) or heals (false) them.
func proxied(t *testing.T, c *etcdtest.Cluster) (*clientv3.Client, func(bool)) {
	t.Helper()
	var eps []string
	var ps []*etcdtest.Proxy
	for _, u := range c.Endpoints() {
		p, err := etcdtest.NewProxy(strings.TrimPrefix(u, "http://"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		ps = append(ps, p)
		eps = append(eps, "http://"+p.Addr())
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, func(cut bool) {
		for _, p := range ps {
			if cut {
				p.SetBlocked(func(string) bool { return true })
			} else {
				p.SetBlocked(nil)
			}
		}
	}
}

// TestSessionLifecycle on a real 3-member cluster: the announcement is listed
// while the lease lives; cut off from etcd, the session self-fences while its
// lease is still alive at etcd (checked through another client at that
// moment); etcd then expires the lease and deletes the announcement; once
// healed, the session takes a new lease (new ID) and writes its last
// announcement under it.
func TestSessionLifecycle(t *testing.T) {
	c := etcdtest.Start(t, 3)
	direct := c.Client(t)
	cli, cut := proxied(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	type fenceEvent struct {
		at       time.Time
		ttlLeft  int64 // lease TTL at etcd when the self-fence ran
		listedAs bool  // still listed
	}
	var mu sync.Mutex
	var events []fenceEvent
	var s *etcdlease.Session
	s, err := etcdlease.Open(ctx, etcdlease.Options{Client: cli, Prefix: "/lease-test/", Host: "hostB", TTL: 3 * time.Second,
		SelfFence: func(ctx context.Context, why string) error {
			id := s.ID()
			lease, _ := strconv.ParseInt(id[strings.IndexByte(id, '@')+1:], 16, 64)
			ttl, err := direct.TimeToLive(ctx, clientv3.LeaseID(lease))
			left := int64(-2)
			if err == nil {
				left = ttl.TTL
			}
			resp, _ := direct.Get(ctx, "/lease-test/"+etcdlease.MembersDir+id)
			mu.Lock()
			events = append(events, fenceEvent{time.Now(), left, resp != nil && len(resp.Kvs) == 1})
			mu.Unlock()
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	first := s.ID()
	if !strings.HasPrefix(first, "hostB@") {
		t.Fatalf("ID %q", first)
	}
	if err := s.Announce(ctx, []byte(`{"serves":{"vm1":1}}`)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	m, err := s.List(ctx)
	if err != nil || string(m[first]) != `{"serves":{"vm1":1}}` {
		t.Fatalf("List: %v %q", err, m)
	}
	// Renewals keep it alive past its TTL.
	time.Sleep(4 * time.Second)
	if resp, _ := direct.Get(ctx, "/lease-test/"+etcdlease.MembersDir+first); len(resp.Kvs) != 1 {
		t.Fatal("the announcement expired although the session renews its lease")
	}
	mu.Lock()
	n := len(events)
	mu.Unlock()
	if n != 0 {
		t.Fatal("self-fence while etcd was reachable")
	}

	cutAt := time.Now()
	cut(true)
	w := direct.Watch(ctx, "/lease-test/"+etcdlease.MembersDir+first)
	var expiredAt time.Time
	for resp := range w {
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				expiredAt = time.Now()
			}
		}
		if !expiredAt.IsZero() {
			break
		}
	}
	mu.Lock()
	ev := append([]fenceEvent(nil), events...)
	mu.Unlock()
	if len(ev) != 1 {
		t.Fatalf("%d self-fences before the lease expired at etcd, want 1", len(ev))
	}
	if ev[0].ttlLeft < 0 || !ev[0].listedAs {
		t.Fatalf("the self-fence ran when the lease was already gone at etcd (TTL %d, listed %v)", ev[0].ttlLeft, ev[0].listedAs)
	}
	t.Logf("cut -> self-fence %v, cut -> expiry seen at etcd %v (TTL 3s, self-fence at 3/4 TTL after the last confirmed renewal)",
		ev[0].at.Sub(cutAt).Round(time.Millisecond), expiredAt.Sub(cutAt).Round(time.Millisecond))
	if err := s.Announce(ctx, []byte(`{"serves":{"vm1":1}}`)); err == nil {
		t.Fatal("Announce succeeded with the lease lost")
	}

	cut(false)
	deadline := time.Now().Add(30 * time.Second)
	for s.ID() == first {
		if time.Now().After(deadline) {
			t.Fatal("no new lease after etcd came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	m, err = s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m[first]; ok {
		t.Fatalf("the lost lease's announcement is still listed: %q", m)
	}
	if string(m[s.ID()]) != `{"serves":{"vm1":1}}` {
		t.Fatalf("the new lease %s does not carry the last announcement: %q", s.ID(), m)
	}
}

func TestCheckTTL(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{{2 * time.Second, true}, {10 * time.Second, true}, {time.Second, false}, {2500 * time.Millisecond, false}, {0, false}} {
		if err := etcdlease.CheckTTL(tc.d); (err == nil) != tc.ok {
			t.Errorf("CheckTTL(%v) = %v", tc.d, err)
		}
	}
}

// TestSelfFenceFailureRetried: a self-fence that fails is tried again, and the
// lease is not replaced (so not revoked) before one succeeded: while it lives,
// other hosts keep waiting for this helper.
func TestSelfFenceFailureRetried(t *testing.T) {
	c := etcdtest.Start(t, 3)
	cli, cut := proxied(t, c)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var calls []string // the session's ID at each call
	var s *etcdlease.Session
	s, err := etcdlease.Open(ctx, etcdlease.Options{Client: cli, Prefix: "/lease-retry/", Host: "hostB", TTL: 2 * time.Second,
		SelfFence: func(context.Context, string) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, s.ID())
			if len(calls) == 1 {
				return errors.New("agent exited 1")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	first := s.ID()
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	cut(true)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := len(calls)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("self-fence calls: %d, want a retry after the failure", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	got := append([]string(nil), calls...)
	mu.Unlock()
	if got[0] != first || got[1] != first {
		t.Fatalf("the lease was replaced before a self-fence succeeded: IDs %v, first %s", got, first)
	}
	cut(false)
}
