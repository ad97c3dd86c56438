package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	sqlite "modernc.org/sqlite"

	"github.com/prhelper/prhelper/internal/store"
)

// SchemaVersion is the version of the database layout this package writes and reads.
// A database with a higher version was written by a newer prhelper and is refused rather
// than misread. Version 2 (parts.go) adds values kept in parts and a version per key; a
// version 1 database is upgraded when opened.
const SchemaVersion = 2

// applicationID marks the file as a prhelper store ("prh1") in the SQLite header, so
// file(1) and Open can tell it from other databases.
const applicationID = 0x70726831

// Default option values.
const (
	DefaultBusyTimeout = 10 * time.Second
	DefaultMaxBatch    = 256
)

// busyPoll is SQLite's own busy_timeout per attempt; the retry loop around it adds
// backoff, the overall bound and context cancellation.
const busyPoll = 50 * time.Millisecond

// Options tunes a Store. The zero value is the recommended configuration.
type Options struct {
	// BusyTimeout bounds how long an Update waits, from the moment it is queued,
	// for the write lock held by another process before it fails with
	// store.ErrBusy (its transaction makes at least one attempt). It stays below the
	// usual 30 s guest SCSI command timeout so the guest gets an answer, not a reset.
	// Zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// NoGroupCommit makes every Update its own transaction (and fsync). It exists to
	// measure what group commit buys; leave it false.
	NoGroupCommit bool
	// MaxBatch bounds how many Updates share one transaction. Zero means DefaultMaxBatch.
	MaxBatch int
	// OnCommit, when set, is told each committed Update transaction (metrics).
	// It runs on the writer goroutine and must return at once.
	OnCommit func(store.Commit)
	// Log receives the store's own alarms (the file removed under it); nil
	// discards them. Errors are returned to callers either way.
	Log *slog.Logger
}

// Store is a store.Store on a SQLite database file. Its methods are safe for concurrent
// use.
type Store struct {
	path string
	opts Options
	db   *sql.DB // pool for Get and Keys; WAL readers never block the writer
	conn *sql.Conn

	mu     sync.Mutex
	queue  []*request
	closed bool
	wake   chan struct{}
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error

	dirSynced bool // writer goroutine only

	// wstmts are the writer connection's prepared statements, by SQL text
	// (writer goroutine only, and Open before it starts); getStmt is Get's,
	// on the pool. Preparing once spares SQLite parsing and planning the
	// same statements for every transaction and read (docs/performance.md §5).
	wstmts  map[string]*sql.Stmt
	getMu   sync.Mutex
	getStmt *sql.Stmt

	// dev and ino identify the database file opened; gone is set once the
	// path no longer names it (removed, or replaced by another file).
	dev, ino uint64
	gone     atomic.Bool

	stats struct{ transactions, updates, busyRetries atomic.Uint64 }
}

// Stats counts what the store did since Open, for metrics and for the tests that check
// group commit really groups.
type Stats struct {
	Transactions uint64 // committed Update transactions (one fsync each)
	Updates      uint64 // Update calls answered by those commits (fn ran)
	BusyRetries  uint64 // attempts (transactions, opens, reads) that found the database busy
}

// Stats returns the counters.
func (s *Store) Stats() Stats {
	return Stats{
		Transactions: s.stats.transactions.Load(),
		Updates:      s.stats.updates.Load(),
		BusyRetries:  s.stats.busyRetries.Load(),
	}
}

var _ store.Store = (*Store)(nil)

type request struct {
	ctx context.Context
	key string
	fn  store.UpdateFunc
	// parts, instead of fn, is an UpdateParts call; version is its answer.
	parts   store.PartsFunc
	version uint64
	*store.Pending
	err   error     // result of the latest fn run, writer goroutine only
	since time.Time // when Update queued it: its busy timeout runs from here
}

// Open opens or creates the store at path. A missing directory is created 0700 and a
// missing file 0600; an existing file must be a prhelper SQLite database with a schema
// version no newer than SchemaVersion.
func Open(path string, opts Options) (*Store, error) {
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.NoGroupCommit {
		opts.MaxBatch = 1
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	abs, err := prepareFile(path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: abs, opts: opts, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := s.open(); err != nil {
		s.closeDB()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(abs, &st); err != nil {
		s.closeDB()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	s.dev, s.ino = st.Dev, st.Ino
	go s.writer()
	return s, nil
}

// sqliteMagic is the first 16 bytes of every SQLite 3 database file
// (https://www.sqlite.org/fileformat.html §1.3).
var sqliteMagic = []byte("SQLite format 3\x00")

// prepareFile makes sure path names a regular file that is empty or starts like a
// SQLite database, creating it (0600, directory 0700) when missing. It checks the header
// itself so that a wrong path fails with a plain message before SQLite touches the file.
func prepareFile(path string) (string, error) {
	if path == "" {
		return "", errors.New("open store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("open store %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("open store %s: create directory: %w", abs, err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		// A new, empty file: SQLite initialises it. Make its name durable now, so a
		// crash cannot lose a store that already acknowledged updates.
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = syncDir(dir)
		}
		if err != nil {
			return "", fmt.Errorf("open store %s: create: %w", abs, err)
		}
		return abs, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("open store %s: %w", abs, err)
	}
	f, err = os.OpenFile(abs, os.O_RDONLY, 0)
	if err != nil {
		return "", fmt.Errorf("open store %s: %w", abs, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("open store %s: %w", abs, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("open store %s: not a regular file (%s)", abs, fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return abs, nil
	}
	head := make([]byte, len(sqliteMagic))
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, sqliteMagic) {
		return "", fmt.Errorf("open store %s: not a SQLite database (bad header); refusing to touch it", abs)
	}
	return abs, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// dsn builds the driver's data source name: a file: URI (so any path survives
// escaping) with mode=rw, because prepareFile already created the file with the right
// permissions and SQLite must not create one with others, and the per-connection
// pragmas. journal_mode is not among them: it is persistent and is set by open only
// after the file proved to be ours.
func dsn(path string) string {
	u := url.URL{Scheme: "file", Path: path}
	q := url.Values{}
	q.Set("mode", "rw")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyPoll.Milliseconds()))
	q.Add("_pragma", "synchronous(FULL)")
	return u.String() + "?" + q.Encode()
}

func (s *Store) open() error {
	db, err := sql.Open("sqlite", dsn(s.path))
	if err != nil {
		return err
	}
	s.db = db
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(0)
	ctx := context.Background()
	// Another process may be creating or converting the same file right now; its locks
	// show as SQLITE_BUSY (even PRAGMA synchronous on a new connection reads the
	// schema) and are waited out like a writer's.
	err = s.retryBusy(ctx, func() error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("connect: %w", describe(err))
		}
		s.conn = conn
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.retryBusy(ctx, func() error { return s.prepareDB(ctx) }); err != nil {
		return err
	}
	if err := s.initSchema(ctx); err != nil {
		return classify(err)
	}
	return s.checkWritable(ctx)
}

// checkWritable commits one small write, so that a database SQLite could only
// open read-only (an immutable file, a read-only filesystem or mount) is
// refused at start rather than failing every command later.
func (s *Store) checkWritable(ctx context.Context) error {
	err := s.withWriteTx(ctx, func() error {
		_, err := s.conn.ExecContext(ctx, "INSERT INTO meta (name, value) VALUES ('opened', ?) "+
			"ON CONFLICT (name) DO UPDATE SET value = excluded.value", time.Now().UnixMilli())
		return err
	})
	if err != nil {
		return fmt.Errorf("database cannot be written: %w", classify(err))
	}
	return nil
}

// classify wraps SQLite's answers that mean "no room" and "cannot write" in
// store.ErrFull and store.ErrReadOnly, which callers answer as transient.
func classify(err error) error {
	var se *sqlite.Error
	if err == nil || !errors.As(err, &se) {
		return err
	}
	switch se.Code() & 0xff {
	case 13: // SQLITE_FULL
		return fmt.Errorf("%w: %w", store.ErrFull, err)
	case 8: // SQLITE_READONLY
		return fmt.Errorf("%w (read-only file, filesystem or mount): %w", store.ErrReadOnly, err)
	}
	return err
}

// checkFile reports store.ErrGone once the path no longer names the file that
// was opened (removed, or replaced by another): writes would go to a file no
// other process sees and a restart would not find. The first time, it logs an
// error; it stays gone.
func (s *Store) checkFile() error {
	if s.gone.Load() {
		return fmt.Errorf("%w: %s", store.ErrGone, s.path)
	}
	var st unix.Stat_t
	err := unix.Stat(s.path, &st)
	switch {
	case err == nil && st.Dev == s.dev && st.Ino == s.ino:
		return nil
	case err != nil && !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("store file %s: %w", s.path, err)
	}
	if s.gone.CompareAndSwap(false, true) {
		s.opts.Log.Error("the state database was removed or replaced under this helper: refusing every command from now on (restart the helper on the database to use; what it acknowledged is in the file it had open, until that file is closed)",
			"db", s.path, "dev", s.dev, "inode", s.ino)
	}
	return fmt.Errorf("%w: %s", store.ErrGone, s.path)
}

// prepareDB checks the file's integrity and identity and switches it to WAL mode.
func (s *Store) prepareDB(ctx context.Context) error {
	var check string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA quick_check").Scan(&check); err != nil {
		return fmt.Errorf("quick_check: %w", describe(err))
	}
	if check != "ok" {
		return fmt.Errorf("database is corrupt: quick_check: %s", oneLine(check, 200))
	}
	// Identify the file before anything writes to it: even switching the journal mode
	// rewrites the header of a database that is not ours. The reads share one read
	// transaction, so a store another process is creating right now is seen either
	// empty or complete, never half made.
	if _, err := s.conn.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin: %w", describe(err))
	}
	_, _, err := s.inspect(ctx)
	s.rollback()
	if err != nil {
		return err
	}
	var mode string
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode); err != nil {
		return fmt.Errorf("set journal_mode: %w", describe(err))
	}
	if mode != "wal" {
		return fmt.Errorf("journal_mode is %q, want wal (is the file on a filesystem without shared-memory locking?)", mode)
	}
	return nil
}

// oneLine folds SQLite's multi-line diagnostics into one bounded line for an error.
func oneLine(msg string, limit int) string {
	msg = strings.Join(strings.Fields(msg), " ")
	if len(msg) > limit {
		msg = msg[:limit] + "…"
	}
	return msg
}

// describe turns SQLite's answers to a file that is damaged or not a database into a
// message an operator can act on.
func describe(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case 26: // SQLITE_NOTADB
			return fmt.Errorf("not a SQLite database: %w", err)
		case 11: // SQLITE_CORRUPT
			return fmt.Errorf("database is corrupt: %w", err)
		}
	}
	return err
}

// isBusy reports SQLITE_BUSY (another connection holds the lock) and SQLITE_LOCKED,
// including their extended codes.
func isBusy(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code() & 0xff
	return c == 5 || c == 6
}

// inspect reports whether the database is empty (new) and otherwise checks that it is a
// prhelper store whose schema this build can read, and returns its schema version. It
// only reads.
func (s *Store) inspect(ctx context.Context) (empty bool, version int64, err error) {
	var appID int64
	if err := s.conn.QueryRowContext(ctx, "PRAGMA application_id").Scan(&appID); err != nil {
		return false, 0, describe(err)
	}
	var tables, hasMeta int
	err = s.conn.QueryRowContext(ctx,
		"SELECT count(*), count(*) FILTER (WHERE name = 'meta') FROM sqlite_schema WHERE type = 'table'").
		Scan(&tables, &hasMeta)
	if err != nil {
		return false, 0, describe(err)
	}
	if tables == 0 && appID == 0 {
		return true, 0, nil
	}
	if appID != applicationID || hasMeta == 0 {
		return false, 0, fmt.Errorf("not a prhelper store (application_id %#x, %d tables); refusing to touch it", appID, tables)
	}
	err = s.conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = 'schema_version'").Scan(&version)
	if err != nil {
		return false, 0, fmt.Errorf("read schema_version: %w", describe(err))
	}
	switch {
	case version > SchemaVersion:
		return false, 0, fmt.Errorf("schema version %d is newer than this prhelper supports (%d); upgrade prhelper", version, SchemaVersion)
	case version < 1:
		return false, 0, fmt.Errorf("invalid schema version %d", version)
	}
	return false, version, nil
}

// initSchema creates schema version 2 in an empty database, or upgrades a version 1
// database to it (parts.go). It checks again inside the write transaction because another
// process may have created or upgraded it meanwhile; a version 2 schema is never altered.
func (s *Store) initSchema(ctx context.Context) error {
	return s.withWriteTx(ctx, func() error {
		empty, version, err := s.inspect(ctx)
		if err != nil {
			return err
		}
		if !empty {
			if version == 1 {
				return s.upgradeV1(ctx)
			}
			return nil
		}
		stmts := []string{
			fmt.Sprintf("PRAGMA application_id = %d", applicationID),
			"CREATE TABLE meta (name TEXT PRIMARY KEY, value NOT NULL)",
			// Schema 1's table with what schema 2 adds to it, as an upgrade
			// adds it: a new store and an upgraded one have one schema.
			"CREATE TABLE lu (key TEXT PRIMARY KEY, value BLOB NOT NULL, updated INTEGER NOT NULL)",
		}
		stmts = append(append(stmts, luV2Columns...), schemaV2...)
		stmts = append(stmts, fmt.Sprintf("INSERT INTO meta (name, value) VALUES ('schema_version', %d)", SchemaVersion))
		for _, stmt := range stmts {
			if _, err := s.conn.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("create schema: %w", err)
			}
		}
		return nil
	})
}

// withWriteTx runs body in BEGIN IMMEDIATE ... COMMIT on the writer connection, retrying
// while the database is busy, up to the busy timeout.
func (s *Store) withWriteTx(ctx context.Context, body func() error) error {
	return s.withWriteTxUntil(ctx, time.Now().Add(s.opts.BusyTimeout), body)
}

// withWriteTxUntil is withWriteTx retrying until deadline (at least one attempt).
func (s *Store) withWriteTxUntil(ctx context.Context, deadline time.Time, body func() error) error {
	return s.retryBusyUntil(ctx, deadline, func() error {
		err := s.begin(ctx)
		if err == nil {
			if err = body(); err == nil {
				if _, err = s.wexec(ctx, "COMMIT"); err == nil {
					return nil
				}
			}
			s.rollback()
		}
		return err
	})
}

// retryBusy runs op until it succeeds, fails with anything but SQLITE_BUSY, ctx ends or
// the busy timeout passes.
func (s *Store) retryBusy(ctx context.Context, op func() error) error {
	return s.retryBusyUntil(ctx, time.Now().Add(s.opts.BusyTimeout), op)
}

// retryBusyUntil is retryBusy with the time limit given as a deadline.
func (s *Store) retryBusyUntil(ctx context.Context, deadline time.Time, op func() error) error {
	for attempt := 0; ; attempt++ {
		err := op()
		if err == nil || !isBusy(err) {
			return err
		}
		s.stats.busyRetries.Add(1)
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: database locked by another process for over %v: %v", store.ErrBusy, s.opts.BusyTimeout, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

func (s *Store) begin(ctx context.Context) error {
	_, err := s.wexec(ctx, "BEGIN IMMEDIATE")
	return err
}

// wstmt returns the writer connection's prepared statement for query,
// preparing it the first time.
func (s *Store) wstmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if st := s.wstmts[query]; st != nil {
		return st, nil
	}
	st, err := s.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if s.wstmts == nil {
		s.wstmts = make(map[string]*sql.Stmt)
	}
	s.wstmts[query] = st
	return st, nil
}

// wexec runs query's prepared statement on the writer connection.
func (s *Store) wexec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := s.wstmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

// getQuery is Get's statement: the whole value, in one snapshot, whichever form
// it is kept in (parts.go).
const getQuery = "SELECT " + valueExpr + " FROM lu WHERE key = ?"

// getStatement returns Get's prepared statement on the pool (database/sql
// prepares it again on each pooled connection that runs it, once).
func (s *Store) getStatement(ctx context.Context) (*sql.Stmt, error) {
	s.getMu.Lock()
	defer s.getMu.Unlock()
	if s.getStmt == nil {
		st, err := s.db.PrepareContext(ctx, getQuery)
		if err != nil {
			return nil, err
		}
		s.getStmt = st
	}
	return s.getStmt, nil
}

// rollback ends a failed transaction. Its own error is dropped: either there was no
// transaction left (SQLite rolls back by itself after some errors), or the connection is
// broken and the next statement reports that.
func (s *Store) rollback() {
	_, _ = s.conn.ExecContext(context.Background(), "ROLLBACK")
}

// backoff is the pause before retry attempt+1 after SQLITE_BUSY: SQLite's busy handler
// already waited busyPoll, so this only spreads competing processes apart with jitter.
func backoff(attempt int) time.Duration {
	base := time.Millisecond << min(attempt, 6) // 1 ms .. 64 ms
	return base/2 + rand.N(base)
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

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: update %q: %w", key, err)
	}
	return s.submit(ctx, &request{ctx: ctx, key: key, fn: fn, Pending: store.NewPending(), since: time.Now()})
}

// submit queues r for the writer and waits for its answer (Update, UpdateParts).
func (s *Store) submit(ctx context.Context, r *request) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("store: update %q: %w", r.key, store.ErrClosed)
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if err := r.Wait(ctx); err != nil {
		return fmt.Errorf("store: update %q: %w", r.key, err)
	}
	return nil
}

// writer is the single goroutine that owns the writer connection and runs batches.
func (s *Store) writer() {
	defer close(s.done)
	for {
		batch := s.next()
		if batch == nil {
			return
		}
		s.runBatch(batch)
	}
}

// next waits for queued requests and takes up to MaxBatch of them; it returns nil once
// the store is closed and the queue is empty.
func (s *Store) next() []*request {
	for {
		s.mu.Lock()
		if n := len(s.queue); n > 0 {
			n = min(n, s.opts.MaxBatch)
			batch := s.queue[:n:n]
			s.queue = s.queue[n:]
			if len(s.queue) == 0 {
				s.queue = nil
			}
			s.mu.Unlock()
			return batch
		}
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return nil
		}
		<-s.wake
	}
}

// runBatch applies a batch of updates in one transaction. The values each fn produces
// are kept in an overlay, so later fns in the batch see earlier results, a failing fn
// contributes nothing, and each changed key is written once before the single COMMIT.
func (s *Store) runBatch(batch []*request) {
	ctx := context.Background()
	start := time.Now()
	if err := s.checkFile(); err != nil {
		for _, r := range batch {
			r.Finish(err)
		}
		return
	}
	// The busy timeout bounds each Update's wait from when it was queued, not
	// each batch's: one queued behind a batch that waited for a foreign lock
	// must not wait a second full timeout (issue 12: 17.5 s where 10 s is
	// documented).
	oldest := batch[0].since
	for _, r := range batch[1:] {
		if r.since.Before(oldest) {
			oldest = r.since
		}
	}
	var live []*request // requests whose fn ran and succeeded or failed on its own
	err := s.withWriteTxUntil(ctx, oldest.Add(s.opts.BusyTimeout), func() error {
		live = live[:0]
		overlay := map[string][]byte{}
		var dirty []string
		for _, r := range batch {
			if !r.Take() {
				continue // abandoned by its caller
			}
			live = append(live, r)
			if err := r.ctx.Err(); err != nil {
				r.err = err
				continue
			}
			if r.parts != nil {
				// Parts are written at once: the key's value as changed by
				// this batch so far is written first, and what follows in
				// the batch reads the key from the database again.
				if v, ok := overlay[r.key]; ok {
					if err := s.write(ctx, r.key, v, time.Now().UnixMilli()); err != nil {
						return err
					}
					delete(overlay, r.key)
					dirty = slices.DeleteFunc(dirty, func(k string) bool { return k == r.key })
				}
				fnErr, err := s.applyParts(ctx, r)
				if err != nil {
					return err
				}
				r.err = fnErr
				continue
			}
			var next []byte
			var changed bool
			var err error
			if cur, ok := overlay[r.key]; ok {
				next, changed, err = store.Apply(r.fn, cur)
			} else {
				// A value read for this fn alone: its own copy already.
				if cur, err = s.read(ctx, r.key); err != nil {
					return err
				}
				next, changed, err = store.ApplyOwned(r.fn, cur)
			}
			r.err = err
			if err != nil || !changed {
				continue
			}
			if _, seen := overlay[r.key]; !seen {
				dirty = append(dirty, r.key) // dirty and overlay hold exactly the changed keys
			}
			overlay[r.key] = bytes.Clone(next)
		}
		now := time.Now().UnixMilli()
		for _, k := range dirty {
			if err := s.write(ctx, k, overlay[k], now); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.stats.transactions.Add(1)
		s.stats.updates.Add(uint64(len(live)))
		if s.opts.OnCommit != nil {
			s.opts.OnCommit(store.Commit{Updates: len(live), Duration: time.Since(start)})
		}
	}
	err = classify(err)
	if err == nil && !s.dirSynced {
		// The first commit of this connection may have created the -wal file; make its
		// directory entry durable once (SQLite fsyncs the file, not the directory).
		if derr := syncDir(filepath.Dir(s.path)); derr != nil {
			err = fmt.Errorf("sync directory: %w", derr)
		} else {
			s.dirSynced = true
		}
	}
	for _, r := range batch {
		if err == nil {
			r.Finish(r.err)
		} else {
			r.Finish(err)
		}
	}
}

func (s *Store) read(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	st, err := s.wstmt(ctx, getQuery)
	if err == nil {
		err = st.QueryRowContext(ctx, key).Scan(&v)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

func (s *Store) write(ctx context.Context, key string, v []byte, now int64) error {
	var err error
	// A value kept in parts (parts.go) loses them (the triggers lu_whole and
	// lu_version_delete delete them): it is written whole.
	if v == nil {
		_, err = s.wexec(ctx, "DELETE FROM lu WHERE key = ?", key)
	} else {
		_, err = s.wexec(ctx,
			"INSERT INTO lu (key, value, updated, parted) VALUES (?, ?, ?, 0) "+
				"ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated = excluded.updated, parted = 0",
			key, v, now)
	}
	if err != nil {
		return fmt.Errorf("write %q: %w", key, err)
	}
	return nil
}

// Get implements store.Store. It reads the latest committed value through a separate
// connection; in WAL mode it never waits for a writer.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: get %q: %w", key, store.ErrClosed)
	}
	if err := s.checkFile(); err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	var v []byte
	err := s.retryBusy(ctx, func() error {
		st, err := s.getStatement(ctx)
		if err != nil {
			return err
		}
		return st.QueryRowContext(ctx, key).Scan(&v)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// Keys implements store.Store.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: keys: %w", store.ErrClosed)
	}
	var keys []string
	err := s.retryBusy(ctx, func() error {
		keys = nil
		rows, err := s.db.QueryContext(ctx, "SELECT key FROM lu ORDER BY key")
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: keys: %w", err)
	}
	return keys, nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Pragmas reports the journal mode and synchronous level of the writer connection, so
// tests and tools can check that durability settings are really in effect.
func (s *Store) Pragmas(ctx context.Context) (journalMode string, synchronous int, err error) {
	if err := s.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journalMode); err != nil {
		return "", 0, fmt.Errorf("store: pragma journal_mode: %w", err)
	}
	if err := s.conn.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous); err != nil {
		return "", 0, fmt.Errorf("store: pragma synchronous: %w", err)
	}
	return journalMode, synchronous, nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close implements store.Store: queued Updates are committed first, then the
// connections close (the last connection on the file checkpoints and removes the WAL).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
		<-s.done
		s.closeErr = s.closeDB()
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("close store %s: %w", s.path, s.closeErr)
		}
	})
	return s.closeErr
}

func (s *Store) closeDB() error {
	var errs []error
	for _, st := range s.wstmts {
		errs = append(errs, st.Close())
	}
	if s.getStmt != nil {
		errs = append(errs, s.getStmt.Close())
	}
	if s.conn != nil {
		errs = append(errs, s.conn.Close())
	}
	if s.db != nil {
		errs = append(errs, s.db.Close())
	}
	return errors.Join(errs...)
}
