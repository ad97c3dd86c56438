package store

import "context"

// Watcher is a Store that can tell a reader when values change, so that a
// reader waiting for other processes' writes (the fence coordinator waiting
// for fence records and confirmations, docs/fencing.md) is woken by the
// change instead of reading every value again every few milliseconds. A
// Store without it is polled.
type Watcher interface {
	// Watch returns a channel that receives a value soon after a key that
	// starts with prefix was written or deleted. Signals are coalesced (the
	// channel holds at most one), and a signal may come without a change:
	// when the watch had to start again (a lost connection, a member without
	// a leader, a compacted revision) it signals, because a change may have
	// been missed meanwhile. A change is never lost: after it, a signal is
	// always delivered. The channel is closed when ctx ends or the store is
	// closed.
	Watch(ctx context.Context, prefix string) <-chan struct{}
}

// Signal delivers one coalesced signal on ch (a Watcher's channel, buffered
// with room for one) without blocking: a signal already waiting covers this one.
func Signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
