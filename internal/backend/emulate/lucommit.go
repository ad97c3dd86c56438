package emulate

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"

	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
)

// maxLUBatch bounds how many commands of one logical unit share one store
// update (one read-modify-write of its state, one commit).
const maxLUBatch = 256

// maxIdleLUs is how many logical units' queues (and cached states) are kept
// while idle; past it idle ones are dropped, to be read from the store again.
const maxIdleLUs = 1024

// Group commit on one logical unit (docs/performance.md §5). Every command
// of a logical unit that must go through the store's read-modify-write is
// queued on the unit's luQueue. One committer goroutine per busy unit takes
// everything queued (up to maxLUBatch), runs the commands one after the
// other, in arrival order, on the unit's state, and makes the result durable
// with one store.Update; the commands are answered when it returns. While a
// batch is being committed, the next one gathers: with N initiators busy on
// one unit, one commit answers up to N commands, where one command a commit
// (the unit's lock held through the store's fsync) made the disk's serial
// fsync rate the ceiling of a unit.
//
// The committer keeps the unit's value as last read or committed, and,
// without fencing, its decoded state, so that a command costs the engine's
// work and no decoding. That cache is only a guess: the commands are run on
// it before the update, and inside the update, if the stored value is not
// the one the guess was made on (another process or helper, a fence
// confirmation, prhelperctl wrote it), they are run again on the stored
// value. The answers given are always those of the run whose result was
// committed, so an answer never rests on a state that was not current.
type luQueues struct {
	mu sync.Mutex
	m  map[string]*luQueue

	// batches and commands count the store updates of the committers and the
	// commands they answered (benchmarks: commands per commit).
	batches, commands atomic.Uint64
	// inRows counts the batches committed as the rows they changed
	// (lurows.go), for tests.
	inRows atomic.Uint64
	// adopted counts the batches that went on from parts another
	// committer wrote (lurows.go), for tests.
	adopted atomic.Uint64
}

// luQueue is one logical unit's queue and its committer's cache.
type luQueue struct {
	key string

	mu      sync.Mutex
	waiting []*luCommand
	running bool // a committer owns the fields below

	known bool     // val is the value last read or committed
	val   []byte   // nil: the key was absent
	st    pr.State // val decoded (no fencing), when decoded is set
	// decoded says st is val decoded. It is cleared while st is used for a
	// guess, until that guess is known committed.
	decoded bool

	// In rows (lurows.go), st is instead the stored value of version
	// rowsVer (0: not known), kept in rows with the IDs rows,
	// its runs of registrations runs, head and tail its head and tail
	// parts; val and known are not used.
	rowsVer    uint64
	rows       *pr.Rows
	inParts    bool // stored in parts (else whole: a small state)
	runs       []int64
	head, tail []byte
}

// luCommand is one queued command; res and wait are set before Finish.
type luCommand struct {
	*store.Pending
	ctx   context.Context
	nexus pr.Nexus
	cdb   []byte
	param []byte
	res   pr.Result
	wait  *fence.Wait
}

// get returns key's queue, creating it.
func (l *luQueues) get(key string) *luQueue {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = make(map[string]*luQueue)
	}
	q := l.m[key]
	if q == nil {
		if len(l.m) >= maxIdleLUs {
			l.sweep()
		}
		q = &luQueue{key: key}
		l.m[key] = q
	}
	return q
}

// sweep drops the queues no committer runs and no command waits in; l.mu is
// held. A command that already holds such a queue still works: it starts a
// committer there, and only the cache is lost.
func (l *luQueues) sweep() {
	for k, q := range l.m {
		q.mu.Lock()
		idle := !q.running && len(q.waiting) == 0
		q.mu.Unlock()
		if idle {
			delete(l.m, k)
		}
	}
}

// submit queues c on key's unit, starting its committer if none runs, and
// waits for c's answer (or for ctx's end while c is still queued).
func (b *Backend) submit(ctx context.Context, key string, c *luCommand) error {
	q := b.queues.get(key)
	q.mu.Lock()
	q.waiting = append(q.waiting, c)
	start := !q.running
	q.running = true
	q.mu.Unlock()
	if start {
		go b.commitLoop(q)
	}
	return c.Wait(ctx)
}

// commitLoop runs q's batches until its queue is empty.
func (b *Backend) commitLoop(q *luQueue) {
	for {
		q.mu.Lock()
		n := min(len(q.waiting), maxLUBatch)
		if n == 0 {
			q.running = false
			q.waiting = nil
			q.mu.Unlock()
			return
		}
		batch := q.waiting[:n:n]
		q.waiting = q.waiting[n:]
		q.mu.Unlock()
		b.commitBatch(q, batch)
	}
}

// luRun is the outcome of a batch's commands on one value.
type luRun struct {
	next    []byte
	changed bool
	st      pr.State // the state after them (no fencing)
	err     error
	res     []pr.Result
	waits   []*fence.Wait
}

// commitBatch runs batch on q's unit and commits the result in one update.
func (b *Backend) commitBatch(q *luQueue, batch []*luCommand) {
	var live []*luCommand
	for _, c := range batch {
		if !c.Take() {
			continue // its caller gave up while it was queued
		}
		if err := c.ctx.Err(); err != nil {
			c.Finish(err)
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	if ps, ok := b.store.(store.PartStore); ok && b.rowsFencing() {
		b.commitRows(q, ps, live)
		return
	}
	bg := context.Background()
	if !q.known {
		v, err := b.store.Get(bg, q.key)
		if err != nil {
			for _, c := range live {
				c.Finish(err)
			}
			return
		}
		q.val, q.known, q.decoded = v, true, false
	}
	base := q.val
	var guess luRun
	if b.fencing == nil && q.decoded {
		guess = b.runState(q.st, live)
		guess.changed = guess.err == nil && !bytes.Equal(guess.next, base)
	} else {
		guess = b.runValue(base, live)
	}
	q.decoded = false // q.st is the guess's state now, or stale
	b.queues.batches.Add(1)
	b.queues.commands.Add(uint64(len(live)))
	var final luRun
	err := b.store.Update(bg, q.key, func(cur []byte) ([]byte, bool, error) {
		if (cur == nil) == (base == nil) && bytes.Equal(cur, base) {
			final = guess
		} else {
			final = b.runValue(cur, live)
		}
		if final.err != nil {
			return nil, false, final.err
		}
		if !final.changed {
			final.next = cur
		}
		return final.next, final.changed, nil
	})
	if err != nil {
		q.known = false // whether anything changed is unknown: read it again
		for _, c := range live {
			c.Finish(err)
		}
		return
	}
	q.val = bytes.Clone(final.next)
	if b.fencing == nil {
		q.st, q.decoded = final.st, true
	}
	for i, c := range live {
		c.res, c.wait = final.res[i], final.waits[i]
		c.Finish(nil)
	}
}

// runState runs cmds in order on st (changed in place), which is what base
// decodes to, without fencing.
func (b *Backend) runState(st pr.State, cmds []*luCommand) luRun {
	r := luRun{res: make([]pr.Result, len(cmds)), waits: make([]*fence.Wait, len(cmds))}
	for i, c := range cmds {
		r.res[i] = pr.Execute(b.profile, &st, c.nexus, c.cdb, c.param)
	}
	r.st = st
	r.next, r.err = st.MarshalBinary()
	return r
}

// runValue runs cmds in order on the stored value cur, decoded once (with
// fencing, by its StepAll). A pure function of cur, as a store.UpdateFunc
// must be.
func (b *Backend) runValue(cur []byte, cmds []*luCommand) luRun {
	if b.fencing == nil {
		var st pr.State
		if cur != nil {
			if err := st.UnmarshalBinary(cur); err != nil {
				return luRun{err: err}
			}
		}
		r := b.runState(st, cmds)
		r.changed = r.err == nil && !bytes.Equal(r.next, cur)
		return r
	}
	fcmds := make([]fence.Command, len(cmds))
	for i, c := range cmds {
		fcmds[i] = fence.Command{Nexus: c.nexus, CDB: c.cdb, Exec: func(st *pr.State) pr.Result {
			return pr.Execute(b.profile, st, c.nexus, c.cdb, c.param)
		}}
	}
	next, changed, res, waits, err := b.fencing.StepAll(cur, fcmds)
	if err != nil {
		return luRun{err: err}
	}
	return luRun{next: next, changed: changed, res: res, waits: waits}
}
