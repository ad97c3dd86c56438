package store_test

import (
	"context"
	"errors"
	"testing"

	"github.com/prhelper/prhelper/internal/store"
)

func TestPendingAbandonedBeforeTake(t *testing.T) {
	p := store.NewPending()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after cancel, not taken: %v, want context.Canceled", err)
	}
	if p.Take() {
		t.Fatal("Take succeeded on an abandoned call")
	}
	p.Finish(errors.New("late")) // must not block: the answer is dropped
}

func TestPendingTakenOutlivesCtx(t *testing.T) {
	p := store.NewPending()
	if !p.Take() || !p.Take() {
		t.Fatal("Take of a queued call (and again, for a retry) must succeed")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	want := errors.New("committed answer")
	go p.Finish(want)
	if err := p.Wait(ctx); err != want {
		t.Fatalf("Wait of a taken call after cancel = %v, want the worker's answer", err)
	}
}

func TestPendingFinishQueued(t *testing.T) {
	// A call the worker never took (its batch failed first) gets the batch's error,
	// and its caller can no longer abandon it.
	p := store.NewPending()
	want := errors.New("no quorum")
	p.Finish(want)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Wait(ctx); err != want {
		t.Fatalf("Wait = %v, want %v", err, want)
	}
	if !p.Take() {
		t.Fatal("a finished call counts as taken")
	}
}
