package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// profile is the engine profile the daemon serves emulated LUs with.
func profile() pr.Profile { return pr.LIO() }

// lu is one stored logical unit, decoded as the emulate backend and fencing
// store it: the engine's state, and the fence records kept with it.
type lu struct {
	name     string
	value    []byte
	state    *pr.State // nil when the value cannot be decoded (err says why)
	pending  []fence.Record
	err      error
	changed  time.Time
	revision int64
}

func decodeLU(e store.Entry) lu {
	l := lu{name: strings.TrimPrefix(e.Key, emulate.KeyPrefix), value: e.Value, changed: e.Changed, revision: e.Revision}
	l.state, l.pending, l.err = decodeValue(e.Value)
	return l
}

// decodeValue splits a stored value into the engine's state and the fence
// records (fence.Decode), and decodes and validates the state.
func decodeValue(v []byte) (*pr.State, []fence.Record, error) {
	raw, pending, err := fence.Decode(v)
	if err != nil {
		return nil, nil, err
	}
	st := &pr.State{}
	if raw != nil {
		if err := st.UnmarshalBinary(raw); err != nil {
			return nil, pending, err
		}
	}
	return st, pending, nil
}

// encodeValue is the inverse of decodeValue: what a helper would store.
func encodeValue(st *pr.State, pending []fence.Record) ([]byte, error) {
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return fence.Encode(raw, pending)
}

// lus reads every stored logical unit in one snapshot.
func lus(ctx context.Context, st store.Store) ([]lu, error) {
	es, err := st.List(ctx, emulate.KeyPrefix)
	if err != nil {
		return nil, err
	}
	out := make([]lu, 0, len(es))
	for _, e := range es {
		out = append(out, decodeLU(e))
	}
	return out, nil
}

// getLU reads one logical unit; absent is exitNotFound.
func getLU(ctx context.Context, st store.Store, name string) (lu, error) {
	v, err := st.Get(ctx, emulate.KeyPrefix+name)
	if err != nil {
		return lu{}, err
	}
	if v == nil {
		return lu{}, fail(exitNotFound, fmt.Errorf("no LU %q in the store (prhelperctl list shows the LUs)", name))
	}
	l := decodeLU(store.Entry{Key: emulate.KeyPrefix + name, Value: v})
	// Get carries no time; List does, for this key alone.
	if es, err := st.List(ctx, emulate.KeyPrefix+name); err == nil {
		for _, e := range es {
			if e.Key == emulate.KeyPrefix+name {
				l.changed, l.revision = e.Changed, e.Revision
			}
		}
	}
	return l, nil
}

// lastChange describes when the LU last changed, as the store knows it.
func (l lu) lastChange() string {
	switch {
	case !l.changed.IsZero():
		return l.changed.UTC().Format(time.RFC3339)
	case l.revision != 0:
		return fmt.Sprintf("revision %d", l.revision)
	}
	return "-"
}

// typeName is sg_persist's name of a reservation TYPE (SPC-4 table 169).
func typeName(t byte) string {
	switch t {
	case scsi.TypeWriteExclusive:
		return "Write Exclusive"
	case scsi.TypeExclusiveAccess:
		return "Exclusive Access"
	case scsi.TypeWriteExclusiveRegOnly:
		return "Write Exclusive, registrants only"
	case scsi.TypeExclusiveAccessRegOnly:
		return "Exclusive Access, registrants only"
	case scsi.TypeWriteExclusiveAllRegs:
		return "Write Exclusive, all registrants"
	case scsi.TypeExclusiveAccessAllRegs:
		return "Exclusive Access, all registrants"
	}
	return fmt.Sprintf("obsolete [0x%x]", t)
}

// shortType is the TYPE column of list.
func shortType(t byte) string {
	switch t {
	case scsi.TypeWriteExclusive:
		return "WE"
	case scsi.TypeExclusiveAccess:
		return "EA"
	case scsi.TypeWriteExclusiveRegOnly:
		return "WE-RO"
	case scsi.TypeExclusiveAccessRegOnly:
		return "EA-RO"
	case scsi.TypeWriteExclusiveAllRegs:
		return "WE-AR"
	case scsi.TypeExclusiveAccessAllRegs:
		return "EA-AR"
	}
	return fmt.Sprintf("0x%x", t)
}

// holder names the reservation holder and its key.
func holder(st *pr.State) (who string, key uint64) {
	r := st.Reservation
	if r == nil {
		return "", 0
	}
	for _, reg := range st.Registrations {
		if reg.Nexus.Equal(r.Holder) {
			key = reg.Key
		}
	}
	if r.Type == scsi.TypeWriteExclusiveAllRegs || r.Type == scsi.TypeExclusiveAccessAllRegs {
		return "all registrants", key
	}
	return r.Holder.String(), key
}

func hexKey(k uint64) string { return fmt.Sprintf("0x%x", k) }
