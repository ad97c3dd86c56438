package fence

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// Defaults of Options.
const (
	DefaultTimeout = 10 * time.Second
	DefaultPoll    = 50 * time.Millisecond
	DefaultSweep   = time.Second
)

// helperPrefix is where helpers announce the initiators they serve.
const helperPrefix = "fence/helper/"

// ErrNotConfirmed is returned (wrapped) when an eviction's fences were not all
// confirmed: a policy failed, or the timeout passed.
var ErrNotConfirmed = errors.New("fence not confirmed")

// Options configure a Coordinator.
type Options struct {
	// Store holds the logical units' states (under KeyPrefix) and the helpers'
	// announcements; every helper that may serve a VM sharing a logical unit
	// must use the same store.
	Store     store.Store
	KeyPrefix string
	Profile   pr.Profile
	// Policy fences this helper's processes of a victim; nil is --fence=none:
	// nothing is fenced and no fence is recorded, but fences other helpers
	// recorded are still waited for.
	Policy   Policy
	Registry *Registry
	// Timeout bounds the wait for every fence of one command (DefaultTimeout).
	Timeout time.Duration
	// Poll is how often the store is read for records and confirmations
	// (DefaultPoll); on a store that can watch (store.Watcher) it is read when
	// a logical unit changed instead.
	Poll time.Duration
	// Sweep is how often every value is read and stale records and
	// announcements removed even when nothing changed (DefaultSweep).
	Sweep time.Duration
	// HelperID names this helper in records and announcements; default
	// SelfID(). Alive reports whether a helper named by an ID is still running
	// (default: ProcessAlive, a process on this host); a helper that is not
	// alive is not waited for. Across hosts (etcd) both come from the store's
	// session and lease instead.
	HelperID string
	Alive    func(id string) bool
	// Members, when set, replaces HelperID and Alive and the announcements in
	// the store: helpers across hosts, alive while their etcd lease is
	// (docs/fencing.md, "Across hosts").
	Members Members
	Log     *slog.Logger
	Now     func() time.Time
	// OnFence, when set, is told each fence this helper's policy carried out
	// (err nil: fenced), and OnWait each evicting command's wait for its
	// fences (err nil: every fence confirmed), with how long they took
	// (metrics). Both must return at once.
	OnFence func(err error, took time.Duration)
	OnWait  func(err error, took time.Duration)
}

// Coordinator records the fences an eviction needs, carries out this helper's
// part and waits for the other helpers' confirmations through the store. It
// implements the emulate backend's Fencing hook.
type Coordinator struct {
	o Options

	mu       sync.Mutex
	inflight map[string]chan struct{} // record ID -> closed when this helper's attempt ends
	lastTry  map[string]time.Time     // record ID -> last failed attempt
	// confirmed: record ID -> when this helper recorded its fence of it, so
	// that a scan that read the record before the confirmation does not fence
	// again (an exec: agent would run twice).
	confirmed map[string]time.Time

	firstSeen map[string]time.Time // record ID -> when this helper first saw it (Members)

	annMu       sync.Mutex
	announced   uint64 // registry version last announced; guarded by annMu
	announcedAs string // helper ID it was announced under; guarded by annMu

	regMu      sync.Mutex
	registered map[string]bool      // initiators registered, as the last scan read them (Members)
	recent     map[string]time.Time // initiators registered by commands through this helper -> when noted
}

// New returns a coordinator; Run must run for other helpers' records to be
// seen and for this helper to be announced.
func New(o Options) *Coordinator {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Sweep <= 0 {
		o.Sweep = DefaultSweep
	}
	if o.HelperID == "" && o.Members == nil {
		o.HelperID = SelfID()
	}
	if o.Alive == nil {
		o.Alive = ProcessAlive
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registry == nil {
		o.Registry = NewRegistry()
	}
	return &Coordinator{o: o, inflight: make(map[string]chan struct{}), lastTry: make(map[string]time.Time), announced: ^uint64(0),
		confirmed: make(map[string]time.Time),
		firstSeen: make(map[string]time.Time), registered: make(map[string]bool), recent: make(map[string]time.Time)}
}

// Track registers a new connection of initiator (Registry.Track) and announces
// it in the store before returning, so that the connection's VM cannot send a
// command, and so be registered and evicted, before the other helpers know
// that this helper serves it. An ended connection is announced by Run.
func (c *Coordinator) Track(initiator string, conn *net.UnixConn) (func(), error) {
	return c.tracked(c.o.Registry.Track(initiator, conn))
}

// TrackPID is Track for a known pid (Registry.TrackPID).
func (c *Coordinator) TrackPID(initiator string, pid int) (func(), error) {
	return c.tracked(c.o.Registry.TrackPID(initiator, pid))
}

// Across hosts (Members) a connection that could not be announced is refused
// (the error wraps ErrNotAnnounced): another host's helper would not wait for
// this one's fence of it.
func (c *Coordinator) tracked(release func(), err error) (func(), error) {
	if err != nil {
		return release, err
	}
	if err := c.sync(context.Background()); err != nil {
		if c.o.Members != nil {
			return release, fmt.Errorf("%w: %v", ErrNotAnnounced, err)
		}
		c.o.Log.Warn("fence: announcement not written", "err", err)
	}
	return release, nil
}

// ErrNotAnnounced is returned (wrapped) by Track when, across hosts, the
// connection's VM could not be announced under this helper's lease: the
// connection must not be served.
var ErrNotAnnounced = errors.New("VM not announced in the store")

// sync writes this helper's announcement if the registry changed since.
func (c *Coordinator) sync(ctx context.Context) error {
	c.annMu.Lock()
	defer c.annMu.Unlock()
	serves, v := c.o.Registry.served()
	id := c.id()
	if v == c.announced && id == c.announcedAs {
		return nil
	}
	if err := c.announce(ctx, serves); err != nil {
		return err
	}
	c.announced, c.announcedAs = v, id
	return nil
}

// HelperID returns the name of this helper in records.
func (c *Coordinator) HelperID() string { return c.id() }

// Wait is what a command must wait for after its commit: the IDs of the fence
// records pending on its logical unit.
type Wait struct {
	IDs []string
}

// Command is one command of a batch StepAll runs: its nexus, its CDB and
// exec, which runs it on the engine's state.
type Command struct {
	Nexus pr.Nexus
	CDB   []byte
	Exec  func(*pr.State) pr.Result
}

// Step runs one command inside the store's read-modify-write of the logical
// unit (it is a store.UpdateFunc's body: no I/O): StepAll with one command.
func (c *Coordinator) Step(cur []byte, n pr.Nexus, cdb []byte, exec func(*pr.State) pr.Result) (next []byte, changed bool, res pr.Result, wait *Wait, err error) {
	return c.StepWhere(cur, n, cdb, exec, nil)
}

// StepWhere is Step with the victims' rights judged by refused (EvictedWhere)
// instead of the access table of the state exec leaves; nil means that table.
// It is for a change exec only mirrors from real storage the engine does not
// stand for: the loss of a host's key on a real LUN, whose rights the LUN
// decides (docs/virtual-initiators.md §7).
func (c *Coordinator) StepWhere(cur []byte, n pr.Nexus, cdb []byte, exec func(*pr.State) pr.Result, refused func(after *pr.State, v pr.Nexus) bool) (next []byte, changed bool, res pr.Result, wait *Wait, err error) {
	next, changed, rs, ws, err := c.stepAll(cur, []Command{{Nexus: n, CDB: cdb, Exec: exec}}, refused)
	if err != nil {
		return nil, false, res, nil, err
	}
	return next, changed, rs[0], ws[0], nil
}

// PlainWithoutRecords reports that c adds nothing to a command on a value
// that holds no fence records: no policy (--fence=none), so no command of
// this helper creates a record, and no members (no registrations noted for a
// self-fence). A value with records written by another helper still goes
// through StepAll (its records are kept and waited for); one without can be
// changed by the engine alone (docs/performance.md §5.7.6).
func (c *Coordinator) PlainWithoutRecords() bool {
	return c.o.Policy == nil && c.o.Members == nil
}

// StepAll runs cmds in order inside the store's read-modify-write of the
// logical unit (it is a store.UpdateFunc's body: no I/O). It decodes cur once,
// runs each command's Exec on the engine's state, records a fence for every
// initiator a command evicted (Evicted, under a policy), and returns the value
// to store, encoded once (docs/performance.md §5). For a GOOD PR OUT the
// command's Wait lists every record pending on the logical unit at that
// point, the new ones and those of earlier evictions: no PR OUT is
// acknowledged while an eviction on its logical unit is not confirmed
// (docs/fencing.md). The answers and the value are those of the commands run
// one at a time, each on the value the one before stored.
func (c *Coordinator) StepAll(cur []byte, cmds []Command) (next []byte, changed bool, res []pr.Result, waits []*Wait, err error) {
	return c.stepAll(cur, cmds, nil)
}

// stepAll is StepAll with the victims' rights judged by refused (StepWhere).
func (c *Coordinator) stepAll(cur []byte, cmds []Command, refused func(after *pr.State, v pr.Nexus) bool) (next []byte, changed bool, res []pr.Result, waits []*Wait, err error) {
	if refused == nil {
		refused = func(after *pr.State, v pr.Nexus) bool { return !MayWrite(c.o.Profile, after, v) }
	}
	res = make([]pr.Result, len(cmds))
	waits = make([]*Wait, len(cmds))
	next, changed, err = applyStored(cur, func(st *pr.State, pending []Record) []Record {
		// Per command only what the command needs: the state before it is
		// copied (a deep copy, growing with the registrations) only for
		// a command that can evict, and the registered initiators are noted
		// once, from the state the batch commits (docs/performance.md §5).
		defer c.noteRegistered(st)
		for i, cmd := range cmds {
			prOut := len(cmd.CDB) > 0 && cmd.CDB[0] == scsi.OpPersistentReserveOut
			evicts := prOut && c.o.Policy != nil && mayEvict(cmd.CDB)
			var before pr.State
			if evicts {
				before = st.Clone() // only EvictedWhere reads it
			}
			res[i] = cmd.Exec(st)
			if res[i].Status != scsi.StatusGood || !prOut {
				continue
			}
			if evicts {
				now := c.o.Now().UnixNano()
				evictor := InitiatorName(cmd.Nexus.Initiator)
				for _, v := range EvictedWhere(&before, st, cmd.Nexus, func(v pr.Nexus) bool { return refused(st, v) }) {
					name := InitiatorName(v.Initiator)
					if slices.ContainsFunc(pending, func(r Record) bool { return r.Victim == name && r.Created == now }) {
						continue // two nexuses of one initiator: one fence
					}
					pending = append(pending, Record{
						ID:     fmt.Sprintf("%s/%d/%s", c.id(), now, name),
						Victim: name, Evictor: evictor, Created: now,
					})
				}
			}
			if len(pending) > 0 {
				w := &Wait{}
				for _, r := range pending {
					w.IDs = append(w.IDs, r.ID)
				}
				waits[i] = w
			}
		}
		return pending
	})
	if err != nil {
		return nil, false, nil, nil, err
	}
	return next, changed, res, waits, nil
}

// Apply runs exec on the engine's state in the stored value cur (Decode) and
// returns the value to store (Encode), with the fence records cur holds kept
// as they are: the read-modify-write of a change made without a coordinator
// (docs/fencing.md, "Order": the records outlive a helper without fencing).
func Apply(cur []byte, exec func(*pr.State) pr.Result) (next []byte, changed bool, res pr.Result, err error) {
	next, changed, err = applyStored(cur, func(st *pr.State, pending []Record) []Record {
		res = exec(st)
		return pending
	})
	return next, changed, res, err
}

// applyStored decodes cur, runs f on its state and records, and encodes what f
// leaves; changed reports whether the value differs from cur.
func applyStored(cur []byte, f func(st *pr.State, pending []Record) []Record) (next []byte, changed bool, err error) {
	stBytes, pending, err := Decode(cur)
	if err != nil {
		return nil, false, err
	}
	var st pr.State
	if stBytes != nil {
		if err := st.UnmarshalBinary(stBytes); err != nil {
			return nil, false, err
		}
	}
	pending = f(&st, pending)
	nextState, err := st.MarshalBinary()
	if err != nil {
		return nil, false, err
	}
	next, err = Encode(nextState, pending)
	if err != nil {
		return nil, false, err
	}
	return next, !bytes.Equal(next, cur), nil
}

// Fence carries out this helper's part of the fences w lists on logical unit
// lu (store key KeyPrefix+lu), then waits until every helper that serves a
// victim has confirmed, at most Timeout. It returns nil only when every record
// is confirmed; confirmed records are then removed from the store. On failure
// the records stay: helpers keep retrying them, and later PR OUT commands on
// the logical unit wait for them.
//
// fd, the evicting command's descriptor of the logical unit (-1: none), is
// flushed (fdatasync) once the fences are confirmed: a killed QEMU that wrote
// through the host's page cache (cache=writeback) leaves dirty pages that the
// kernel would write back later, after GOOD, over what the evictor writes then.
// The page cache of a file or block device is shared by all its descriptors,
// so flushing the evictor's writes the victim's pages back before the answer.
func (c *Coordinator) Fence(ctx context.Context, lu string, fd int, w *Wait) error {
	if w == nil || len(w.IDs) == 0 {
		return nil
	}
	start := c.o.Now()
	err := c.fence(ctx, lu, fd, w)
	if c.o.OnWait != nil {
		c.o.OnWait(err, c.o.Now().Sub(start))
	}
	return err
}

func (c *Coordinator) fence(ctx context.Context, lu string, fd int, w *Wait) error {
	// The policies run under the deadline; the store is read and written
	// outside it, so that the answer says what was waited for.
	fctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	ctx = context.WithoutCancel(ctx)
	key := c.o.KeyPrefix + lu
	c.o.Log.Info("committed; fencing before the answer", "lu", lu, "records", w.IDs)
	waitedFor := map[string]bool{} // helpers whose confirmation was missing (Members: logged when their lease expires)
	for {
		recs, err := c.records(ctx, key)
		if err != nil {
			return fmt.Errorf("%w: read records of %s: %v", ErrNotConfirmed, lu, err)
		}
		var open []Record
		for _, r := range recs {
			if slices.Contains(w.IDs, r.ID) {
				open = append(open, r)
			}
		}
		// This helper's own part first: fence the victims it serves.
		var helpers map[string]announcement
		for _, r := range open {
			c.seen(r)
			if !r.doneBy(c.id()) && fctx.Err() == nil {
				if helpers == nil {
					if helpers, err = c.helpers(ctx); err != nil {
						return fmt.Errorf("%w: read helpers: %v", ErrNotConfirmed, err)
					}
				}
				c.fenceLocal(fctx, lu, r, helpers)
			}
		}
		if len(open) > 0 {
			if recs, err = c.records(ctx, key); err != nil {
				return fmt.Errorf("%w: read records of %s: %v", ErrNotConfirmed, lu, err)
			}
		}
		if helpers, err = c.helpers(ctx); err != nil {
			return fmt.Errorf("%w: read helpers: %v", ErrNotConfirmed, err)
		}
		var waiting []string
		var failed []string
		var complete []string
		if c.o.Members != nil {
			for h := range waitedFor {
				if _, ok := helpers[h]; !ok {
					c.o.Log.Warn("helper's lease expired: its VMs count as fenced (it fenced them itself before the expiry)", "lu", lu, "helper", h)
					delete(waitedFor, h)
				}
			}
		}
		for _, r := range recs {
			if !slices.Contains(w.IDs, r.ID) {
				continue
			}
			missing, fails := c.status(r, helpers)
			for _, h := range missing {
				waitedFor[h] = true
			}
			switch {
			case len(missing) == 0:
				complete = append(complete, r.ID)
			case len(fails) > 0:
				failed = append(failed, fmt.Sprintf("%s: %s", r.Victim, strings.Join(fails, "; ")))
			default:
				waiting = append(waiting, fmt.Sprintf("%s (helpers %s)", r.Victim, strings.Join(missing, ", ")))
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("%w: %s", ErrNotConfirmed, strings.Join(failed, "; "))
		}
		if len(waiting) == 0 {
			c.o.Log.Info("fences confirmed", "lu", lu, "records", complete)
			if fd >= 0 {
				if err := unix.Fdatasync(fd); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EROFS) {
					return fmt.Errorf("%w: fenced, but flushing %s's cached writes failed: %v", ErrNotConfirmed, lu, err)
				}
			}
			if len(complete) > 0 {
				if err := c.remove(context.WithoutCancel(ctx), key, complete); err != nil {
					c.o.Log.Warn("fence: confirmed records not removed", "lu", lu, "err", err)
				}
			}
			return nil
		}
		select {
		case <-fctx.Done():
			return fmt.Errorf("%w within %s: waiting for %s", ErrNotConfirmed, c.o.Timeout, strings.Join(waiting, ", "))
		case <-time.After(c.o.Poll):
		}
	}
}

// announcement is a helper's record of the initiators it serves: for each, the
// time its earliest live connection was accepted (Unix nanoseconds).
type announcement struct {
	Serves map[string]int64 `json:"serves"`
}

// status returns the helpers whose confirmation of r is missing, and the
// failures they reported. A helper must confirm when it is alive and served
// the victim through a connection accepted before the eviction; the helper
// that recorded r must confirm while it is alive (it runs an exec: agent for
// a victim nobody serves).
func (c *Coordinator) status(r Record, helpers map[string]announcement) (missing, fails []string) {
	need := func(h string) {
		if r.doneBy(h) || slices.Contains(missing, h) {
			return
		}
		missing = append(missing, h)
		if e, ok := r.Failed[h]; ok {
			fails = append(fails, h+": "+e)
		}
	}
	for h, a := range helpers {
		if c.servedBefore(a, r) && c.alive(h, helpers) {
			need(h)
		}
	}
	if owner := ownerOf(r); c.alive(owner, helpers) {
		need(owner)
	}
	slices.Sort(missing)
	return missing, fails
}

func ownerOf(r Record) string {
	// ID is "<helper>/<created>/<victim>"; helper IDs have no '/'.
	h, _, _ := strings.Cut(r.ID, "/")
	return h
}

// fenceLocal fences the processes of r.Victim this helper serves (and, for an
// exec: policy, runs the agent once for a victim no live helper serves, when
// this helper recorded r), then records the outcome in the store. Concurrent
// calls for one record share one attempt.
//
// With helpers (the announcements, read by the evictor's Fence), a record that
// this helper's confirmation completes is removed at once instead of being
// marked: one store write less before the answer.
func (c *Coordinator) fenceLocal(ctx context.Context, lu string, r Record, helpers map[string]announcement) {
	c.mu.Lock()
	if _, done := c.confirmed[r.ID]; done {
		c.mu.Unlock()
		return
	}
	if ch, ok := c.inflight[r.ID]; ok {
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return
	}
	ch := make(chan struct{})
	c.inflight[r.ID] = ch
	c.mu.Unlock()
	c.fenceClaimed(ctx, lu, r, helpers, ch)
}

// claim starts an attempt on r for a scan, when one is due (retryDue) and r
// is not confirmed or in progress; the attempt is fenceClaimed with ch.
func (c *Coordinator) claim(r Record) (chan struct{}, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, done := c.confirmed[r.ID]; done {
		return nil, false
	}
	if _, busy := c.inflight[r.ID]; busy {
		return nil, false
	}
	if t, failed := c.lastTry[r.ID]; failed && c.o.Now().Sub(t) < c.o.Timeout {
		return nil, false
	}
	ch := make(chan struct{})
	c.inflight[r.ID] = ch
	return ch, true
}

// fenceClaimed is fenceLocal's attempt, once this helper claimed r (ch in
// inflight).
func (c *Coordinator) fenceClaimed(ctx context.Context, lu string, r Record, helpers map[string]announcement, ch chan struct{}) {
	defer func() {
		c.mu.Lock()
		delete(c.inflight, r.ID)
		c.mu.Unlock()
		close(ch)
	}()

	var err error
	procs := c.o.Registry.procs(r.Victim, c.procsBefore(r))
	switch {
	case c.o.Policy == nil:
		closeProcs(procs)
		if len(procs) > 0 {
			err = errors.New("this helper serves the victim and runs with --fence=none")
		}
	default:
		run := len(procs) > 0
		if !run && ownerOf(r) == c.id() {
			if _, ok := c.o.Policy.(Exec); ok {
				run = !c.servedElsewhere(ctx, r)
			}
		}
		if run {
			start := c.o.Now()
			err = c.o.Policy.Fence(ctx, Target{Victim: r.Victim, Evictor: r.Evictor, LU: lu, Procs: procs})
			pids := make([]int, len(procs))
			for i, p := range procs {
				pids[i] = p.PID
			}
			if c.o.OnFence != nil {
				c.o.OnFence(err, c.o.Now().Sub(start))
			}
			if err != nil {
				c.o.Log.Error("fence failed", "victim", r.Victim, "lu", lu, "policy", c.o.Policy.String(), "pids", pids, "err", err)
			} else {
				c.o.Log.Warn("fenced", "victim", r.Victim, "lu", lu, "evictor", r.Evictor, "policy", c.o.Policy.String(), "pids", pids,
					"took", c.o.Now().Sub(start))
			}
		}
		closeProcs(procs)
	}
	c.mu.Lock()
	if err != nil {
		c.lastTry[r.ID] = c.o.Now()
	} else {
		delete(c.lastTry, r.ID)
		delete(c.firstSeen, r.ID)
	}
	c.mu.Unlock()
	self := c.id()
	uerr := c.o.Store.Update(context.WithoutCancel(ctx), c.o.KeyPrefix+lu, func(cur []byte) ([]byte, bool, error) {
		st, pending, err2 := Decode(cur)
		if err2 != nil {
			return nil, false, err2
		}
		i := slices.IndexFunc(pending, func(p Record) bool { return p.ID == r.ID })
		if i < 0 {
			return nil, false, nil // removed meanwhile: nothing to confirm
		}
		p := &pending[i]
		if err == nil && helpers != nil {
			done := *p
			done.Done = append(slices.Clone(p.Done), self)
			if missing, _ := c.status(done, helpers); len(missing) == 0 {
				next, err2 := Encode(st, slices.Delete(slices.Clone(pending), i, i+1))
				return next, err2 == nil, err2
			}
		}
		if err != nil {
			if p.Failed == nil {
				p.Failed = map[string]string{}
			}
			p.Failed[self] = err.Error()
		} else {
			delete(p.Failed, self)
			if len(p.Failed) == 0 {
				p.Failed = nil
			}
			if !p.doneBy(self) {
				p.Done = append(p.Done, self)
			}
		}
		next, err2 := Encode(st, pending)
		return next, err2 == nil, err2
	})
	if uerr != nil {
		c.o.Log.Error("fence outcome not recorded", "victim", r.Victim, "lu", lu, "err", uerr)
	} else if err == nil {
		c.mu.Lock()
		c.confirmed[r.ID] = c.o.Now()
		c.mu.Unlock()
	}
}

// servedElsewhere reports whether a live helper other than this one serves
// r.Victim through a connection older than r.
func (c *Coordinator) servedElsewhere(ctx context.Context, r Record) bool {
	hs, err := c.helpers(ctx)
	if err != nil {
		return true // unknown: leave it to the helpers (the wait will say)
	}
	for h, a := range hs {
		if h != c.id() && c.servedBefore(a, r) && c.alive(h, hs) {
			return true
		}
	}
	return false
}

// records returns the fence records kept with the state at key.
func (c *Coordinator) records(ctx context.Context, key string) ([]Record, error) {
	v, err := c.o.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	_, pending, err := Decode(v)
	return pending, err
}

// remove deletes the records ids from the state at key.
func (c *Coordinator) remove(ctx context.Context, key string, ids []string) error {
	return c.o.Store.Update(ctx, key, func(cur []byte) ([]byte, bool, error) {
		st, pending, err := Decode(cur)
		if err != nil {
			return nil, false, err
		}
		kept := slices.DeleteFunc(slices.Clone(pending), func(r Record) bool { return slices.Contains(ids, r.ID) })
		if len(kept) == len(pending) {
			return nil, false, nil
		}
		next, err := Encode(st, kept)
		return next, err == nil, err
	})
}

// helpers reads every helper's announcement.
func (c *Coordinator) helpers(ctx context.Context) (map[string]announcement, error) {
	if c.o.Members != nil {
		list, err := c.o.Members.List(ctx)
		if err != nil {
			return nil, err
		}
		out := make(map[string]announcement, len(list))
		for id, v := range list {
			var a announcement
			if json.Unmarshal(v, &a) == nil {
				out[id] = a
			} else {
				out[id] = announcement{} // alive, serving nothing known
			}
		}
		return out, nil
	}
	entries, err := c.o.Store.List(ctx, helperPrefix) // one read, not one per helper
	if err != nil {
		return nil, err
	}
	out := make(map[string]announcement, len(entries))
	for _, e := range entries {
		var a announcement
		if json.Unmarshal(e.Value, &a) != nil {
			continue
		}
		out[strings.TrimPrefix(e.Key, helperPrefix)] = a
	}
	return out, nil
}

// announce writes this helper's announcement (nil serves: remove it).
func (c *Coordinator) announce(ctx context.Context, serves map[string]int64) error {
	if c.o.Members != nil {
		v, err := announcementValue(serves)
		if err != nil {
			return err
		}
		return c.o.Members.Announce(ctx, v)
	}
	var v []byte
	if serves != nil {
		b, err := json.Marshal(announcement{Serves: serves})
		if err != nil {
			return err
		}
		v = b
	}
	return c.o.Store.Update(ctx, helperPrefix+c.o.HelperID, func(cur []byte) ([]byte, bool, error) {
		if bytes.Equal(cur, v) {
			return nil, false, nil
		}
		return v, true, nil
	})
}

// Run announces this helper's initiators and watches the store until ctx
// ends: every Poll it fences the victims of other helpers' records that this
// helper serves and confirms them, retries its failed fences once per
// Timeout, removes records nobody waits for any more, and removes the
// announcements of helpers that are gone. On return the announcement is
// removed.
func (c *Coordinator) Run(ctx context.Context) error {
	defer func() {
		if c.o.Members != nil {
			return // the lease expires by itself (etcdlease.Session.Run)
		}
		if err := c.announce(context.WithoutCancel(ctx), nil); err != nil {
			c.o.Log.Warn("fence: announcement not removed", "err", err)
		}
	}()
	tick := time.NewTicker(c.o.Poll)
	defer tick.Stop()
	// A store that can watch (etcd) wakes the scan when a logical unit's
	// value changes; the others are read every Poll while this helper serves
	// a VM. Either way every value is read every Sweep (a second), so a
	// watch that missed a change would cost a second, not a fence.
	var changes <-chan struct{}
	if w, ok := c.o.Store.(store.Watcher); ok {
		changes = w.Watch(ctx, c.o.KeyPrefix)
	}
	changed := false
	lastSweep := time.Time{}
	for {
		if err := c.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.o.Log.Warn("fence: announcement not written", "err", err)
		}
		serves, _ := c.o.Registry.served()
		sweep := c.o.Now().Sub(lastSweep) >= c.o.Sweep
		if (len(serves) > 0 && (changes == nil || changed)) || sweep {
			changed = false
			if err := c.scan(ctx, serves, sweep); err != nil && ctx.Err() == nil {
				c.o.Log.Warn("fence: scan of the store failed", "err", err)
				changed = true // read again at the next tick
			}
			if sweep {
				lastSweep = c.o.Now()
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case _, ok := <-changes:
			if !ok { // the store closed: poll what is left
				changes = nil
			}
			changed = true
		}
	}
}

// scan looks at every logical unit's records: fences the victims this helper
// serves and has not confirmed; with sweep, also removes complete records
// older than twice the timeout (their evictor is gone) and announcements of
// helpers that are not alive.
func (c *Coordinator) scan(ctx context.Context, serves map[string]int64, sweep bool) error {
	start := c.o.Now()
	entries, err := c.o.Store.List(ctx, "") // one snapshot: one range read in etcd
	if err != nil {
		return err
	}
	regs := map[string]bool{}
	var helpers map[string]announcement
	for _, e := range entries {
		k, v := e.Key, e.Value
		if sweep && c.o.Members == nil {
			if id, ok := strings.CutPrefix(k, helperPrefix); ok && id != c.o.HelperID && !c.o.Alive(id) {
				c.o.Store.Update(ctx, k, func([]byte) ([]byte, bool, error) { return nil, true, nil })
			}
		}
		lu, ok := strings.CutPrefix(k, c.o.KeyPrefix)
		if !ok {
			continue
		}
		if c.o.Members != nil {
			in, err := registeredIn(v)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			for _, i := range in {
				regs[i] = true
			}
		}
		_, recs, err := Decode(v)
		if err != nil || len(recs) == 0 {
			continue
		}
		var stale []string
		for _, r := range recs {
			if _, ok := serves[r.Victim]; ok && !r.doneBy(c.id()) {
				if ch, ok := c.claim(r); ok {
					c.seen(r)
					go c.fenceClaimed(context.WithoutCancel(ctx), lu, r, nil, ch)
				}
			}
			if sweep && c.o.Now().Sub(time.Unix(0, r.Created)) > 2*c.o.Timeout {
				if helpers == nil {
					if helpers, err = c.helpers(ctx); err != nil {
						return err
					}
				}
				if missing, _ := c.status(r, helpers); len(missing) == 0 {
					stale = append(stale, r.ID)
				}
			}
		}
		if len(stale) > 0 {
			if err := c.remove(ctx, k, stale); err != nil {
				return err
			}
		}
	}
	if c.o.Members != nil {
		c.scanned(start, regs)
	}
	if sweep {
		c.forget()
	}
	return nil
}

// forget drops what this helper remembers of records confirmed long ago.
func (c *Coordinator) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, t := range c.confirmed {
		if c.o.Now().Sub(t) > 4*c.o.Timeout {
			delete(c.confirmed, id)
		}
	}
}

// mayEvict reports whether the PR OUT CDB cdb can remove the registration of
// an initiator other than its sender's, the only change Evicted reports:
// PREEMPT, PREEMPT AND ABORT, CLEAR, REGISTER AND MOVE and any service action
// not listed below. REGISTER and REGISTER AND IGNORE EXISTING KEY add a
// registration, change the sender's key or remove the sender's own
// registrations (those of its initiator device, docs/spc4-pr.md §7.1);
// RESERVE and RELEASE remove none (§7.2, §7.3).
func mayEvict(cdb []byte) bool {
	if len(cdb) < 2 {
		return true
	}
	switch cdb[1] & 0x1f {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting, scsi.SAReserve, scsi.SARelease:
		return false
	}
	return true
}
