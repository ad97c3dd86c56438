package vinit

import (
	"context"
	"errors"
	"maps"
	"slices"
	"time"
)

// PollInterval is how often the daemon polls each LUN this host is registered
// on (docs/virtual-initiators.md §7): a change made on the LUN by something
// else is noticed within this time plus one command's.
const PollInterval = 5 * time.Second

// keep keeps a descriptor of the LUN behind fd for the poll, once (l locked).
func (b *Backend) keep(l *luState, fd int) {
	if l.fd >= 0 {
		return
	}
	kept, err := b.o.Dup(fd)
	if err != nil {
		b.o.Logger.Warn("vinit: cannot keep a descriptor of the LUN for the poll; changes made there by others are noticed at the next command", "err", err)
		return
	}
	l.fd = kept
}

// drop releases the descriptor kept for the poll (l locked): the host is not
// registered on the LUN, so there is nothing of its own there to lose, and an
// open descriptor would keep a multipath map from being flushed.
func (b *Backend) drop(l *luState) {
	if l.fd < 0 {
		return
	}
	if err := b.o.Close(l.fd); err != nil {
		b.o.Logger.Warn("vinit: closing a kept LUN descriptor", "err", err)
	}
	l.fd = -1
}

// PollKept polls lu through the descriptor kept for it, if any.
func (b *Backend) PollKept(ctx context.Context, lu string) error {
	l := b.lu(lu)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fd < 0 {
		return nil
	}
	lower, err := b.o.Lower(l.fd)
	if err != nil {
		return err
	}
	return b.poll(ctx, lu, l.fd, lower, l)
}

// Run polls every LU with a kept descriptor at each tick until ctx ends
// (the daemon: a time.Ticker of PollInterval); failures are logged.
func (b *Backend) Run(ctx context.Context, ticks <-chan time.Time) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticks:
		}
		b.mu.Lock()
		lus := slices.Sorted(maps.Keys(b.lus))
		b.mu.Unlock()
		for _, lu := range lus {
			if err := b.PollKept(ctx, lu); err != nil {
				b.o.Logger.Warn("vinit: poll", "lu", lu, "err", err)
			}
		}
	}
}

// Close releases the kept descriptors.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var errs []error
	for _, l := range b.lus {
		l.mu.Lock()
		if l.fd >= 0 {
			errs = append(errs, b.o.Close(l.fd))
			l.fd = -1
		}
		l.mu.Unlock()
	}
	return errors.Join(errs...)
}
