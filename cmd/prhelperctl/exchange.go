package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
)

// docFormat and docVersion identify an exported document.
const (
	docFormat  = "prhelper-state"
	docVersion = 1
)

// document is export's output and import's input: every LU, in name order,
// with nothing that depends on the store it came from (no times, revisions
// or helper announcements), so that one state exported from SQLite and from
// etcd is the same document.
type document struct {
	Format  string  `json:"format"`
	Version int     `json:"version"`
	LUs     []docLU `json:"lus"`
}

// docLU is one LU: the engine's state in its versioned JSON encoding
// (pr.State.MarshalJSONV1, read back by UnmarshalBinary) and the fence records kept with it; or, for a
// value that cannot be decoded, its bytes as they are (Raw) so that a backup
// keeps them too.
type docLU struct {
	LU            string          `json:"lu"`
	State         json.RawMessage `json:"state,omitempty"`
	PendingFences []fence.Record  `json:"pending_fences,omitempty"`
	Raw           string          `json:"raw,omitempty"`
	Error         string          `json:"error,omitempty"`
}

func (e *env) export(ctx context.Context, st store.Store) (any, error) {
	all, err := lus(ctx, st)
	if err != nil {
		return nil, err
	}
	doc := document{Format: docFormat, Version: docVersion, LUs: []docLU{}}
	for _, l := range all {
		d := docLU{LU: l.name}
		if l.err != nil {
			d.Raw, d.Error = base64.StdEncoding.EncodeToString(l.value), l.err.Error()
			fmt.Fprintf(e.stderr, "prhelperctl: LU %s cannot be decoded (%v): exported as raw bytes\n", l.name, l.err)
		} else {
			raw, err := l.state.MarshalJSONV1()
			if err != nil {
				return nil, err
			}
			d.State, d.PendingFences = raw, l.pending
		}
		doc.LUs = append(doc.LUs, d)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", b)
	return nil, err
}

// importResult is what import did, per LU.
type importResult struct {
	LU      string `json:"lu"`
	Outcome string `json:"outcome"` // created, replaced, unchanged, conflict
}

var errConflict = errors.New("exists with another state")

// importDoc writes every LU of a document, each as one store update: an LU
// that is absent is created, one with the same state is left, one with
// another state is a conflict unless --replace. The document is checked whole
// before anything is written.
func (e *env) importDoc(ctx context.Context, st store.Store) (any, error) {
	in := e.stdin
	if len(e.o.args) == 1 && e.o.args[0] != "-" {
		f, err := os.Open(e.o.args[0])
		if err != nil {
			return nil, fail(exitFile, err)
		}
		defer f.Close()
		in = f
	}
	b, err := io.ReadAll(in)
	if err != nil {
		return nil, fail(exitFile, err)
	}
	values, err := parseDocument(b)
	if err != nil {
		return nil, fail(exitMalformed, err)
	}
	var results []importResult
	conflicts := 0
	for _, v := range values {
		outcome := ""
		err := st.Update(ctx, emulate.KeyPrefix+v.lu, func(cur []byte) ([]byte, bool, error) {
			switch {
			case cur == nil:
				outcome = "created"
			case bytes.Equal(cur, v.value):
				outcome = "unchanged"
				return nil, false, nil
			case !e.o.replace:
				outcome = "conflict"
				return nil, false, nil
			default:
				outcome = "replaced"
			}
			return v.value, true, nil
		})
		if err != nil {
			return results, fmt.Errorf("LU %s: %w (the LUs before it are imported)", v.lu, err)
		}
		if outcome == "conflict" {
			conflicts++
		}
		results = append(results, importResult{LU: v.lu, Outcome: outcome})
		if !e.o.json {
			fmt.Fprintf(e.stdout, "%-9s %s\n", outcome, v.lu)
		}
	}
	if conflicts > 0 {
		err = fail(exitConflict, fmt.Errorf("%d LU(s) %v and were left as they are (--replace overwrites them)", conflicts, errConflict))
	}
	if e.o.json {
		return map[string]any{"lus": results}, err
	}
	return nil, err
}

type importValue struct {
	lu    string
	value []byte
}

// parseDocument checks a document and returns each LU's value as a helper
// would store it.
func parseDocument(b []byte) ([]importValue, error) {
	var doc document
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("not an exported state document: %w", err)
	}
	if doc.Format != docFormat || doc.Version != docVersion {
		return nil, fmt.Errorf("document format %q version %d, this prhelperctl reads %q version %d", doc.Format, doc.Version, docFormat, docVersion)
	}
	seen := map[string]bool{}
	var out []importValue
	for i, l := range doc.LUs {
		if l.LU == "" {
			return nil, fmt.Errorf("LU %d has no name", i)
		}
		if seen[l.LU] {
			return nil, fmt.Errorf("LU %s appears twice", l.LU)
		}
		seen[l.LU] = true
		var v []byte
		switch {
		case l.Raw != "" && l.State == nil:
			raw, err := base64.StdEncoding.DecodeString(l.Raw)
			if err != nil {
				return nil, fmt.Errorf("LU %s: raw: %w", l.LU, err)
			}
			v = raw
		case l.State != nil && l.Raw == "":
			var st pr.State
			if err := st.UnmarshalBinary(l.State); err != nil {
				return nil, fmt.Errorf("LU %s: %w", l.LU, err)
			}
			var err error
			if v, err = encodeValue(&st, l.PendingFences); err != nil {
				return nil, fmt.Errorf("LU %s: %w", l.LU, err)
			}
		default:
			return nil, fmt.Errorf("LU %s: give either state or raw", l.LU)
		}
		out = append(out, importValue{lu: l.LU, value: v})
	}
	return out, nil
}
