package etcd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/prhelper/prhelper/internal/store"
)

// Default option values.
const (
	DefaultPrefix         = "/prhelper/"
	DefaultTimeout        = 10 * time.Second
	DefaultAttemptTimeout = 2 * time.Second
	DefaultDialTimeout    = 5 * time.Second
	DefaultMaxBatch       = 256
	DefaultMaxKeysPerTxn  = 32
	DefaultCommitters     = 1
	DefaultMaxConflicts   = 1000
	DefaultRecordTTL      = 10 * time.Minute
)

// Value format markers, the first byte of every state value in etcd.
const (
	markDeleted = 0
	markValue   = 1
)

// Options configures a Store. Endpoints is required; the zero value of every other
// field is the recommended setting.
type Options struct {
	// Endpoints are the etcd client URLs (https://host:2379, ...).
	Endpoints []string
	// Prefix is prepended to every key; several independent stores can share a
	// cluster under different prefixes. Zero means DefaultPrefix.
	Prefix string
	// CACert, Cert and Key are PEM files, named as etcdctl names them: the CA that
	// signed the members' certificates, and this client's certificate and key.
	CACert, Cert, Key string
	// Timeout bounds an Update from its call to its answer, including retries through
	// leader elections; it stays below the usual 30 s guest SCSI command timeout so
	// that the guest gets an answer it retries, not a reset. Zero means DefaultTimeout.
	Timeout time.Duration
	// AttemptTimeout bounds one etcd request. Zero means DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// DialTimeout bounds Open's first contact with the cluster. Zero means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// MaxBatch bounds how many Updates of one key share one transaction. Zero means
	// DefaultMaxBatch; NoGroupCommit sets it to 1.
	MaxBatch      int
	NoGroupCommit bool
	// MaxKeysPerTxn bounds how many keys' writes share one etcd transaction (each
	// takes two operations; etcd's default --max-txn-ops is 128). Zero means
	// DefaultMaxKeysPerTxn; NoGroupCommit sets it to 1.
	MaxKeysPerTxn int
	// Committers is how many combined transactions one process keeps in flight.
	// Zero means DefaultCommitters: one, so that the writes that become ready
	// while it is in flight all share the next transaction (fewer, fuller
	// transactions: BenchmarkPROut at 64 clients on 16 LUs measured 2270-2467
	// PR OUT/s with one against 1561-1627 with two, on the loaded 2-core test box).
	Committers int
	// MaxConflicts bounds how often one batch is recomputed because another helper
	// changed the key first, before its Updates fail with store.ErrBusy. Zero means
	// DefaultMaxConflicts.
	MaxConflicts int
	// RecordTTL is how long the record of a committed transaction is kept for
	// exactly-once resolution; it must exceed Timeout by far. Zero means
	// DefaultRecordTTL.
	RecordTTL time.Duration
	// OnCommit, when set, is told each batch of one key's Updates that a
	// transaction answered (metrics): how many, and the time from the batch's
	// first attempt to the answer. It must return at once.
	OnCommit func(store.Commit)
}

func (o *Options) setDefaults() {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Committers <= 0 {
		o.Committers = DefaultCommitters
	}
	if o.MaxKeysPerTxn <= 0 {
		o.MaxKeysPerTxn = DefaultMaxKeysPerTxn
	}
	if o.NoGroupCommit {
		o.MaxBatch, o.MaxKeysPerTxn = 1, 1
	}
	if o.MaxConflicts <= 0 {
		o.MaxConflicts = DefaultMaxConflicts
	}
	if o.RecordTTL <= 0 {
		o.RecordTTL = DefaultRecordTTL
	}
}

// Store is a store.Store on an etcd cluster. Its methods are safe for concurrent use.
type Store struct {
	opts  Options
	cli   *clientv3.Client
	state string // opts.Prefix + "state/"
	rec   string // opts.Prefix + "applied/"

	mu     sync.Mutex
	keys   map[string]*keyQueue
	closed bool
	wg     sync.WaitGroup // running key workers

	// ready is the writes the committers take next (guarded by mu, signalled
	// by readyCond); stopping ends the committers once it is empty.
	ready     []*write
	readyCond *sync.Cond
	stopping  bool
	chained   int            // writes chained after one in a transaction (guarded by mu)
	cwg       sync.WaitGroup // running committers

	leaseMu   sync.Mutex
	lease     clientv3.LeaseID
	leaseTime time.Time

	closeOnce sync.Once
	closeErr  error

	stats struct{ transactions, writes, updates, conflicts, resubmits, recovered, unknown, specUsed, specDropped, combinedUnknown atomic.Uint64 }
}

var _ store.Queuer = (*Store)(nil)

// Stats counts what the store did since Open.
type Stats struct {
	Transactions uint64 // committed etcd transactions (each may change several keys)
	Writes       uint64 // keys' writes taken into transactions (sent, resent)
	Updates      uint64 // Update calls answered after their fn ran
	Conflicts    uint64 // batches recomputed because another writer changed the key
	Resubmits    uint64 // transactions submitted again because their outcome was unknown
	Recovered    uint64 // of those, found committed by an earlier copy (its record)
	Unknown      uint64 // batches whose outcome stayed unknown until Timeout
	SpecUsed     uint64 // batches whose fns ran during the previous commit, results used
	SpecDropped  uint64 // such batches run again because that commit did not write their base
	// CombinedUnknown counts transactions of several keys' writes whose outcome was
	// unknown (each write is then resolved on its own, through its record).
	CombinedUnknown uint64
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Transactions: s.stats.transactions.Load(),
		Writes:       s.stats.writes.Load(),
		Updates:      s.stats.updates.Load(),
		Conflicts:    s.stats.conflicts.Load(),
		Resubmits:    s.stats.resubmits.Load(),
		Recovered:    s.stats.recovered.Load(),
		Unknown:      s.stats.unknown.Load(),
		SpecUsed:     s.stats.specUsed.Load(),
		SpecDropped:  s.stats.specDropped.Load(),

		CombinedUnknown: s.stats.combinedUnknown.Load(),
	}
}

// keyQueue is the pending Updates of one key and what this process last knew of it.
// All fields are guarded by Store.mu except the cache, owned by the running worker.
type keyQueue struct {
	queue   []*request
	running bool
	kick    chan struct{} // one slot: requests were queued while the worker runs

	// cache: the value and ModRevision after this process's last transaction on the
	// key (or its last read). A stale cache costs one failed compare, never a wrong
	// answer.
	valid bool
	val   []byte
	rev   int64
	exact bool // val is the value this process's last transaction wrote

	contended time.Time // last conflict with another writer; worker only
}

type request struct {
	ctx      context.Context
	deadline time.Time
	fn       store.UpdateFunc
	*store.Pending
	err error // result of the latest fn run, worker only
}

// Open connects to the cluster and checks that it answers a linearizable read (which
// needs a quorum) within DialTimeout, so that a helper that cannot reach etcd says so at
// start instead of failing its first guest command.
func Open(opts Options) (*Store, error) {
	opts.setDefaults()
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("etcd store: no endpoints")
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		return nil, fmt.Errorf("etcd store: prefix %q must end with /", opts.Prefix)
	}
	cfg := clientv3.Config{
		Endpoints:            opts.Endpoints,
		DialTimeout:          opts.DialTimeout,
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
	}
	if opts.CACert != "" || opts.Cert != "" || opts.Key != "" {
		if (opts.Cert == "") != (opts.Key == "") {
			return nil, errors.New("etcd store: a client certificate needs both cert and key")
		}
		info := transport.TLSInfo{CertFile: opts.Cert, KeyFile: opts.Key, TrustedCAFile: opts.CACert}
		tc, err := info.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd store: TLS: %w", err)
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd store: client for %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	s := &Store{
		opts:  opts,
		cli:   cli,
		state: opts.Prefix + "state/",
		rec:   opts.Prefix + "applied/",
		keys:  map[string]*keyQueue{},
	}
	s.readyCond = sync.NewCond(&s.mu)
	ctx, cancel := context.WithTimeout(context.Background(), opts.DialTimeout)
	defer cancel()
	if _, err := cli.Get(ctx, s.state, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd store: cannot reach etcd at %s within %v (endpoints down or wrong, TLS files or client certificate refused, or no quorum for a linearizable read): %w",
			strings.Join(opts.Endpoints, ","), opts.DialTimeout, err)
	}
	if _, err := s.currentLease(ctx); err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd store: %s: %w", strings.Join(opts.Endpoints, ","), err)
	}
	for range opts.Committers {
		s.cwg.Add(1)
		go s.committer()
	}
	return s, nil
}

// Client returns the etcd client, for tools and tests.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Prefix is the key prefix of this store in etcd (ends with '/'); other
// parts of a helper (the fencing leases) keep their keys under it.
func (s *Store) Prefix() string { return s.opts.Prefix }

// currentLease returns the lease that new transaction records are attached to. A lease
// is used for half its TTL, so a record outlives its transaction's resolution (bounded
// by Timeout) by far; old leases expire by themselves and take their records with them.
func (s *Store) currentLease(ctx context.Context) (clientv3.LeaseID, error) {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	if s.lease != 0 && time.Since(s.leaseTime) < s.opts.RecordTTL/2 {
		return s.lease, nil
	}
	resp, err := s.cli.Grant(ctx, int64(s.opts.RecordTTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease for transaction records: %w", err)
	}
	s.lease, s.leaseTime = resp.ID, time.Now()
	return s.lease, nil
}

func (s *Store) dropLease(id clientv3.LeaseID) {
	s.leaseMu.Lock()
	if s.lease == id {
		s.lease = 0
	}
	s.leaseMu.Unlock()
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	return s.Queue(ctx, key, fn)()
}

// Queue implements store.Queuer: the request joins the key's queue now, behind
// those queued before it, and wait answers it as Update would. A worker that is
// already busy with the key is told, so that it can add the request to the write
// that waits for a committer (docs/performance.md §5.6.1).
func (s *Store) Queue(ctx context.Context, key string, fn store.UpdateFunc) (wait func() error) {
	if err := ctx.Err(); err != nil {
		return func() error { return fmt.Errorf("store: update %q: %w", key, err) }
	}
	r := &request{ctx: ctx, fn: fn, Pending: store.NewPending(), deadline: time.Now().Add(s.opts.Timeout)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return func() error { return fmt.Errorf("store: update %q: %w", key, store.ErrClosed) }
	}
	kq := s.keys[key]
	if kq == nil {
		kq = &keyQueue{kick: make(chan struct{}, 1)}
		s.keys[key] = kq
	}
	kq.queue = append(kq.queue, r)
	if !kq.running {
		kq.running = true
		s.wg.Add(1)
		go s.worker(key, kq)
	} else {
		select {
		case kq.kick <- struct{}{}:
		default: // already told
		}
	}
	s.mu.Unlock()
	return func() error {
		if err := r.Wait(ctx); err != nil {
			return fmt.Errorf("store: update %q: %w", key, err)
		}
		return nil
	}
}

// worker runs the batches of one key until its queue is empty. While a batch's
// transaction is in flight it already runs the fns of the next batch on the value
// being committed (pipelining: the engine's work overlaps the round trip); that work
// is used only if the transaction committed, else the next batch runs again on the
// value etcd returned.
func (s *Store) worker(key string, kq *keyQueue) {
	defer s.wg.Done()
	var spec *speculation
	for {
		var p *pending
		valid := false
		if spec != nil {
			p, valid = &spec.pending, spec.valid
		} else if batch := s.take(kq, true, s.opts.MaxBatch); batch != nil {
			p = &pending{batch: batch}
		} else {
			return
		}
		spec = s.runBatch(key, kq, p, valid)
	}
}

// take removes up to max queued requests of the key; with last, an empty queue
// ends the worker (under the same lock, so no request is left behind).
func (s *Store) take(kq *keyQueue, last bool, max int) []*request {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(kq.queue), max)
	if n <= 0 {
		if last && len(kq.queue) == 0 {
			kq.running = false
		}
		return nil
	}
	batch := kq.queue[:n:n]
	kq.queue = kq.queue[n:]
	if len(kq.queue) == 0 {
		kq.queue = nil
	}
	return batch
}

// pending is a batch of one key's requests, the value their fns left (cur, run in
// order on the batch's base), and the write that carries it, once there is one.
type pending struct {
	batch   []*request
	cur     []byte
	changed bool
	live    int
	w       *write
}

// speculation is a batch whose fns already ran on the value of a transaction that was
// in flight; valid once that transaction committed. Its write, when it has one, was
// chained after that transaction's (see Store.answer).
type speculation struct {
	pending
	valid bool
}

// absorb takes the key's queued requests into p, up to MaxBatch, running their fns
// on p.cur, as long as no committer took p's write: the write then carries them
// (its value is updated under its lock, which a committer takes to fix it). It
// returns false, taking nothing, once the write is taken (docs/performance.md §5.6.1).
func (s *Store) absorb(kq *keyQueue, p *pending) bool {
	if p.w != nil {
		p.w.mu.Lock()
		defer p.w.mu.Unlock()
		if p.w.taken {
			return false
		}
	}
	nb := s.take(kq, false, s.opts.MaxBatch-len(p.batch))
	if nb == nil {
		return true
	}
	cur, changed, live := apply(nb, p.cur)
	p.batch = append(p.batch, nb...)
	p.cur, p.changed, p.live = cur, p.changed || changed, p.live+live
	if p.w != nil {
		p.w.cur = cur
	}
	return true
}

// apply runs the fns of batch in order on base: each sees the value the previous one
// left. It returns the final value, whether any fn changed it, and how many requests
// are live (not abandoned by their callers).
func apply(batch []*request, base []byte) (cur []byte, changed bool, live int) {
	cur = base
	for _, r := range batch {
		if !r.Take() {
			continue // abandoned by its caller
		}
		live++
		if err := r.ctx.Err(); err != nil {
			r.err = err
			continue
		}
		next, ch, err := store.Apply(r.fn, cur)
		r.err = err
		if err != nil || !ch {
			continue
		}
		cur, changed = bytes.Clone(next), true
	}
	return cur, changed, live
}

// contendedFor is how long after a conflict a key counts as contended by another
// helper.
const contendedFor = 500 * time.Millisecond

// errUnknown marks a batch whose transaction's outcome could not be learnt in time.
var errUnknown = errors.New("outcome unknown")

// runBatch answers every request of p: it runs their fns in order on the key's
// value and commits the result in one transaction, again on a fresh value after a
// conflict, until the commit succeeds, the conflicts exceed MaxConflicts, or the
// earliest request's deadline passes. With valid, p is a speculation whose fns
// already ran on the key's cached value.
func (s *Store) runBatch(key string, kq *keyQueue, p *pending, valid bool) *speculation {
	ctx, cancel := context.WithDeadline(context.Background(), earliest(p.batch))
	defer cancel()
	next, err := s.commitBatch(ctx, key, kq, p, valid)
	if err != nil {
		kq.valid = false
	}
	for _, r := range p.batch {
		if err == nil {
			r.Finish(r.err)
		} else {
			r.Finish(err)
		}
	}
	return next
}

// earliest is the earliest deadline of batch's callers.
func earliest(batch []*request) time.Time {
	d := batch[0].deadline
	for _, r := range batch[1:] {
		if r.deadline.Before(d) {
			d = r.deadline
		}
	}
	return d
}

type commitResult struct {
	ok  bool
	err error
}

func (s *Store) commitBatch(ctx context.Context, key string, kq *keyQueue, p *pending, valid bool) (*speculation, error) {
	ek := s.state + key
	var next *speculation
	start := time.Now()
	// A speculation's write that the committer already offered (its predecessor
	// committed) must be seen through: it may be in a transaction now.
	offered := valid && kq.valid && s.promoted(p.w)
	if !offered {
		p.w = nil
	}
	if !offered && time.Since(kq.contended) < contendedFor {
		// Leave the other helper a moment to commit between two of ours.
		if err := sleep(ctx, mrand.N(2*time.Millisecond)); err != nil {
			return nil, s.unavailable(err, false)
		}
	}
	for conflicts := 0; ; conflicts++ {
		if conflicts > s.opts.MaxConflicts {
			return next, fmt.Errorf("%w: %d conflicting writers in a row on %q", store.ErrBusy, conflicts-1, key)
		}
		if conflicts > 0 {
			s.stats.conflicts.Add(1)
			kq.contended = time.Now()
			// The Else branch brought the current value: retry at once, with a
			// little jitter so that two helpers racing for one key interleave.
			if err := sleep(ctx, mrand.N(time.Millisecond*time.Duration(min(conflicts, 4)))); err != nil {
				return next, s.unavailable(err, false)
			}
		}
		usePre := valid && conflicts == 0 && kq.valid
		if !kq.valid {
			if err := s.refresh(ctx, ek, kq); err != nil {
				return next, err
			}
		}
		if usePre {
			// The fns ran on exactly this value while it was being committed.
			s.stats.specUsed.Add(1)
		} else {
			if valid && conflicts == 0 {
				s.stats.specDropped.Add(1)
			}
			p.cur, p.changed, p.live = apply(p.batch, kq.val)
		}
		if p.live == 0 {
			return next, nil
		}
		var ok bool
		var err error
		if p.changed {
			first := offered
			if !offered {
				p.w = s.newWrite(ek, kq.rev, p.cur, earliest(p.batch))
			}
			offered = false
			done := make(chan commitResult, 1)
			go func(w *write) {
				ok, err := s.commit(ctx, kq, w, first)
				done <- commitResult{ok, err}
			}(p.w)
			// While another helper competes for the key, no pipelining: a helper
			// whose next transaction is always ready would starve the other.
			pipeline := next == nil && time.Since(kq.contended) > contendedFor
			var r commitResult
			var fresh *speculation
			r, fresh = s.await(ek, kq, p, done, pipeline)
			ok, err = r.ok, r.err
			if fresh != nil {
				// Valid only if the cache now holds exactly the value the next
				// batch ran on: this transaction committed it (not an earlier
				// copy found later, after which the key may have moved on).
				next = fresh
				next.valid = err == nil && ok && kq.exact
			}
		} else {
			ok, err = s.confirm(ctx, ek, kq)
		}
		if err != nil {
			return next, err
		}
		if ok {
			s.stats.updates.Add(uint64(p.live))
			if s.opts.OnCommit != nil {
				s.opts.OnCommit(store.Commit{Updates: p.live, Duration: time.Since(start)})
			}
			return next, nil
		}
	}
}

// await waits for the outcome of p's write (done). Meanwhile the requests that
// arrive for the key join p while no committer has taken its write, so that its
// transaction carries them; once it is taken they form, with pipeline, the next
// batch, run on p's value, whose write is chained after p's and offered by the
// committer as soon as p's commits (docs/performance.md §5.6.1). A command then
// waits for at most the transaction in flight and its own.
func (s *Store) await(ek string, kq *keyQueue, p *pending, done <-chan commitResult, pipeline bool) (commitResult, *speculation) {
	var next *speculation
	kick := kq.kick
	for {
		select {
		case r := <-done:
			if next != nil && len(next.batch) == 0 {
				next = nil
			}
			return r, next
		case <-kick:
		}
		if s.absorb(kq, p) {
			continue
		}
		if !pipeline {
			kick = nil // the rest wait in the queue for the next batch
			continue
		}
		if next == nil {
			next = &speculation{pending: pending{cur: p.cur}} // p.cur is fixed now
		}
		if !s.absorb(kq, &next.pending) {
			kick = nil // the chained write is taken already
			continue
		}
		if next.changed && next.w == nil && len(next.batch) > 0 {
			s.chain(ek, p.w, &next.pending)
		}
	}
}

// chain gives n a write of its value that follows prev: the committer offers it
// when prev commits, with prev's revision as the one to compare (Store.answer).
// Nothing is chained once prev was answered; the worker then writes n itself.
func (s *Store) chain(ek string, prev *write, n *pending) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev.answered {
		return
	}
	n.w = s.newWrite(ek, 0, n.cur, earliest(n.batch))
	prev.next = n.w
	s.chained++
}

// promoted reports whether w was offered by the committer after its predecessor
// committed.
func (s *Store) promoted(w *write) bool {
	if w == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return w.promoted
}

func (s *Store) newWrite(ek string, rev int64, cur []byte, deadline time.Time) *write {
	return &write{key: ek, rev: rev, cur: cur, rec: s.rec + newID(), done: make(chan writeResult, 1), deadline: deadline}
}

// refresh reads the key into the cache, retrying until ctx ends.
func (s *Store) refresh(ctx context.Context, ek string, kq *keyQueue) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.AttemptTimeout)
		resp, err := s.cli.Get(actx, ek)
		cancel()
		if err == nil {
			kq.setFrom(resp.Kvs)
			return nil
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			return s.unavailable(fmt.Errorf("read: %w", err), false)
		}
	}
}

// confirm checks with a read-only transaction that the cached value is current; on a
// conflict the cache is refreshed from the answer and confirm returns false.
func (s *Store) confirm(ctx context.Context, ek string, kq *keyQueue) (bool, error) {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.opts.AttemptTimeout)
		resp, err := s.cli.Txn(actx).
			If(clientv3.Compare(clientv3.ModRevision(ek), "=", kq.rev)).
			Else(clientv3.OpGet(ek)).
			Commit()
		cancel()
		if err == nil {
			if resp.Succeeded {
				return true, nil
			}
			kq.setFrom(resp.Responses[0].GetResponseRange().Kvs)
			return false, nil
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			return false, s.unavailable(err, false)
		}
	}
}

// commit commits w, the key's next value, with one transaction, submitted again with
// the same id while its outcome is unknown (offered: the committer already has the
// first copy). It returns true when the transaction committed (now or by an earlier
// copy), false on a conflict (the cache then holds the current value, and the
// transaction can never commit any more).
//
// The write goes through the committers, which put the writes of several keys that
// are ready at the same time into one etcd transaction; each write keeps its own
// compares and record, so combining them changes nothing of the above.
func (s *Store) commit(ctx context.Context, kq *keyQueue, w *write, offered bool) (bool, error) {
	var lastErr error
	sent := false // a copy may have reached etcd: the outcome is unknown until learnt
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if sent {
				s.stats.resubmits.Add(1)
			}
			if err := sleep(ctx, backoff(attempt-1)); err != nil {
				return false, s.unavailable(lastErr, sent)
			}
		}
		if attempt > 0 || !offered {
			s.offer(w)
		}
		var r writeResult
		select {
		case r = <-w.done:
		case <-ctx.Done():
			if s.withdraw(w) {
				return false, s.unavailable(errors.Join(lastErr, ctx.Err()), sent)
			}
			// A committer has it and answers within AttemptTimeout; wait for
			// it so the write is never left behind in a transaction nobody
			// resolves.
			r = <-w.done
		}
		switch r.outcome {
		case outcomeCommitted:
			// w.cur is fixed since a committer took w.
			kq.valid, kq.val, kq.rev, kq.exact = true, w.cur, r.rev, true
			return true, nil
		case outcomeRecovered:
			// An earlier copy committed; its answer is the one fn gave.
			s.stats.recovered.Add(1)
			kq.setFrom(r.kvs)
			return true, nil
		case outcomeConflict:
			kq.setFrom(r.kvs)
			return false, nil
		default:
			lastErr = r.err
			if r.outcome == outcomeUnknown {
				sent = true
			}
		}
	}
}

// offer puts w on the committers' list.
func (s *Store) offer(w *write) {
	s.mu.Lock()
	s.ready = append(s.ready, w)
	s.readyCond.Signal()
	s.mu.Unlock()
}

// withdraw takes w off the committers' list; false when a committer has it.
func (s *Store) withdraw(w *write) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.Index(s.ready, w)
	if i < 0 {
		return false
	}
	s.ready = slices.Delete(s.ready, i, i+1)
	return true
}

// write is one key's change waiting for a committer.
type write struct {
	key  string // etcd key
	rec  string // record key: exists iff this write committed
	done chan writeResult
	// deadline is the earliest deadline of the batch's callers (zero: none); a
	// transaction carrying the write ends by then, so that Update answers within
	// Options.Timeout.
	deadline time.Time

	// rev is the ModRevision the value was computed from; for a chained write,
	// set by Store.answer (under Store.mu) when its predecessor commits.
	rev int64

	// mu guards cur until a committer takes the write (taken): until then the
	// key's worker may add requests to it (Store.absorb); from then on it is
	// fixed, and val is its encoding.
	mu    sync.Mutex
	taken bool
	cur   []byte // the value
	val   string // encoded cur, once taken

	// Guarded by Store.mu: answered once a committer answered it; next, the
	// write chained after it; promoted, this write was offered because the
	// write it was chained after committed.
	answered bool
	next     *write
	promoted bool
}

type writeOutcome int

const (
	outcomeCommitted writeOutcome = iota // committed by this transaction
	outcomeRecovered                     // committed earlier by a copy (record found)
	outcomeConflict                      // the key moved on; can never commit
	outcomeRefused                       // not applied (e.g. lease expired): submit again
	outcomeUnknown                       // maybe applied: submit the same write again
)

type writeResult struct {
	outcome writeOutcome
	rev     int64              // outcomeCommitted: the transaction's revision
	kvs     []*mvccpb.KeyValue // recovered, conflict: the key's current value
	err     error              // refused, unknown
}

// committer commits the writes that are ready together: one transaction whose
// compares are every write's (ModRevision and record absent) and whose Else branch
// reads every key and record back. When it fails, each write is classified from
// those reads; the writes that were not the reason go again at once.
//
// The committer pulls (docs/performance.md §5.6.1): a write stays open, taking the
// requests that arrive for its key, until a committer is free and takes it; and the
// writes chained after those of a transaction that committed are ready when it
// returns, so the next transaction carries every key that has work.
func (s *Store) committer() {
	defer s.cwg.Done()
	for {
		batch := s.pull()
		if len(batch) == 0 {
			return
		}
		for len(batch) > 0 {
			batch = s.commitWrites(batch)
		}
	}
}

// pull waits for ready writes and takes up to MaxKeysPerTxn of them, fixing their
// values; none once the store is closing and nothing is ready.
func (s *Store) pull() []*write {
	s.mu.Lock()
	for len(s.ready) == 0 && !s.stopping {
		s.readyCond.Wait()
	}
	n := min(len(s.ready), s.opts.MaxKeysPerTxn)
	batch := slices.Clone(s.ready[:n])
	s.ready = slices.Delete(s.ready, 0, n)
	s.mu.Unlock()
	s.stats.writes.Add(uint64(n))
	for _, w := range batch {
		w.mu.Lock()
		if !w.taken {
			w.taken, w.val = true, string(encode(w.cur))
		}
		w.mu.Unlock()
	}
	return batch
}

// answer gives w its outcome. When w committed, the write chained after it (its
// key's next batch, run on w's value) is offered at once with w's revision, so that
// the committer's next transaction carries it without waiting for the key's
// worker; otherwise the chained write is dropped, and the worker runs that batch
// again (docs/performance.md §5.6.1).
func (s *Store) answer(w *write, r writeResult) {
	s.mu.Lock()
	w.answered = true
	if n := w.next; n != nil {
		w.next = nil
		s.chained--
		if r.outcome == outcomeCommitted {
			n.rev, n.promoted = r.rev, true
			s.ready = append(s.ready, n)
			s.readyCond.Signal()
		}
	}
	s.mu.Unlock()
	w.done <- r
}

// commitWrites runs one transaction for batch, answers the writes it decided and
// returns those to run again at once.
func (s *Store) commitWrites(batch []*write) []*write {
	end := time.Now().Add(s.opts.AttemptTimeout)
	for _, w := range batch {
		if !w.deadline.IsZero() && w.deadline.Before(end) {
			end = w.deadline
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), end)
	defer cancel()
	lease, err := s.currentLease(ctx)
	if err != nil {
		for _, w := range batch {
			s.answer(w, writeResult{outcome: outcomeRefused, err: err})
		}
		return nil
	}
	cmps := make([]clientv3.Cmp, 0, 2*len(batch))
	then := make([]clientv3.Op, 0, 2*len(batch))
	els := make([]clientv3.Op, 0, 2*len(batch))
	for _, w := range batch {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(w.key), "=", w.rev),
			clientv3.Compare(clientv3.CreateRevision(w.rec), "=", 0))
		then = append(then, clientv3.OpPut(w.key, w.val), clientv3.OpPut(w.rec, "", clientv3.WithLease(lease)))
		els = append(els, clientv3.OpGet(w.key), clientv3.OpGet(w.rec))
	}
	resp, err := s.cli.Txn(ctx).If(cmps...).Then(then...).Else(els...).Commit()
	if err != nil {
		outcome := outcomeUnknown
		if isLeaseNotFound(err) {
			// Refused before applying anything: the lease expired (the helper
			// was paused for long). Take a new one.
			s.dropLease(lease)
			outcome = outcomeRefused
		}
		if outcome == outcomeUnknown && len(batch) > 1 {
			s.stats.combinedUnknown.Add(1)
		}
		for _, w := range batch {
			s.answer(w, writeResult{outcome: outcome, err: err})
		}
		return nil
	}
	if resp.Succeeded {
		s.stats.transactions.Add(1)
		for _, w := range batch {
			s.answer(w, writeResult{outcome: outcomeCommitted, rev: resp.Header.Revision})
		}
		return nil
	}
	var again []*write
	for i, w := range batch {
		kvs := resp.Responses[2*i].GetResponseRange().Kvs
		switch {
		case len(resp.Responses[2*i+1].GetResponseRange().Kvs) > 0:
			s.answer(w, writeResult{outcome: outcomeRecovered, kvs: kvs})
		case modRevision(kvs) != w.rev:
			s.answer(w, writeResult{outcome: outcomeConflict, kvs: kvs})
		default:
			again = append(again, w) // failed only because of another write
		}
	}
	return again
}

func modRevision(kvs []*mvccpb.KeyValue) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}

// unavailable is the error of a batch that ran out of time: the cluster has no quorum
// or cannot be reached. It wraps store.ErrBusy so that callers answer with a sense
// guests retry.
func (s *Store) unavailable(err error, unknown bool) error {
	if unknown {
		s.stats.unknown.Add(1)
		return fmt.Errorf("%w: etcd did not answer within %v, %w: the change was not acknowledged and may or may not be applied: %v",
			store.ErrBusy, s.opts.Timeout, errUnknown, err)
	}
	return fmt.Errorf("%w: etcd did not answer within %v: %v", store.ErrBusy, s.opts.Timeout, err)
}

func isLeaseNotFound(err error) bool {
	return err != nil && strings.Contains(err.Error(), "requested lease not found")
}

// setFrom fills the cache from a range response of the key (empty: absent).
func (kq *keyQueue) setFrom(kvs []*mvccpb.KeyValue) {
	kq.valid, kq.exact = true, false
	if len(kvs) == 0 {
		kq.val, kq.rev = nil, 0
		return
	}
	kq.val, kq.rev = decode(kvs[0].Value), kvs[0].ModRevision
}

// encode and decode turn a store value into its etcd value and back: a marker byte
// keeps a deleted key as a tombstone so that ModRevision never goes back to 0.
func encode(v []byte) []byte {
	if v == nil {
		return []byte{markDeleted}
	}
	return append([]byte{markValue}, v...)
}

func decode(b []byte) []byte {
	if len(b) == 0 || b[0] != markValue {
		return nil
	}
	return append([]byte{}, b[1:]...)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// backoff is the pause before retry attempt+1: short at first (a conflict or a leader
// change resolves in milliseconds), at most about 200 ms, with jitter so competing
// helpers spread apart.
func backoff(attempt int) time.Duration {
	base := time.Millisecond << min(attempt, 7) // 1 ms .. 128 ms
	return base/2 + mrand.N(base)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Get implements store.Store with a linearizable read.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: get %q: %w", key, store.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.state+key)
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return decode(resp.Kvs[0].Value), nil
}

// Keys implements store.Store. It reads the values to leave tombstones out.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: keys: %w", store.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.state, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("store: keys: %w", err)
	}
	var keys []string
	for _, kv := range resp.Kvs {
		if len(kv.Value) > 0 && kv.Value[0] == markValue {
			keys = append(keys, strings.TrimPrefix(string(kv.Key), s.state))
		}
	}
	return keys, nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close implements store.Store: queued Updates finish first, then the client closes.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.wg.Wait()
		s.mu.Lock()
		s.stopping = true
		s.readyCond.Broadcast()
		s.mu.Unlock()
		s.cwg.Wait()
		if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
			s.closeErr = fmt.Errorf("close etcd store: %w", err)
		}
	})
	return s.closeErr
}
