// Package etcdlease is a helper's membership in the fencing of emulated
// reservations across hosts (docs/fencing.md, "Across hosts"): an etcd lease
// that proves the helper is alive, its announcement of the initiators it serves
// kept under that lease, and the self-fence that runs when the lease can no
// longer be renewed, before etcd could have expired it.
//
// A Session implements fence.Members.
package etcdlease

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease TTL bounds (docs/fencing.md, "Timing").
const (
	DefaultTTL = 10 * time.Second
	// MinTTL is the shortest accepted TTL: etcd grants no lease shorter than
	// its minimum (1.5 election timeouts, 1.5 s by default, rounded up), and the
	// self-fence needs a quarter of the TTL to kill the VMs.
	MinTTL = 2 * time.Second
)

// MembersDir is where, under the store's prefix, each helper's announcement is
// kept under its lease: <prefix>fence/members/<ID>.
const MembersDir = "fence/members/"

// Options configure a Session.
type Options struct {
	Client *clientv3.Client
	// Prefix is the store's etcd prefix (ends with '/').
	Prefix string
	// Host names this host in the helper's ID (no '/', no white space).
	Host string
	// TTL is the lease's time to live (whole seconds, at least MinTTL).
	TTL time.Duration
	// SelfFence fences this helper's VMs that hold registrations. It is called
	// once per lease whose renewal was not confirmed for 3/4 of its TTL
	// (counted on the local monotonic clock from the sending of the last
	// renewal etcd confirmed), or that etcd says is gone; the VMs must be dead
	// when it returns nil. After an error it is tried again every TTL/5, and
	// the lease is neither given up nor replaced meanwhile: while it lives,
	// other hosts keep waiting for this helper.
	SelfFence func(ctx context.Context, why string) error
	Log       *slog.Logger
	// Now is the local clock (monotonic readings only); tests may replace it.
	Now func() time.Time
}

// Session is one helper's lease and announcement. Safe for concurrent use.
type Session struct {
	o   Options
	dir string // Prefix + MembersDir

	mu       sync.Mutex
	lease    clientv3.LeaseID
	id       string
	deadline time.Time   // self-fence when the local clock passes it
	fenced   bool        // SelfFence ran for the current lease
	lastAnn  []byte      // last announcement value, written again under a new lease
	timer    *time.Timer // runs the self-fence at deadline, whatever Run is doing
}

// Open grants the first lease. Run must then keep it alive.
func Open(ctx context.Context, o Options) (*Session, error) {
	if o.Client == nil {
		return nil, errors.New("etcdlease: no etcd client")
	}
	if err := CheckTTL(o.TTL); err != nil {
		return nil, err
	}
	if o.Host == "" || strings.ContainsAny(o.Host, "/ \t\n@") {
		return nil, fmt.Errorf("etcdlease: host name %q: want a non-empty name without '/', '@' or white space", o.Host)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SelfFence == nil {
		o.SelfFence = func(context.Context, string) error { return nil }
	}
	s := &Session{o: o, dir: o.Prefix + MembersDir}
	s.timer = time.AfterFunc(time.Hour, func() {
		s.selfFence(context.Background(), "no renewal of the fence lease confirmed by etcd for 3/4 of its TTL")
	})
	s.timer.Stop()
	if err := s.grant(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// CheckTTL says whether d is an accepted lease TTL.
func CheckTTL(d time.Duration) error {
	if d < MinTTL || d%time.Second != 0 {
		return fmt.Errorf("lease TTL %s: want whole seconds, at least %s", d, MinTTL)
	}
	return nil
}

// grant takes a new lease and writes the last announcement under it before
// the new ID is published: a helper listed under its new ID already announces
// what it serves (List must not show it empty in between).
func (s *Session) grant(ctx context.Context) error {
	sent := s.o.Now()
	resp, err := s.o.Client.Grant(ctx, int64(s.o.TTL/time.Second))
	if err != nil {
		return fmt.Errorf("etcdlease: grant a lease: %w", err)
	}
	s.mu.Lock()
	ann := s.lastAnn
	s.mu.Unlock()
	if ann == nil {
		ann = []byte("{}")
	}
	for {
		if err := s.put(ctx, resp.ID, ann); err != nil {
			return err
		}
		s.mu.Lock()
		if s.lastAnn != nil && !bytes.Equal(s.lastAnn, ann) {
			// Announce ran meanwhile (under the old lease): write its value too.
			ann = s.lastAnn
			s.mu.Unlock()
			continue
		}
		s.lease = resp.ID
		s.id = fmt.Sprintf("%s@%x", s.o.Host, int64(resp.ID))
		s.fenced = false
		s.renewed(sent, resp.TTL)
		s.mu.Unlock()
		break
	}
	s.o.Log.Info("fence lease granted", "helper", s.ID(), "ttl", time.Duration(resp.TTL)*time.Second)
	return nil
}

// renewed moves the self-fence deadline: etcd set the lease's expiry to at
// least its own now + ttl while handling a request sent at local time sent,
// so the lease cannot expire before sent + ttl; the self-fence starts 1/4 ttl
// before that. Called with s.mu held.
func (s *Session) renewed(sent time.Time, ttl int64) {
	t := time.Duration(ttl) * time.Second
	s.deadline = sent.Add(t - t/4)
	s.timer.Reset(s.deadline.Sub(s.o.Now()))
}

// ID names this helper in fence records: "<host>@<lease hex>". It changes when
// a lost lease is replaced.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.id
}

// Deadline is when, on the local monotonic clock, the helper fences its VMs
// unless etcd confirms a renewal first.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Announce writes this helper's announcement under its lease. It fails when the
// lease is gone: the caller must not serve a VM it could not announce.
func (s *Session) Announce(ctx context.Context, v []byte) error {
	if v == nil {
		v = []byte("{}")
	}
	s.mu.Lock()
	lease, fenced := s.lease, s.fenced
	s.lastAnn = v
	s.mu.Unlock()
	if fenced {
		return errors.New("etcdlease: the lease is lost (this helper fenced its VMs); waiting for a new one")
	}
	return s.put(ctx, lease, v)
}

func (s *Session) put(ctx context.Context, lease clientv3.LeaseID, v []byte) error {
	key := s.dir + fmt.Sprintf("%s@%x", s.o.Host, int64(lease))
	if _, err := s.o.Client.Put(ctx, key, string(v), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("etcdlease: announce under lease %x: %w", int64(lease), err)
	}
	return nil
}

// List returns the announcements of the live helpers (whose lease etcd has not
// expired), by ID, from one linearizable read.
func (s *Session) List(ctx context.Context) (map[string][]byte, error) {
	resp, err := s.o.Client.Get(ctx, s.dir, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdlease: list helpers: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.dir)] = kv.Value
	}
	return out, nil
}

// Run renews the lease every TTL/5 until ctx ends. When no
// renewal was confirmed for 3/4 TTL, or etcd says the lease is gone, it calls
// SelfFence (once per lease) and then grants a new lease as soon as etcd
// answers.
//
// The lease is not revoked when ctx ends: a helper that stops leaves its VMs
// running, so its lease must not vouch for them at once. It expires after its
// TTL; meanwhile a restarted helper that the VMs reconnect to announces and
// fences them under its own lease (docs/fencing.md, "A helper stopping").
func (s *Session) Run(ctx context.Context) {
	every := s.o.TTL / 5
	tick := time.NewTicker(every)
	defer tick.Stop()
	defer s.timer.Stop()
	for {
		s.mu.Lock()
		lease, fenced := s.lease, s.fenced
		s.mu.Unlock()
		if fenced {
			if err := s.grantAfterLoss(ctx, lease, every); err != nil && ctx.Err() == nil {
				s.o.Log.Warn("fence lease: no new lease yet", "err", err)
			}
		} else {
			s.renew(ctx, lease, every)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// renew sends one renewal, bounded by every so that the deadline timer is
// never waited out behind a hung call.
func (s *Session) renew(ctx context.Context, lease clientv3.LeaseID, every time.Duration) {
	sent := s.o.Now()
	rctx, cancel := context.WithTimeout(ctx, every)
	resp, err := s.o.Client.KeepAliveOnce(rctx, lease)
	cancel()
	switch {
	case err == nil && resp.TTL > 0:
		s.mu.Lock()
		if s.lease == lease && !s.fenced {
			s.renewed(sent, resp.TTL)
		}
		s.mu.Unlock()
	case errors.Is(err, rpctypes.ErrLeaseNotFound) || (err == nil && resp.TTL <= 0):
		s.selfFence(ctx, "etcd says the fence lease expired")
	case ctx.Err() == nil:
		s.o.Log.Warn("fence lease: renewal failed", "helper", s.ID(), "err", err,
			"self_fence_in", s.Deadline().Sub(s.o.Now()).Round(time.Millisecond))
	}
}

// selfFence runs SelfFence once for the current lease.
func (s *Session) selfFence(ctx context.Context, why string) {
	s.mu.Lock()
	if s.fenced {
		s.mu.Unlock()
		return
	}
	s.fenced = true // no renewal may move the deadline while the self-fence runs
	s.timer.Stop()
	id, deadline := s.id, s.deadline
	s.mu.Unlock()
	start := s.o.Now()
	s.o.Log.Error("fence lease lost: fencing this helper's VMs that hold registrations", "helper", id, "why", why,
		"late_by", start.Sub(deadline).Round(time.Millisecond))
	if err := s.o.SelfFence(context.WithoutCancel(ctx), why); err != nil {
		s.o.Log.Error("self-fence failed; keeping the lease and trying again", "helper", id, "err", err)
		s.mu.Lock()
		s.fenced = false
		s.timer.Reset(s.o.TTL / 5)
		s.mu.Unlock()
		return
	}
	s.o.Log.Warn("self-fence done", "helper", id, "took", s.o.Now().Sub(start).Round(time.Microsecond))
}

// grantAfterLoss replaces a lost lease. While the old one may still be alive
// at etcd it is revoked first, so that no helper counts on it any more.
func (s *Session) grantAfterLoss(ctx context.Context, old clientv3.LeaseID, every time.Duration) error {
	gctx, cancel := context.WithTimeout(ctx, every)
	defer cancel()
	if _, err := s.o.Client.Revoke(gctx, old); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return err
	}
	return s.grant(gctx)
}
