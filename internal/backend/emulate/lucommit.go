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
//
// With a store that queues Updates itself (store.Queuer, the etcd store) and
// more than one unit busy, the committer does not wait for a batch's update:
// it queues it and goes on with the next batch, guessed on the value the
// previous one will leave, and a goroutine answers each batch when its update
// returns. The store then forms each transaction when it is ready to send it,
// with every command queued by then (docs/performance.md §5.6.1), instead of
// a batch fixed while the store's committer was busy with other units; the
// store still runs the batches' functions in order, each on the value the
// previous one left, so the answers are those of the committed runs. With one
// busy unit the committer keeps one update in flight: nothing else holds the
// store's committer, so each transaction already carries every command that
// arrived during the previous one, and batches of one command would only cost
// CPU (measured: §5.6.1).
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

	// busy counts the units whose committer runs or that have a batch in
	// the store.
	busy atomic.Int64
}

// luQueue is one logical unit's queue and its committer's cache.
type luQueue struct {
	key string

	mu       sync.Mutex
	waiting  []*luCommand
	running  bool // a committer runs
	inflight int  // batches given to the store and not answered

	// The cache, guarded by cmu: after each batch is queued it is what that
	// batch is guessed to leave; a batch's answer corrects it when that batch
	// is the last one queued (seq) and the guess was wrong or failed.
	cmu   sync.Mutex
	seq   uint64 // batches queued
	known bool   // val is the value last read, committed or guessed
	val   []byte // nil: the key was absent
	// rowsState.st is val decoded (no fencing), when decoded is set.
	rowsState
	// decoded says st is val decoded. It is cleared while st is used for a
	// guess, until that guess is known committed.
	decoded bool

	// In rows (lurows.go), rowsState is instead the stored value of
	// version rowsVer (0: not known) and its layout; val and known are not
	// used.
	rowsVer uint64
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

// sweep drops the queues no committer runs, no command waits in and no batch
// is in the store for; l.mu is held. A command that already holds such a
// queue still works: it starts a committer there, and only the cache is lost.
func (l *luQueues) sweep() {
	for k, q := range l.m {
		q.mu.Lock()
		idle := !q.running && len(q.waiting) == 0 && q.inflight == 0
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
	if start && q.inflight == 0 {
		b.queues.busy.Add(1)
	}
	q.running = true
	q.mu.Unlock()
	if start {
		go b.commitLoop(q)
	}
	return c.Wait(ctx)
}

// commitLoop runs q's batches until its queue is empty.
func (b *Backend) commitLoop(q *luQueue) {
	qs, _ := b.store.(store.Queuer)
	for {
		q.mu.Lock()
		n := min(len(q.waiting), maxLUBatch)
		if n == 0 {
			q.running = false
			q.waiting = nil
			if q.inflight == 0 {
				b.queues.busy.Add(-1)
			}
			q.mu.Unlock()
			return
		}
		batch := q.waiting[:n:n]
		q.waiting = q.waiting[n:]
		q.inflight++ // before running is cleared: the unit stays busy
		q.mu.Unlock()
		if b.queues.busy.Load() > 1 {
			b.commitBatch(q, qs, batch)
		} else {
			b.commitBatch(q, nil, batch)
		}
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

// luUpdate is one batch's store update: the run whose result was committed,
// and whether it was the guess.
type luUpdate struct {
	final   luRun
	guessed bool
}

// commitBatch runs batch on q's unit and commits the result in one update.
// With qs it only queues the update, and a goroutine answers the batch. The
// caller counted the batch in q.inflight; it is counted out when answered.
func (b *Backend) commitBatch(q *luQueue, qs store.Queuer, batch []*luCommand) {
	if !b.runBatch(q, qs, batch) {
		b.answered(q)
	}
}

// runBatch is commitBatch but for counting the batch out: it reports whether
// it queued the update, whose goroutine then counts it out.
func (b *Backend) runBatch(q *luQueue, qs store.Queuer, batch []*luCommand) (queued bool) {
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
		return false
	}
	if ps, ok := b.store.(store.PartStore); ok && b.rowsFencing() {
		// A PartStore is not a store.Queuer: this runs on the unit's
		// committer, one batch at a time, the only user of q's cache.
		b.commitRows(q, ps, live)
		return false
	}
	bg := context.Background()
	q.cmu.Lock()
	if !q.known {
		v, err := b.store.Get(bg, q.key)
		if err != nil {
			q.cmu.Unlock()
			for _, c := range live {
				c.Finish(err)
			}
			return false
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
	// The cache is the guess now (q.st was changed in place): the next batch
	// is guessed on it.
	q.decoded = false
	if guess.err == nil {
		if guess.changed {
			q.val = guess.next
		}
		q.st, q.decoded = guess.st, b.fencing == nil
	}
	q.seq++
	seq := q.seq
	b.queues.batches.Add(1)
	b.queues.commands.Add(uint64(len(live)))
	u := &luUpdate{}
	fn := func(cur []byte) ([]byte, bool, error) {
		u.guessed = (cur == nil) == (base == nil) && bytes.Equal(cur, base)
		if u.guessed {
			u.final = guess
		} else {
			u.final = b.runValue(cur, live)
		}
		if u.final.err != nil {
			return nil, false, u.final.err
		}
		if !u.final.changed {
			u.final.next = cur
		}
		return u.final.next, u.final.changed, nil
	}
	if qs != nil {
		wait := qs.Queue(bg, q.key, fn)
		q.cmu.Unlock()
		go func() {
			err := wait()
			b.answered(q)
			b.answerBatch(q, seq, live, u, err)
		}()
		return true
	}
	q.cmu.Unlock()
	b.answerBatch(q, seq, live, u, b.store.Update(bg, q.key, fn))
	return false
}

// answerBatch answers the commands of batch seq from its update's outcome,
// and corrects the cache when the batch is the last one queued and its guess
// was not what was committed.
func (b *Backend) answerBatch(q *luQueue, seq uint64, live []*luCommand, u *luUpdate, err error) {
	q.cmu.Lock()
	if seq == q.seq && (err != nil || !u.guessed) {
		if err != nil {
			q.known, q.decoded = false, false // whether anything changed is unknown: read it again
		} else {
			q.val, q.known = bytes.Clone(u.final.next), true
			q.st, q.decoded = u.final.st, b.fencing == nil
		}
	}
	q.cmu.Unlock()
	if err != nil {
		for _, c := range live {
			c.Finish(err)
		}
		return
	}
	for i, c := range live {
		c.res, c.wait = u.final.res[i], u.final.waits[i]
		c.Finish(nil)
	}
}

// began counts one batch of q given to commitBatch (tests: commitLoop counts
// its own under q.mu).
func (b *Backend) began(q *luQueue) {
	q.mu.Lock()
	if q.inflight == 0 && !q.running {
		b.queues.busy.Add(1)
	}
	q.inflight++
	q.mu.Unlock()
}

// answered counts one batch of q answered (or dropped before the store).
func (b *Backend) answered(q *luQueue) {
	q.mu.Lock()
	q.inflight--
	if q.inflight == 0 && !q.running {
		b.queues.busy.Add(-1)
	}
	q.mu.Unlock()
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
