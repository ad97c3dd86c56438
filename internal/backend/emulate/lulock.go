package emulate

import (
	"context"
	"sync"
)

// luLocks serialises the commands of one logical unit inside this process, so
// that a command computed on a snapshot of the state (Execute) rarely finds
// the state changed under it, while commands of other logical units run in
// parallel. Entries live only while a command holds or waits for them.
type luLocks struct {
	mu sync.Mutex
	m  map[string]*luLock
}

type luLock struct {
	ch   chan struct{} // holds one token while the LU is locked
	refs int           // holders and waiters
}

// lock waits for key's lock or ctx's end, and returns the function that
// releases it.
func (l *luLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*luLock)
	}
	e := l.m[key]
	if e == nil {
		e = &luLock{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
