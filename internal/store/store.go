package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
)

// UpdateFunc computes the next value of one key from its current value cur (nil when
// the key is absent). It returns changed == false to leave the value as it is, and an
// error to abandon the update. Returning changed == true with next == nil deletes the key.
//
// An UpdateFunc may run more than once for one Update call (a retry after a busy
// database or a conflict), so it must be a pure function of cur: no I/O, no side effects
// that matter if repeated. It receives its own copy of cur and may modify it; it must
// not call back into the Store, which may be holding a lock or a transaction for it.
type UpdateFunc func(cur []byte) (next []byte, changed bool, err error)

// Store keeps one value per logical unit and changes it atomically.
type Store interface {
	// Update runs fn with the current value of key (nil when absent) inside one
	// transaction. If fn returns changed == true, next replaces the value (next == nil
	// deletes the key) and is durable (fsynced) before Update returns nil. If fn returns
	// an error nothing changes and Update returns it (wrapped). fn may run more than once
	// (retries after a busy/conflict) and must be a pure function of cur. A ctx that ends
	// before fn ran makes Update return ctx.Err() without change; once fn ran, Update
	// waits for the outcome of its transaction so the caller never mistakes a committed
	// change for a failed one.
	Update(ctx context.Context, key string, fn UpdateFunc) error
	// Get returns the current value (nil when absent), for tools and tests.
	Get(ctx context.Context, key string) ([]byte, error)
	// Keys lists the keys that have a value, in ascending byte order, for tools.
	Keys(ctx context.Context) ([]string, error)
	// List reads every value under a key prefix ("" for all) in one consistent
	// snapshot (one read transaction), in ascending key order: for tools that list
	// the state while helpers write it, and for the fence coordinator's scan.
	List(ctx context.Context, prefix string) ([]Entry, error)
	// Close releases the store; Updates already queued finish first, later calls fail
	// with ErrClosed. Close is idempotent.
	Close() error
}

// Queuer is a Store that queues Updates itself and groups those of a key into its
// transactions, while one is in flight too (the etcd store: docs/performance.md
// §5.6.1). Its caller may keep several Updates of one key in flight.
type Queuer interface {
	Store
	// Queue is Update in two steps: the call is queued when Queue returns, after
	// those of the same key queued before it (their fns run before its fn, on
	// the values they leave), and wait returns what Update would have. wait
	// must be called once.
	Queue(ctx context.Context, key string, fn UpdateFunc) (wait func() error)
}

// ErrClosed is returned by Update, Get and Keys on a Store after Close.
var ErrClosed = errors.New("store closed")

// ErrBusy is returned (wrapped) when another process held the database's write lock for
// longer than the store was configured to wait.
var ErrBusy = errors.New("store busy")

// ErrFull is returned (wrapped) when the store has no room for a write (a full
// disk): transient, answered like ErrBusy.
var ErrFull = errors.New("store full")

// ErrReadOnly is returned (wrapped) when the store cannot be written (a
// read-only file or filesystem).
var ErrReadOnly = errors.New("store read-only")

// ErrGone is returned (wrapped) once the store's file was removed or replaced
// under it: what it would write would be lost, and other processes no longer
// see it. Only a restart on the file now at the path (or one restored) helps.
var ErrGone = errors.New("store file removed or replaced")

// Apply runs fn on a copy of cur (nil stays nil), turning a panic into an error: a
// store runs many callers' functions on one goroutine (a writer, a key's worker),
// and one bad function must not take it down with every other Update.
func Apply(fn UpdateFunc, cur []byte) (next []byte, changed bool, err error) {
	return ApplyOwned(fn, bytes.Clone(cur))
}

// ApplyOwned is Apply for a cur that nothing else holds (a value just read
// from the database): fn receives cur itself, not a copy, which spares a copy
// of the whole value per update (docs/performance.md §5).
func ApplyOwned(fn UpdateFunc, cur []byte) (next []byte, changed bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			next, changed, err = nil, false, fmt.Errorf("update function panicked: %v", p)
		}
	}()
	return fn(cur)
}
