package emulate

import (
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
	queues  luQueues
	runRegs int // registrations per part in rows (lurows.go); 0: partRegs
	// wholeMax is the largest state kept whole on a store that keeps
	// parts (lurows.go); 0: partWholeMax, negative: none.
	wholeMax int
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
	// StepAll is Step for several commands in order, decoding and encoding
	// the value once: what Step gives run one command at a time, each on the
	// value the one before returned (a unit's batch, lucommit.go).
	StepAll(cur []byte, cmds []fence.Command) (next []byte, changed bool, res []pr.Result, waits []*fence.Wait, err error)
	Fence(ctx context.Context, lu string, fd int, wait *fence.Wait) error
}

// plainFencing is implemented by a Fencing that may report that it adds
// nothing to a command on a value without fence records
// (fence.Coordinator.PlainWithoutRecords): such a unit may be kept in rows
// (lurows.go).
type plainFencing interface{ PlainWithoutRecords() bool }

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

// Execute runs req against the state of req.LU in a store update, with the
// commands of the unit queued beside it (lucommit.go): the engine reads the
// state, answers, and the new state is durable before the answer is returned.
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
	var res pr.Result
	var wait *fence.Wait
	answered := false
	if req.CDB[0] == scsi.OpPersistentReserveIn {
		// A PR IN that changes nothing (no unit attention to report) is
		// answered from a snapshot read of the committed state, without
		// waiting for the unit's queued writes (in WAL mode not even for
		// another process's writer): the answer of the command at the moment
		// of the read, which follows every command already answered GOOD,
		// since those were committed first (docs/performance.md §5).
		snap, gerr := b.store.Get(ctx, key)
		if gerr == nil && snap != nil && b.fencing == nil {
			// A PR IN changes the state only by taking a pending unit
			// attention (pr.State.reportUA): with none pending it is
			// answered without encoding the state again to compare.
			var st pr.State
			if st.UnmarshalBinary(snap) == nil && len(st.UnitAttentions) == 0 {
				res, answered = pr.Execute(b.profile, &st, nexus, req.CDB[:], req.Param), true
			}
		}
		if gerr == nil && !answered {
			_, changed, r, w, serr := b.step(snap, nexus, req)
			if serr == nil && !changed && w == nil {
				res, answered = r, true
			}
		}
	}
	if !answered {
		// Every other command goes through the unit's queue: run in
		// arrival order with the commands queued beside it, committed with
		// them in one store update, answered once that is durable
		// (lucommit.go).
		c := &luCommand{Pending: store.NewPending(), ctx: ctx, nexus: nexus, cdb: req.CDB[:], param: req.Param}
		if err = b.submit(ctx, key, c); err == nil {
			res, wait = c.res, c.wait
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

// step is one command on the stored value cur alone: the value to store,
// whether it changed, the answer and what to wait for. A pure function of cur.
func (b *Backend) step(cur []byte, nexus pr.Nexus, req *backend.Request) ([]byte, bool, pr.Result, *fence.Wait, error) {
	r := b.runValue(cur, []*luCommand{{nexus: nexus, cdb: req.CDB[:], param: req.Param}})
	if r.err != nil {
		return nil, false, pr.Result{}, nil, r.err
	}
	return r.next, r.changed, r.res[0], r.waits[0], nil
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
