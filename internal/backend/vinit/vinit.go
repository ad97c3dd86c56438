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
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

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
	// Profile is the emulation's engine profile (for the unit attentions of
	// a folded-in preemption); a zero Profile means pr.LIO().
	Profile pr.Profile
	// Fencing, when set, is the emulation's fencing: a preemption on the LUN
	// folded into the emulated state goes through it like a command, so its
	// victims are fenced by the rule of docs/fencing.md.
	Fencing Fencing
	// Dup and Close keep a descriptor of a LUN for the poll and release it;
	// nil means the kernel's (fcntl F_DUPFD_CLOEXEC, close). Tests fake them.
	Dup   func(fd int) (int, error)
	Close func(fd int) error
	// Logger logs the poll's failures; nil discards them.
	Logger *slog.Logger
	// AfterCommit, when set, runs after a PR OUT committed in the emulated
	// state and before the LUN is brought in line: a test-only hook that
	// makes the crash window of docs/virtual-initiators.md §6 deterministic
	// (the daemon sets it only from PRHELPER_TEST_VINIT_AFTER_COMMIT).
	AfterCommit func()
}

// Fencing is the emulation's fencing (fence.Coordinator): StepWhere lets the
// fold judge its victims' rights against the real LUN
// (docs/virtual-initiators.md §7), Fence waits for the fences.
type Fencing interface {
	StepWhere(cur []byte, n pr.Nexus, cdb []byte, exec func(*pr.State) pr.Result, refused func(after *pr.State, v pr.Nexus) bool) (next []byte, changed bool, res pr.Result, wait *fence.Wait, err error)
	Fence(ctx context.Context, lu string, fd int, wait *fence.Wait) error
}

// Backend is the vinit backend. It is safe for concurrent use.
type Backend struct {
	o   Options
	key uint64

	mu  sync.Mutex
	lus map[string]*luState
}

// luState is what the backend keeps per LU between commands.
type luState struct {
	mu sync.Mutex // one plan or poll at a time from this helper
	// fd is a descriptor of the LUN kept for the poll (-1: none): kept while
	// this host is registered there (docs/virtual-initiators.md §7).
	fd int
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
	if o.Dup == nil {
		o.Dup = func(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }
	}
	if o.Close == nil {
		o.Close = unix.Close
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Profile.Name == "" {
		o.Profile = pr.LIO()
	}
	return &Backend{o: o, key: k, lus: map[string]*luState{}}, nil
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
	lower, err := b.o.Lower(req.FD)
	if err != nil {
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
	if prOut && req.LU != "" {
		if k, ok := b.preemptsForeign(ctx, req); ok {
			return scsi.Result{Status: scsi.StatusReservationConflict}, fmt.Errorf("vinit: %s of key %#x on %s: a foreign key on the real LUN, which vinit never preempts",
				scsi.CommandName(req.CDB[:]), k, req.LU)
		}
	}
	res, err := b.o.Emulate.Execute(ctx, req)
	if !prOut || res.Status != scsi.StatusGood {
		return res, err
	}
	if b.o.AfterCommit != nil {
		b.o.AfterCommit()
	}
	// The backend below is the one found above: one classification of the
	// descriptor per command.
	rerr := b.withLU(req.LU, func(l *luState) error { return b.poll(ctx, req.LU, req.FD, lower, l) })
	if rerr != nil {
		return scsi.CheckCondition(scsi.SenseTargetFailure), fmt.Errorf("vinit: %s on %s: committed, but %w",
			scsi.CommandName(req.CDB[:]), req.LU, rerr)
	}
	return res, err
}

// preemptsForeign reports whether req is a PREEMPT (or PREEMPT AND ABORT)
// of the key the emulated state shows a foreign reservation under
// (core.Foreign, docs/virtual-initiators.md §7): vinit never preempts a
// foreign key on the LUN (§2), so the guest is answered RESERVATION CONFLICT
// before anything commits, instead of a preemption the next poll would undo.
func (b *Backend) preemptsForeign(ctx context.Context, req *backend.Request) (uint64, bool) {
	sa := req.CDB[1] & 0x1f
	if (sa != scsi.SAPreempt && sa != scsi.SAPreemptAndAbort) || len(req.Param) < scsi.PROutParamLen {
		return 0, false
	}
	k := binary.BigEndian.Uint64(req.Param[8:16])
	st, err := b.state(ctx, req.LU)
	if err != nil {
		return 0, false // the emulation meets the same error
	}
	return k, slices.ContainsFunc(st.Registrations, func(r pr.Registration) bool { return r.Nexus.Equal(core.Foreign) && r.Key == k })
}

// hosts is the record kept at HostsKeyPrefix+LU: every host's key, and the
// host of each VM by its initiator name (fence.InitiatorName).
type hosts struct {
	Keys map[string]uint64 `json:"keys"`
	VMs  map[string]string `json:"vms"`
	// Seen holds, per host, its VMs' registrations when the host last saw
	// its key on the LUN (core.Own), none while it is not registered there:
	// in the store, so that a helper that restarts, or another helper
	// process of the same host, still knows what a lost key takes away
	// (docs/virtual-initiators.md §7).
	Seen map[string][]pr.Registration `json:"seen,omitempty"`
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

// Poll brings the emulated state and the LUN in line through fd
// (docs/virtual-initiators.md §6, §7): it reads the LUN; when this host's key
// is gone from it although this host last saw it there, the host's VMs then
// registered are evicted in the emulated state (core.Fold, through the
// fencing when there is one); then it sends this host's plan (Reconcile). It
// runs after every PR OUT the emulation committed, on each poll, and brings a
// LUN left behind by a helper that died after its commit in line.
func (b *Backend) Poll(ctx context.Context, lu string, fd int) error {
	return b.locked(lu, fd, func(lower backend.Backend, l *luState) error {
		return b.poll(ctx, lu, fd, lower, l)
	})
}

// locked runs f with the backend below fd and lu's state locked.
func (b *Backend) locked(lu string, fd int, f func(lower backend.Backend, l *luState) error) error {
	lower, err := b.o.Lower(fd)
	if err != nil {
		return fmt.Errorf("the real LUN: %w", err)
	}
	return b.withLU(lu, func(l *luState) error { return f(lower, l) })
}

// withLU runs f with lu's state locked.
func (b *Backend) withLU(lu string, f func(l *luState) error) error {
	if lu == "" {
		return errors.New("no logical-unit identity")
	}
	l := b.lu(lu)
	l.mu.Lock()
	defer l.mu.Unlock()
	return f(l)
}

// poll is Poll with l locked. It reads the LUN once, folds the loss of this
// host's key (core.Fold), shows a reservation a foreign key holds there
// (core.MirrorForeign), and sends the plan (reconcile, whose first round
// uses that read: neither step changes the LUN). A VM's reservation the
// mirror released is reported as core.ErrForeignHolder once the plan ran.
func (b *Backend) poll(ctx context.Context, lu string, fd int, lower backend.Backend, l *luState) error {
	h, err := b.hosts(ctx, lu)
	if err != nil {
		return err
	}
	view, err := b.readLUN(ctx, lower, fd)
	if err != nil {
		return err
	}
	if seen := h.Seen[b.o.Host]; len(seen) > 0 && !view.Has(b.key) {
		if err := b.fold(ctx, lu, fd, view, seen); err != nil {
			return err
		}
		if err := b.setSeen(ctx, lu, nil); err != nil {
			return err
		}
	}
	released, err := b.mirrorForeign(ctx, lu, fd, view, h)
	if err != nil {
		return err
	}
	if err := b.reconcile(ctx, lu, fd, lower, l, &view); err != nil {
		return err
	}
	if released != nil {
		return fmt.Errorf("%w: the emulated reservation (type %d) of %s is released", core.ErrForeignHolder, released.Type, released.Holder)
	}
	return nil
}

// mirrorForeign makes lu's emulated state show the reservation a foreign key
// holds on the LUN, as view shows it, and only that (core.MirrorForeign,
// docs/virtual-initiators.md §7), in one store update when anything changes.
// It returns the VM's reservation it released, if any.
func (b *Backend) mirrorForeign(ctx context.Context, lu string, fd int, view core.LUN, h hosts) (*pr.Reservation, error) {
	hostKey := func(k uint64) bool {
		if k == b.key {
			return true
		}
		for _, hk := range h.Keys {
			if hk == k {
				return true
			}
		}
		return false
	}
	// Most polls find nothing to change (no foreign reservation, or one
	// shown already): no store update then, and no wait for fences pending
	// on the LU. st is a copy decoded for this check.
	st, err := b.state(ctx, lu)
	if err != nil {
		return nil, err
	}
	if _, changed := core.MirrorForeign(b.o.Profile, &st, view, hostKey); !changed {
		return nil, nil
	}
	var released *pr.Reservation
	wait, err := b.mirror(ctx, lu, func(st *pr.State) pr.Result {
		released, _ = core.MirrorForeign(b.o.Profile, st, view, hostKey)
		return scsi.Result{Status: scsi.StatusGood}
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("showing the LUN's foreign reservation in the emulated state: %w", err)
	}
	if wait != nil {
		if err := b.o.Fencing.Fence(ctx, lu, fd, wait); err != nil {
			return nil, fmt.Errorf("waiting for the fences pending on the LU: %w", err)
		}
	}
	return released, nil
}

// Reconcile sends this host's plan through fd (docs/virtual-initiators.md §5,
// §6), again after a command the LUN refused, at most core.MaxRounds times.
func (b *Backend) Reconcile(ctx context.Context, lu string, fd int) error {
	return b.locked(lu, fd, func(lower backend.Backend, l *luState) error {
		return b.reconcile(ctx, lu, fd, lower, l, nil)
	})
}

// reconcile reads the LUN (in its first round: first, when the caller read
// it), then the emulated state, and sends the plan; l is locked. When the plan went through, it notes what this host now has on the
// LUN (hosts.Seen) and keeps a descriptor for the poll while the host is
// registered there.
func (b *Backend) reconcile(ctx context.Context, lu string, fd int, lower backend.Backend, l *luState, first *core.LUN) error {
	var last error
	for round := 0; round < core.MaxRounds; round++ {
		var view core.LUN
		if round == 0 && first != nil {
			view = *first
		} else {
			v, err := b.readLUN(ctx, lower, fd)
			if err != nil {
				return err
			}
			view = v
		}
		st, d, keys, hostOf, err := b.desired(ctx, lu)
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
		if refused {
			continue
		}
		var seen []pr.Registration
		if d.Registered[b.o.Host] {
			seen = core.Own(&st, hostOf, b.o.Host)
			b.keep(l, fd)
		} else {
			b.drop(l)
		}
		if err := b.setSeen(ctx, lu, seen); err != nil {
			return err
		}
		return perr
	}
	return fmt.Errorf("the real LUN did not reach the emulated state in %d rounds: %w", core.MaxRounds, last)
}

// external is the initiator a change folded in from the LUN is attributed
// to: not a VM, so that the fencing rule never takes it for its victims' own
// command; the one that shows a foreign reservation (core.Foreign), so that
// the fencing never takes that for a victim either.
var external = core.Foreign

// fold evicts from lu's emulated state the registrations of seen that are
// still there (core.Fold), in one store update, through the fencing when
// there is one, and waits for the fences. The victims are judged against the
// LUN as view shows it, not against the emulated state the fold leaves
// (docs/virtual-initiators.md §7): each evicted VM is fenced when the LUN
// refuses its host writes (a reservation is there and the host's key is not).
func (b *Backend) fold(ctx context.Context, lu string, fd int, view core.LUN, seen []pr.Registration) error {
	exec := func(st *pr.State) pr.Result {
		core.Fold(b.o.Profile, st, view, b.key, seen)
		return scsi.Result{Status: scsi.StatusGood}
	}
	refused := func(*pr.State, pr.Nexus) bool { return !view.MayWrite(b.key) }
	wait, err := b.mirror(ctx, lu, exec, refused)
	if err != nil {
		return fmt.Errorf("folding the loss of this host's key into the emulated state: %w", err)
	}
	if wait != nil {
		if err := b.o.Fencing.Fence(ctx, lu, fd, wait); err != nil {
			return fmt.Errorf("this host's key was preempted on the LUN; fencing its VMs: %w", err)
		}
	}
	return nil
}

// mirror applies exec, a change made on the real LUN by someone else, to lu's
// emulated state in one store update, attributed to the initiator external (a
// PREEMPT for the fencing): through the fencing's StepWhere with refused when
// there is a fencing (it returns what to wait for), through fence.Apply (the
// fence records kept) when there is none.
func (b *Backend) mirror(ctx context.Context, lu string, exec func(*pr.State) pr.Result, refused func(*pr.State, pr.Nexus) bool) (*fence.Wait, error) {
	cdb := scsi.PROutCDB(scsi.SAPreempt, 0, scsi.TypeWriteExclusive, scsi.PROutParamLen)
	var wait *fence.Wait
	err := b.o.Store.Update(ctx, b.o.StateKeyPrefix+lu, func(cur []byte) ([]byte, bool, error) {
		if b.o.Fencing != nil {
			next, changed, _, w, err := b.o.Fencing.StepWhere(cur, external, cdb[:], exec, refused)
			wait = w
			return next, changed, err
		}
		next, changed, _, err := fence.Apply(cur, exec)
		return next, changed, err
	})
	return wait, err
}

// hosts reads the host record of lu.
func (b *Backend) hosts(ctx context.Context, lu string) (hosts, error) {
	v, err := b.o.Store.Get(ctx, hostsKeyPrefix+lu)
	if err != nil {
		return hosts{}, fmt.Errorf("host record: %w", err)
	}
	return decodeHosts(v)
}

// setSeen records what this host has registered on lu's LUN (nil: nothing),
// writing only when that changed.
func (b *Backend) setSeen(ctx context.Context, lu string, seen []pr.Registration) error {
	same := func(h hosts) bool {
		return slices.EqualFunc(h.Seen[b.o.Host], seen, func(x, y pr.Registration) bool { return x.Key == y.Key && x.Nexus.Equal(y.Nexus) })
	}
	if h, err := b.hosts(ctx, lu); err == nil && same(h) {
		return nil
	}
	err := b.o.Store.Update(ctx, hostsKeyPrefix+lu, func(cur []byte) ([]byte, bool, error) {
		h, err := decodeHosts(cur)
		if err != nil || same(h) {
			return nil, false, err
		}
		if h.Seen == nil {
			h.Seen = map[string][]pr.Registration{}
		}
		if len(seen) == 0 {
			delete(h.Seen, b.o.Host)
		} else {
			h.Seen[b.o.Host] = seen
		}
		next, err := json.Marshal(h)
		return next, err == nil, err
	})
	if err != nil {
		return fmt.Errorf("recording this host's registrations on the LUN: %w", err)
	}
	return nil
}

// desired reads the emulated state and the host record of lu.
func (b *Backend) desired(ctx context.Context, lu string) (pr.State, core.Desired, map[string]uint64, func(pr.Nexus) (string, bool), error) {
	st, err := b.state(ctx, lu)
	if err != nil {
		return st, core.Desired{}, nil, nil, err
	}
	hv, err := b.o.Store.Get(ctx, hostsKeyPrefix+lu)
	if err != nil {
		return st, core.Desired{}, nil, nil, fmt.Errorf("host record: %w", err)
	}
	h, err := decodeHosts(hv)
	if err != nil {
		return st, core.Desired{}, nil, nil, err
	}
	keys := maps.Clone(h.Keys)
	keys[b.o.Host] = b.key
	hostOf := func(n pr.Nexus) (string, bool) {
		host, ok := h.VMs[fence.InitiatorName(n.Initiator)]
		return host, ok
	}
	return st, core.Desire(&st, hostOf), keys, hostOf, nil
}

// state reads lu's emulated state.
func (b *Backend) state(ctx context.Context, lu string) (pr.State, error) {
	var st pr.State
	v, err := b.o.Store.Get(ctx, b.o.StateKeyPrefix+lu)
	if err != nil {
		return st, fmt.Errorf("emulated state: %w", err)
	}
	stBytes, _, err := fence.Decode(v)
	if err != nil {
		return st, err
	}
	if stBytes != nil {
		if err := st.UnmarshalBinary(stBytes); err != nil {
			return st, err
		}
	}
	return st, nil
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

func (b *Backend) lu(lu string) *luState {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.lus[lu]
	if !ok {
		l = &luState{fd: -1}
		b.lus[lu] = l
	}
	return l
}
