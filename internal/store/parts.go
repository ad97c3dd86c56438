package store

import (
	"context"
	"fmt"
)

// PartStore is a Store that can also keep a value in parts (docs/performance.md
// §5.7.6): the value is the concatenation of its parts in ascending Seq
// order, and an update writes only the parts it changes, so that its cost
// follows what changed, not the size of the value. Get, Update and every
// other Store method see the whole value, whichever form it is kept in (an
// Update writes it back whole); only UpdateParts writes parts.
type PartStore interface {
	Store
	// UpdateParts runs fn inside one transaction with the version of key's
	// value and a function that reads the whole value (nil when absent) and,
	// when it is kept in parts, its parts.
	// The version is 0 when the key is absent; every committed write of the
	// key, by any method or process, gives it a version it never had
	// before, so a caller that remembers the version of a value it wrote
	// knows, from an equal version, that the value is still the one it
	// wrote. What fn returns is made durable before UpdateParts returns the
	// key's version after it (the same rules as Update otherwise: fn may run
	// more than once and must be a pure function of what it is given; an
	// error from fn changes nothing and is returned wrapped).
	UpdateParts(ctx context.Context, key string, fn PartsFunc) (version uint64, err error)
}

// PartsFunc computes an UpdateParts change from the value's version and a
// reader of the value (see PartStore.UpdateParts).
type PartsFunc func(version uint64, read ReadFunc) (Parts, error)

// ReadFunc reads a value whole (nil when absent) and, when it is kept in
// parts, its parts in Seq order (nil when it is kept whole): a writer that
// knows how the parts divide the value can go on writing only those that
// change, whoever wrote them.
type ReadFunc func() (value []byte, parts []Part, err error)

// Parts is the change an UpdateParts makes to a value.
type Parts struct {
	// Write is false to change nothing.
	Write bool
	// Whole, when not nil, is the new value, kept whole (as Update writes
	// it: the parts it had are dropped); the fields below are then ignored.
	// A small value costs less whole than in parts.
	Whole []byte
	// Replace makes the value Put's parts alone: the parts it had, or its
	// whole form, are dropped. It is required when the value is not
	// already in parts (absent, or written whole by Update).
	Replace bool
	// Delete lists the parts to remove, Put those to add or overwrite
	// (after Delete).
	Delete []int64
	Put    []Part
}

// Part is one part of a value.
type Part struct {
	Seq   int64
	Value []byte
}

// ApplyParts runs fn, turning a panic into an error (as Apply does).
func ApplyParts(fn PartsFunc, version uint64, read ReadFunc) (p Parts, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = Parts{}, fmt.Errorf("update function panicked: %v", r)
		}
	}()
	return fn(version, read)
}
