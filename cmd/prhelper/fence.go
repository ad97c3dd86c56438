package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
)

// fencing is the daemon's fencing of emulated logical units (--fence): the
// policy, the registry of live connections per initiator, and the coordinator
// that records fences in the state store and waits for them.
type fencing struct {
	policy  fence.Policy // nil: none
	timeout time.Duration
	reg     *fence.Registry
	coord   *fence.Coordinator
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
		f.timeout = d
	}
	return f, nil
}

// attach makes the coordinator over the emulation's store. Every helper on the
// store gets one, whatever its policy: under none it records nothing but still
// keeps other helpers' records and waits for them.
func (f *fencing) attach(st store.Store, p pr.Profile, m *metrics.Metrics, log *slog.Logger) emulate.Fencing {
	o := fence.Options{Store: st, KeyPrefix: emulate.KeyPrefix, Profile: p, Policy: f.policy,
		Registry: f.reg, Timeout: f.timeout, Log: log.With("fence", f.String())}
	if m != nil {
		o.OnFence, o.OnWait = m.Fenced, m.FenceWaited
	}
	f.coord = fence.New(o)
	return f.coord
}

// track is the server's hook for new connections, nil when nothing is fenced.
func (f *fencing) track() func(string, *net.UnixConn) (func(), error) {
	if f.policy == nil || f.coord == nil {
		return nil
	}
	return f.coord.Track
}

// run watches the store for fences this helper must carry out, until ctx ends.
// A helper with --fence=none fences nothing and so announces nothing; its
// commands still wait for other helpers' records (Coordinator.Fence reads them).
func (f *fencing) run(ctx context.Context) {
	if f.coord != nil && f.policy != nil {
		f.coord.Run(ctx)
	}
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
