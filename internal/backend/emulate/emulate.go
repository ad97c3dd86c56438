package emulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// keyPrefix namespaces the logical units' states in the store, so the store can
// later hold other records.
const keyPrefix = "lu/"

// Backend executes PR commands on emulated logical units.
type Backend struct {
	store   store.Store
	profile pr.Profile
	fencing Fencing
	locks   luLocks
}

// Fencing is a fencing policy's part in every command (package fence,
// docs/fencing.md). Step runs inside the store's read-modify-write with the
// stored value, and must be as pure as a store.UpdateFunc: it decodes cur,
// runs exec on the engine's state, records the fences the command requires
// with it, and returns the value to store and what to wait for (nil: nothing).
// Fence runs after the commit of a GOOD command with something to wait for,
// with the command's device descriptor, and returns nil only when every fence
// is confirmed: the command is answered GOOD only then.
type Fencing interface {
	Step(cur []byte, n pr.Nexus, cdb []byte, exec func(*pr.State) pr.Result) (next []byte, changed bool, res pr.Result, wait *fence.Wait, err error)
	Fence(ctx context.Context, lu string, fd int, wait *fence.Wait) error
}

// WithFencing makes every command of b go through f. Without it the stored
// value is the engine's state alone and nothing is fenced.
func (b *Backend) WithFencing(f Fencing) *Backend {
	b.fencing = f
	return b
}

// KeyPrefix is where the logical units' states are in the store.
const KeyPrefix = keyPrefix

var _ backend.Backend = (*Backend)(nil)

// New returns a backend keeping its state in st, answering as profile says
// (pr.LIO() for LIO-exact answers).
func New(st store.Store, profile pr.Profile) *Backend {
	return &Backend{store: st, profile: profile}
}

// Name returns "emulate".
func (b *Backend) Name() string { return "emulate" }

// Execute runs req against the state of req.LU as one store update: the engine
// reads the state, answers, and the new state is durable before the answer is
// returned.
func (b *Backend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if req.LU == "" {
		return scsi.CheckCondition(scsi.SenseTargetFailure), errors.New("emulate: no logical-unit identity for this device")
	}
	if req.Initiator == "" {
		err := req.IdentityErr
		if err == nil {
			err = errors.New("no initiator name")
		}
		return scsi.CheckCondition(scsi.SenseIOError), fmt.Errorf("emulate: initiator unknown: %w", err)
	}
	init, err := ParseInitiator(req.Initiator)
	if err != nil {
		return scsi.CheckCondition(scsi.SenseIOError), fmt.Errorf("emulate: %w", err)
	}
	port := req.TargetPort
	if port == 0 {
		port = 1
	}
	nexus := pr.Nexus{Initiator: init, RTPI: port}

	key := keyPrefix + req.LU
	// step is the command on the stored value cur: the value to store, whether
	// it changed, the answer and what to wait for. A pure function of cur.
	step := func(cur []byte) ([]byte, bool, pr.Result, *fence.Wait, error) {
		if b.fencing != nil {
			return b.fencing.Step(cur, nexus, req.CDB[:], func(st *pr.State) pr.Result {
				return pr.Execute(b.profile, st, nexus, req.CDB[:], req.Param)
			})
		}
		var st pr.State
		if cur != nil {
			if err := st.UnmarshalBinary(cur); err != nil {
				return nil, false, pr.Result{}, nil, err
			}
		}
		res := pr.Execute(b.profile, &st, nexus, req.CDB[:], req.Param)
		next, err := st.MarshalBinary()
		if err != nil {
			return nil, false, pr.Result{}, nil, err
		}
		return next, !bytes.Equal(next, cur), res, nil, nil
	}

	var res pr.Result
	var wait *fence.Wait
	answered := false
	unlock, err := b.locks.lock(ctx, key)
	if err == nil {
		defer unlock()
		// The command is computed on a snapshot read (no write lock: in WAL
		// mode a writer of another LU or process does not delay it), outside
		// the store's single writer, so that the decoding and encoding of a
		// large LU's state do not hold up other LUs' commands (issue 12). A PR
		// IN that changes nothing (no unit attention to report) is answered
		// from it: the answer of the command at the moment of the read. Any
		// other command commits its result in the store's read-modify-write if
		// the state is still the snapshot, and is computed again there if not
		// (another process changed it).
		var pre struct {
			next    []byte
			changed bool
			res     pr.Result
			wait    *fence.Wait
			err     error
		}
		snap, gerr := b.store.Get(ctx, key)
		if gerr == nil {
			pre.next, pre.changed, pre.res, pre.wait, pre.err = step(snap)
			if req.CDB[0] == scsi.OpPersistentReserveIn && pre.err == nil && !pre.changed && pre.wait == nil {
				res, answered = pre.res, true
			}
		}
		if !answered {
			err = b.store.Update(ctx, key, func(cur []byte) ([]byte, bool, error) {
				if gerr == nil && (cur == nil) == (snap == nil) && bytes.Equal(cur, snap) {
					res, wait = pre.res, pre.wait
					return pre.next, pre.changed, pre.err
				}
				next, changed, r, w, err := step(cur)
				res, wait = r, w
				return next, changed, err
			})
		}
	}
	if err != nil {
		// A busy, full or read-only store is transient: ABORTED COMMAND, I/O
		// PROCESS TERMINATED makes guests retry. A state that cannot be read,
		// or a database removed under the helper, is not: HARDWARE ERROR, and
		// nothing is changed (docs/store-faults.md §2).
		sense := scsi.SenseTargetFailure
		if transient(err) {
			sense = scsi.SenseIOError
		}
		return scsi.CheckCondition(sense), fmt.Errorf("emulate: state of %s: %w", req.LU, err)
	}
	if wait != nil && res.Status == scsi.StatusGood {
		// The eviction is committed; GOOD only once its victims are fenced.
		// Otherwise HARDWARE ERROR / INTERNAL TARGET FAILURE: not retried by
		// the initiator's midlayer, and reported as a failed fence by
		// fence_scsi (docs/fencing.md, "When a fence fails").
		if err := b.fencing.Fence(ctx, req.LU, req.FD, wait); err != nil {
			return scsi.CheckCondition(scsi.SenseTargetFailure), fmt.Errorf("emulate: %s from %s on %s: committed, but %w",
				scsi.CommandName(req.CDB[:]), nexus, req.LU, err)
		}
	}
	if res.Status != scsi.StatusGood {
		return res, fmt.Errorf("emulate: %s from %s on %s: %s", scsi.CommandName(req.CDB[:]), nexus, req.LU, res)
	}
	return res, nil
}

// transient reports the store faults a retry can outlast.
func transient(err error) bool {
	for _, e := range []error{store.ErrBusy, store.ErrFull, store.ErrReadOnly, context.DeadlineExceeded, context.Canceled} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ParseInitiator turns an initiator name into the engine's initiator port:
// naa.<16 hex digits> is a SAS address (as LIO's tcm_loop and SAS fabrics name
// initiator ports); anything else is an iSCSI name, lower-cased as RFC 3722
// normalises them, optionally followed by ",i,0x<ISID>" for one port of it.
func ParseInitiator(name string) (pr.Initiator, error) {
	if name == "" {
		return pr.Initiator{}, errors.New("empty initiator name")
	}
	if hex, ok := strings.CutPrefix(strings.ToLower(name), "naa."); ok && len(hex) == 16 {
		addr, err := strconv.ParseUint(hex, 16, 64)
		if err != nil {
			return pr.Initiator{}, fmt.Errorf("initiator %q: bad NAA address: %w", name, err)
		}
		return pr.SASInitiator(addr), nil
	}
	n, isid, _ := strings.Cut(strings.ToLower(name), ",i,0x")
	if n == "" || len(n) > 223 {
		return pr.Initiator{}, fmt.Errorf("initiator %q: an iSCSI name is 1 to 223 bytes", name)
	}
	if isid != "" {
		if len(isid) != 12 {
			return pr.Initiator{}, fmt.Errorf("initiator %q: ISID must be 12 hex digits", name)
		}
		if _, err := strconv.ParseUint(isid, 16, 64); err != nil {
			return pr.Initiator{}, fmt.Errorf("initiator %q: bad ISID: %w", name, err)
		}
	}
	return pr.ISCSIInitiator(n, isid), nil
}
