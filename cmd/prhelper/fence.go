package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/internal/daemon/server"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/fence/etcdlease"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/pr"
)

// fencing is the daemon's fencing of emulated logical units (--fence): the
// policy, the registry of live connections per initiator, and the coordinator
// that records fences in the state store and waits for them.
type fencing struct {
	policy     fence.Policy // nil: none
	timeout    time.Duration
	timeoutSet bool
	reg        *fence.Registry
	coord      *fence.Coordinator

	// Across hosts (etcd store): this helper's lease, its TTL and host name.
	etcd     bool
	leaseTTL time.Duration
	host     string
	session  *etcdlease.Session
	log      *slog.Logger
}

// firstSet returns the first non-empty value: the flag, then the file.
func firstSet(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func newFencing(policy, timeout string) (*fencing, error) {
	p, err := fence.ParsePolicy(policy)
	if err != nil {
		return nil, fmt.Errorf("--fence: %w", err)
	}
	f := &fencing{policy: p, timeout: fence.DefaultTimeout, reg: fence.NewRegistry()}
	if timeout != "" {
		d, err := time.ParseDuration(timeout)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("--fence-timeout %q: want a positive duration such as 10s", timeout)
		}
		f.timeout, f.timeoutSet = d, true
	}
	return f, nil
}

// acrossHosts takes --fence-lease-ttl and --fence-host: with the etcd store,
// helpers on several hosts fence through etcd leases (docs/fencing.md,
// "Across hosts"). The fence timeout must exceed the TTL, since an evictor may
// have to wait for a lease to expire; by default it is twice the TTL.
func (f *fencing) acrossHosts(etcdStore bool, ttl, host string) error {
	if !etcdStore {
		if ttl != "" || host != "" {
			return fmt.Errorf("%w: --fence-lease-ttl and --fence-host need the etcd store (--etcd-endpoints)", errUsage)
		}
		return nil
	}
	f.etcd, f.leaseTTL = true, etcdlease.DefaultTTL
	if ttl != "" {
		d, err := time.ParseDuration(ttl)
		if err != nil {
			return fmt.Errorf("--fence-lease-ttl %q: want a duration such as 10s", ttl)
		}
		f.leaseTTL = d
	}
	if err := etcdlease.CheckTTL(f.leaseTTL); err != nil {
		return fmt.Errorf("--fence-lease-ttl: %w", err)
	}
	if !f.timeoutSet {
		f.timeout = 2 * f.leaseTTL
	} else if f.policy != nil && f.timeout <= f.leaseTTL {
		return fmt.Errorf("--fence-timeout %s must exceed --fence-lease-ttl %s with etcd: an evictor may wait for a lease to expire", f.timeout, f.leaseTTL)
	}
	f.host = host
	if f.host == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return fmt.Errorf("--fence-host not given and no host name: %v", err)
		}
		f.host = h
	}
	if strings.ContainsAny(f.host, "/@ \t\n") {
		return fmt.Errorf("--fence-host %q: want a name without '/', '@' or white space", f.host)
	}
	return nil
}

// attach makes the coordinator over the emulation's store. Every helper on the
// store gets one, whatever its policy: under none it records nothing but still
// keeps other helpers' records and waits for them.
//
// With the etcd store the helper first takes its lease (etcdlease): its proof
// of life for the other hosts, under which it announces the VMs it serves.
func (f *fencing) attach(st store.Store, p pr.Profile, m *metrics.Metrics, log *slog.Logger) (emulate.Fencing, error) {
	f.log = log
	o := fence.Options{Store: st, KeyPrefix: emulate.KeyPrefix, Profile: p, Policy: f.policy,
		Registry: f.reg, Timeout: f.timeout, Log: log.With("fence", f.String())}
	if m != nil {
		o.OnFence, o.OnWait = m.Fenced, m.FenceWaited
	}
	if f.etcd {
		es, ok := etcdOf(st)
		if !ok {
			return nil, errors.New("fencing across hosts needs the etcd store")
		}
		ctx, cancel := context.WithTimeout(context.Background(), etcd.DefaultTimeout)
		defer cancel()
		sess, err := etcdlease.Open(ctx, etcdlease.Options{Client: es.Client(), Prefix: es.Prefix(), Host: f.host, TTL: f.leaseTTL,
			SelfFence: f.selfFence, Log: log.With("fence", f.String())})
		if err != nil {
			return nil, err
		}
		f.session = sess
		o.Members = sess
	}
	f.coord = fence.New(o)
	return f.coord, nil
}

// etcdOf finds the etcd store under the daemon's wrapper.
func etcdOf(st store.Store) (*etcd.Store, bool) {
	if s, ok := st.(*sharedStore); ok {
		return s.Store, true
	}
	es, ok := st.(*etcd.Store)
	return es, ok
}

// selfFence is the lease's last resort: the helper could not renew it, so
// other hosts will soon count its VMs as fenced; it kills (or runs the agent
// for) those that hold registrations first.
func (f *fencing) selfFence(ctx context.Context, why string) error {
	if f.coord == nil {
		return nil
	}
	fenced, err := f.coord.SelfFence(ctx)
	if err != nil {
		f.log.Error("self-fence failed", "fenced", fenced, "err", err)
		return err
	}
	f.log.Warn("self-fenced", "fenced", fenced, "why", why)
	return nil
}

// track is the server's hook for new connections, nil when nothing is fenced.
func (f *fencing) track() func(string, *net.UnixConn) (func(), error) {
	if f.policy == nil || f.coord == nil {
		return nil
	}
	return func(initiator string, c *net.UnixConn) (func(), error) {
		release, err := f.coord.Track(initiator, c)
		if errors.Is(err, fence.ErrNotAnnounced) {
			return release, fmt.Errorf("%w: %v", server.ErrRefuse, err)
		}
		return release, err
	}
}

// run watches the store for fences this helper must carry out, until ctx ends.
// A helper with --fence=none fences nothing and so announces nothing; its
// commands still wait for other helpers' records (Coordinator.Fence reads them).
//
// With etcd the lease is kept alive meanwhile, whatever the policy.
func (f *fencing) run(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if f.session != nil {
			f.session.Run(ctx)
		}
	}()
	if f.coord != nil && f.policy != nil {
		f.coord.Run(ctx)
	}
	<-done
}

func (f *fencing) String() string {
	if f.policy == nil {
		return "none"
	}
	return f.policy.String()
}

// describe is the start-up log line's explanation of the policy.
func (f *fencing) describe() string {
	switch f.policy.(type) {
	case nil:
		return "emulated reservations arbitrate but do not fence: a preempted VM's writes still reach the disk"
	case fence.Kill:
		return "a VM evicted from an emulated LU is killed (SIGKILL, waited for) before its evictor gets GOOD"
	default:
		return "a VM evicted from an emulated LU is fenced by the agent (exit 0) before its evictor gets GOOD"
	}
}
