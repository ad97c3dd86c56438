package store

import (
	"context"
	"sync/atomic"
)

// Pending is one Update call queued in a store until the store's worker answers it.
// Exactly one of two things happens first: the worker takes it (Take), just before
// its UpdateFunc runs, or its caller abandons it because the caller's ctx ended
// (inside Wait). An abandoned call never runs; a taken one is always answered with
// the outcome of its transaction, even after the caller's ctx ended, so that a
// committed change is never reported as failed (the Store.Update contract).
type Pending struct {
	state atomic.Int32
	done  chan error
}

const (
	pendingQueued int32 = iota
	pendingTaken
	pendingAbandoned
)

// NewPending returns a queued call.
func NewPending() *Pending {
	return &Pending{done: make(chan error, 1)}
}

// Take marks p taken by the worker and reports whether its UpdateFunc may run:
// false once its caller abandoned it. Taking a call again (a retried transaction)
// returns true.
func (p *Pending) Take() bool {
	return p.state.CompareAndSwap(pendingQueued, pendingTaken) || p.state.Load() == pendingTaken
}

// Finish answers p with err; the worker calls it exactly once per call. A call
// still queued is taken first, so that its caller, if still waiting, gets err.
func (p *Pending) Finish(err error) {
	p.state.CompareAndSwap(pendingQueued, pendingTaken)
	p.done <- err
}

// Wait returns the answer given to Finish. When ctx ends first, a call not yet
// taken is abandoned and Wait returns ctx.Err(); a taken one still waits for its
// answer.
func (p *Pending) Wait(ctx context.Context) error {
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		if p.state.CompareAndSwap(pendingQueued, pendingAbandoned) {
			return ctx.Err()
		}
		return <-p.done
	}
}
