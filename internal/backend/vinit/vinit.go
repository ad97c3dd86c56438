// Package vinit is the backend of virtual initiators over a real LUN
// (docs/virtual-initiators.md): guests are answered by the emulation backend
// (each VM its own initiator, the state in the shared store, fencing as
// configured), and after each PR OUT the emulation committed GOOD, this host's
// registration and reservation on the real LUN are brought to what the
// emulated state says (package internal/vinit), through the passthrough or
// multipath backend the device needs.
//
// It composes backends through backend.Backend and imports none of them: the
// builder hands it the emulation backend and a function that picks the one
// below for a descriptor.
package vinit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	core "github.com/prhelper/prhelper/internal/vinit"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

const hostsKeyPrefix = "vinit/"

// HostsKeyPrefix is where the backend keeps, per LU, the hosts' keys and the
// host of each VM (docs/virtual-initiators.md §2).
const HostsKeyPrefix = hostsKeyPrefix

// uaRetries is how often a command that met a unit attention is sent again:
// the array reports one condition per command (SPC-4 §5.14); 2A/03 and 2A/05
// tell of another host's change, which the next READ FULL STATUS shows.
const uaRetries = 3

// Options configures a Backend. Every field but Key is required.
type Options struct {
	// Emulate answers the guests: the emulation backend over Store.
	Emulate backend.Backend
	// Lower returns the backend that reaches the real LUN behind a received
	// descriptor (sgio for a SCSI disk, mpath for a multipath map).
	Lower func(fd int) (backend.Backend, error)
	// Store is the emulation's store; StateKeyPrefix where it keeps each LU's
	// state ("lu/").
	Store          store.Store
	StateKeyPrefix string
	// ParseInitiator turns a request's initiator name into the engine's
	// initiator port, as the emulation does (emulate.ParseInitiator).
	ParseInitiator func(string) (pr.Initiator, error)
	// Host is this host's id (--fence-host); Key its key on the LUN, 0 for
	// the derived one (core.HostKey).
	Host string
	Key  uint64
}

// Backend is the vinit backend. It is safe for concurrent use.
type Backend struct {
	o   Options
	key uint64

	mu    sync.Mutex
	locks map[string]*sync.Mutex // per LU: one plan at a time from this helper
}

var _ backend.Backend = (*Backend)(nil)

// New returns the backend o describes.
func New(o Options) (*Backend, error) {
	if o.Emulate == nil || o.Lower == nil || o.Store == nil || o.StateKeyPrefix == "" || o.ParseInitiator == nil || o.Host == "" {
		return nil, errors.New("vinit: the emulation backend, the backend below, the store, its key prefix, the initiator parser and the host id are required")
	}
	k := o.Key
	if k == 0 {
		k = core.HostKey(o.Host)
	}
	return &Backend{o: o, key: k, locks: map[string]*sync.Mutex{}}, nil
}

// Name returns "vinit".
func (b *Backend) Name() string { return "vinit" }

// Key returns this host's key on the real LUN.
func (b *Backend) Key() uint64 { return b.key }

// Execute answers req from the emulated state and, after a PR OUT the
// emulation answered GOOD, brings the real LUN to the state the emulated one
// asks of this host (docs/virtual-initiators.md §6). When that fails the
// guest gets HARDWARE ERROR, INTERNAL TARGET FAILURE, as for a failed fence:
// the emulated change is committed and the next command tries again.
func (b *Backend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if req == nil {
		return scsi.CheckCondition(scsi.SenseInvalidField), errors.New("vinit: nil request")
	}
	if _, err := b.o.Lower(req.FD); err != nil {
		// No real LUN to mirror onto (a disk image, an NVMe namespace):
		// refused as a device without PR support, before anything commits.
		return scsi.CheckCondition(scsi.SenseInvalidOpcode), fmt.Errorf("vinit: %w", err)
	}
	prOut := req.CDB[0] == scsi.OpPersistentReserveOut
	if prOut && req.LU != "" && req.Initiator != "" {
		if err := b.record(ctx, req.LU, req.Initiator); err != nil {
			return scsi.CheckCondition(scsi.SenseIOError), fmt.Errorf("vinit: %w", err)
		}
	}
	res, err := b.o.Emulate.Execute(ctx, req)
	if !prOut || res.Status != scsi.StatusGood {
		return res, err
	}
	if rerr := b.Reconcile(ctx, req.LU, req.FD); rerr != nil {
		return scsi.CheckCondition(scsi.SenseTargetFailure), fmt.Errorf("vinit: %s on %s: committed, but %w",
			scsi.CommandName(req.CDB[:]), req.LU, rerr)
	}
	return res, err
}

// hosts is the record kept at HostsKeyPrefix+LU: every host's key, and the
// host of each VM by its initiator name (fence.InitiatorName).
type hosts struct {
	Keys map[string]uint64 `json:"keys"`
	VMs  map[string]string `json:"vms"`
}

func decodeHosts(v []byte) (hosts, error) {
	h := hosts{Keys: map[string]uint64{}, VMs: map[string]string{}}
	if v == nil {
		return h, nil
	}
	if err := json.Unmarshal(v, &h); err != nil {
		return h, fmt.Errorf("host record: %w", err)
	}
	if h.Keys == nil {
		h.Keys = map[string]uint64{}
	}
	if h.VMs == nil {
		h.VMs = map[string]string{}
	}
	return h, nil
}

// record makes the store say that initiator is on this host and what this
// host's key is, before the initiator's command can register it
// (docs/virtual-initiators.md §2). Nothing is written when it says so already.
func (b *Backend) record(ctx context.Context, lu, initiator string) error {
	init, err := b.o.ParseInitiator(initiator)
	if err != nil {
		return nil // the emulation answers it
	}
	vm := fence.InitiatorName(init)
	key := hostsKeyPrefix + lu
	cur, err := b.o.Store.Get(ctx, key)
	if err == nil {
		if h, derr := decodeHosts(cur); derr == nil && h.VMs[vm] == b.o.Host && h.Keys[b.o.Host] == b.key {
			return nil
		}
	}
	return b.o.Store.Update(ctx, key, func(cur []byte) ([]byte, bool, error) {
		h, err := decodeHosts(cur)
		if err != nil {
			return nil, false, err
		}
		if h.VMs[vm] == b.o.Host && h.Keys[b.o.Host] == b.key {
			return nil, false, nil
		}
		h.VMs[vm], h.Keys[b.o.Host] = b.o.Host, b.key
		next, err := json.Marshal(h)
		return next, err == nil && !bytes.Equal(next, cur), err
	})
}

// Reconcile reads the LUN through fd, then the emulated state, and sends this
// host's plan (docs/virtual-initiators.md §5, §6), again after a command the
// LUN refused, at most core.MaxRounds times.
func (b *Backend) Reconcile(ctx context.Context, lu string, fd int) error {
	if lu == "" {
		return errors.New("no logical-unit identity")
	}
	lower, err := b.o.Lower(fd)
	if err != nil {
		return fmt.Errorf("the real LUN: %w", err)
	}
	l := b.lock(lu)
	l.Lock()
	defer l.Unlock()
	var last error
	for round := 0; round < core.MaxRounds; round++ {
		view, err := b.readLUN(ctx, lower, fd)
		if err != nil {
			return err
		}
		d, keys, err := b.desired(ctx, lu)
		if err != nil {
			return err
		}
		plan, perr := core.Plan(d, b.o.Host, keys, view)
		refused := false
		for _, c := range plan {
			if err := b.send(ctx, lower, fd, c); err != nil {
				last, refused = err, true
				break
			}
		}
		if !refused {
			return perr
		}
	}
	return fmt.Errorf("the real LUN did not reach the emulated state in %d rounds: %w", core.MaxRounds, last)
}

// desired reads the emulated state and the host record of lu.
func (b *Backend) desired(ctx context.Context, lu string) (core.Desired, map[string]uint64, error) {
	v, err := b.o.Store.Get(ctx, b.o.StateKeyPrefix+lu)
	if err != nil {
		return core.Desired{}, nil, fmt.Errorf("emulated state: %w", err)
	}
	stBytes, _, err := fence.Decode(v)
	if err != nil {
		return core.Desired{}, nil, err
	}
	var st pr.State
	if stBytes != nil {
		if err := st.UnmarshalBinary(stBytes); err != nil {
			return core.Desired{}, nil, err
		}
	}
	hv, err := b.o.Store.Get(ctx, hostsKeyPrefix+lu)
	if err != nil {
		return core.Desired{}, nil, fmt.Errorf("host record: %w", err)
	}
	h, err := decodeHosts(hv)
	if err != nil {
		return core.Desired{}, nil, err
	}
	keys := maps.Clone(h.Keys)
	keys[b.o.Host] = b.key
	d := core.Desire(&st, func(n pr.Nexus) (string, bool) {
		host, ok := h.VMs[fence.InitiatorName(n.Initiator)]
		return host, ok
	})
	return d, keys, nil
}

// readLUN is READ FULL STATUS through the backend below.
func (b *Backend) readLUN(ctx context.Context, lower backend.Backend, fd int) (core.LUN, error) {
	res, err := b.do(ctx, lower, &backend.Request{CDB: scsi.PRInCDB(scsi.SAReadFullStatus, core.FullStatusAlloc), FD: fd})
	if res.Status != scsi.StatusGood {
		return core.LUN{}, fmt.Errorf("READ FULL STATUS: %s: %w", res, errOr(err))
	}
	return core.ReadLUN(res.Data)
}

// send sends one command of a plan.
func (b *Backend) send(ctx context.Context, lower backend.Backend, fd int, c core.Command) error {
	cdb, param := c.CDB()
	res, err := b.do(ctx, lower, &backend.Request{CDB: cdb, Param: param, FD: fd})
	if res.Status != scsi.StatusGood {
		return fmt.Errorf("%s: %s: %w", c, res, errOr(err))
	}
	return nil
}

// do runs req on lower, again after a unit attention.
func (b *Backend) do(ctx context.Context, lower backend.Backend, req *backend.Request) (scsi.Result, error) {
	var res scsi.Result
	var err error
	for range uaRetries + 1 {
		r := *req
		res, err = lower.Execute(ctx, &r)
		if s, ok := res.ParseSense(); res.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention {
			continue
		}
		break
	}
	return res, err
}

func errOr(err error) error {
	if err == nil {
		return errors.New("refused by the device")
	}
	return err
}

func (b *Backend) lock(lu string) *sync.Mutex {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.locks[lu]
	if !ok {
		l = &sync.Mutex{}
		b.locks[lu] = l
	}
	return l
}
