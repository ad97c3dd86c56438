package memory

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/prhelper/prhelper/internal/store"
)

// Store is a store.Store kept in memory. The zero value is not usable; call New.
type Store struct {
	mu     sync.Mutex
	values map[string][]byte
	closed bool
}

var _ store.Store = (*Store)(nil)

// New returns an empty in-memory store.
func New() *Store {
	return &Store{values: make(map[string][]byte)}
}

// Update implements store.Store. fn runs under the store's mutex, so updates of all
// keys are serialised; fn must not call the store.
func (s *Store) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store: update %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("store: update %q: %w", key, store.ErrClosed)
	}
	cur, ok := s.values[key]
	next, changed, err := fn(cloneIf(cur, ok))
	if err != nil {
		return fmt.Errorf("store: update %q: %w", key, err)
	}
	if !changed {
		return nil
	}
	if next == nil {
		delete(s.values, key)
		return nil
	}
	s.values[key] = clone(next)
	return nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("store: get %q: %w", key, store.ErrClosed)
	}
	v, ok := s.values[key]
	return cloneIf(v, ok), nil
}

// Keys implements store.Store.
func (s *Store) Keys(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("store: keys: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("store: keys: %w", store.ErrClosed)
	}
	keys := make([]string, 0, len(s.values))
	for k := range s.values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, nil
}

// Close implements store.Store; the values are dropped.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.values = nil
	return nil
}

// cloneIf returns a private copy of v when the key exists (non-nil even when empty) and
// nil when it does not, so "absent" and "empty" stay distinguishable.
func cloneIf(v []byte, ok bool) []byte {
	if !ok {
		return nil
	}
	return clone(v)
}

func clone(v []byte) []byte {
	return append(make([]byte, 0, len(v)), v...)
}

// List implements store.Store; the memory store keeps no times or revisions.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Entry, error) {
	keys, err := s.Keys(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.Entry
	for _, k := range keys {
		if v, ok := s.values[k]; ok && strings.HasPrefix(k, prefix) {
			out = append(out, store.Entry{Key: k, Value: clone(v)})
		}
	}
	return out, nil
}
