package fence

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/pr"
)

// Record is one fence an eviction requires, kept in the store with the logical
// unit's state (docs/fencing.md, "Order"). It is written in the same transaction
// as the eviction, so that it outlives a helper that stops between the commit
// and the fence: any helper serving the victim fences it when it sees the record.
type Record struct {
	// ID names the record: the evicting helper, the time and the victim.
	ID string `json:"id"`
	// Victim is the evicted initiator, as connections name it (InitiatorName).
	Victim string `json:"victim"`
	// Evictor is the initiator whose command evicted Victim.
	Evictor string `json:"evictor"`
	// Created is the commit time (Unix nanoseconds, this host's clock). Only
	// connections of Victim accepted before it are fenced: one accepted later
	// is a new start of the VM.
	Created int64 `json:"created"`
	// Done lists the helpers that fenced every process of Victim they serve.
	Done []string `json:"done,omitempty"`
	// Failed holds, per helper, why its fence of Victim failed (last attempt).
	Failed map[string]string `json:"failed,omitempty"`
}

// doneBy reports whether helper h confirmed r.
func (r *Record) doneBy(h string) bool { return slices.Contains(r.Done, h) }

// envelope is the stored form of a logical unit that has fence records: the
// engine's state as it is, and the records. A logical unit without records is
// stored as the engine's state alone, byte for byte what a helper without
// fencing writes. Version 1 holds a JSON state (pr's version 1 encoding) as
// JSON in State; version 2 holds any other state (pr's binary encoding) as
// base64 in Bin, and a helper that reads only version 1 refuses it rather than
// mistaking it for an empty state.
type envelope struct {
	Fence   int             `json:"fence"`
	Pending []Record        `json:"pending"`
	State   json.RawMessage `json:"state,omitempty"`
	Bin     []byte          `json:"bin,omitempty"`
}

// Envelope versions, the "fence" field.
const (
	envelopeJSON   = 1
	envelopeBinary = 2
)

// Decode splits a stored value into the engine's state bytes and the fence
// records kept with it. A value that is not an envelope is the state itself.
func Decode(v []byte) (state []byte, pending []Record, err error) {
	if v == nil {
		return nil, nil, nil
	}
	var e envelope
	if json.Unmarshal(v, &e) != nil || e.Fence == 0 {
		return v, nil, nil
	}
	switch e.Fence {
	case envelopeJSON:
		if len(e.State) == 0 || string(e.State) == "null" {
			return nil, e.Pending, nil
		}
		return e.State, e.Pending, nil
	case envelopeBinary:
		if len(e.Bin) == 0 {
			return nil, e.Pending, nil
		}
		return e.Bin, e.Pending, nil
	}
	return nil, nil, fmt.Errorf("%w: fence envelope version %d, this helper reads %d and %d", pr.ErrState, e.Fence, envelopeJSON, envelopeBinary)
}

// Encode is the inverse of Decode: state alone when there are no records.
func Encode(state []byte, pending []Record) ([]byte, error) {
	if len(pending) == 0 {
		return state, nil
	}
	e := envelope{Fence: envelopeJSON, Pending: pending, State: state}
	switch {
	case state == nil:
		e.State = json.RawMessage("null")
	case !json.Valid(state):
		e = envelope{Fence: envelopeBinary, Pending: pending, Bin: state}
	}
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode fence records: %w", err)
	}
	return b, nil
}
