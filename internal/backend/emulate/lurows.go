package emulate

import (
	"bytes"
	"context"
	"math"
	"slices"

	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
)

// A unit's state in rows (docs/performance.md §5.7.6). On a store that keeps
// values in parts (store.PartStore: the SQLite store) and without fencing, or
// with a fencing that adds nothing without fence records (--fence=none, the
// daemon's default: rowsFencing),
// the committer stores a unit's state as parts whose concatenation is its
// MarshalBinary encoding: part headSeq is the head (pr.State.AppendBinaryHead),
// part tailSeq the tail, and between them the registrations, in runs of up to
// partRegs consecutive ones, each run a part numbered by the pr.Rows ID of its
// first registration (IDs increase in registration order; a run keeps the IDs
// from its number up to the next run's). A batch then writes the head, the
// tail and the runs holding the registrations its commands added, changed or
// removed (pr.State.TrackRows), not the whole state, so what a command costs
// does not grow with the registrations; a reader (Get: PR IN, prhelperctl, a
// fencing helper) reads a part per run rather than per registration. New
// registrations go to the last run until it is full; a run emptied by
// removals is deleted; runs are never merged.
//
// The committer keeps the decoded state, its row IDs, its runs and the
// store's version of the value it last wrote. A batch runs on that state, and
// inside the store's transaction its parts are written only if the stored
// version is still that one; otherwise (another process, prhelperctl, a first
// command, a value kept whole) the commands run again on the value read
// whole, which is then written in parts anew (Replace): the answers are always
// those of the run that was committed.
const (
	headSeq = 0
	tailSeq = math.MaxInt64
)

// rowsFencing reports whether b's units may be kept in rows: no fencing, or
// one that adds nothing to a command on a value without fence records. A
// value with records (another helper's, with a policy) is run through the
// fencing (runFenced).
func (b *Backend) rowsFencing() bool {
	if b.fencing == nil {
		return true
	}
	p, ok := b.fencing.(plainFencing)
	return ok && p.PlainWithoutRecords()
}

// partWholeMax is the largest encoded state kept whole rather than in parts:
// a value of up to 4,000 bytes fits in its row's page (SQLite's 4 KB page
// holds a row of up to 4,061 bytes without an overflow page), where head,
// runs and tail take two pages or more (the unit's row and its parts), so a
// small unit's commit costs what it did before parts.
const partWholeMax = 4000

// wholeFor returns st's encoding when it is small enough to be kept whole,
// else nil (without encoding a state that cannot be: every registration takes
// more than 8 bytes).
func (b *Backend) wholeFor(st *pr.State) []byte {
	if !b.fitsWhole(len(st.Registrations) * 8) {
		return nil
	}
	v, err := st.MarshalBinary()
	if err != nil || !b.fitsWhole(len(v)) {
		return nil
	}
	return v
}

// fitsWhole says whether an encoding of n bytes is kept whole: up to
// partWholeMax, or what a test set in b.wholeMax (negative: never).
func (b *Backend) fitsWhole(n int) bool {
	max := b.wholeMax
	if max == 0 {
		max = partWholeMax
	}
	return max >= 0 && n <= max
}

// partRegs is how many registrations a run holds at most: about 0.7-2 KB of
// encoding, a page of SQLite's, and 313 parts for 10,000 registrations.
const partRegs = 32

// regsPerRun is partRegs, or what a test set in b.runRegs.
func (b *Backend) regsPerRun() int {
	if b.runRegs > 0 {
		return b.runRegs
	}
	return partRegs
}

// rowsState is a state kept in rows and how it is stored: what a batch
// leaves (rowsRun) and what a unit's committer keeps of it for the next batch
// (luQueue).
type rowsState struct {
	st      pr.State
	rows    *pr.Rows // st's row IDs
	inParts bool     // the state is stored in parts, else whole (a small state)
	runs    []int64  // the runs' numbers, ascending (in parts)
	head    []byte   // the head part's value
	tail    []byte   // the tail part's value
}

// rowsRun is a batch's outcome on a state kept in rows.
type rowsRun struct {
	rowsState
	parts store.Parts
	res   []pr.Result
	waits []*fence.Wait // nil but after runFenced
}

// commitRows is commitBatch on a store that keeps parts, without fencing.
func (b *Backend) commitRows(q *luQueue, ps store.PartStore, live []*luCommand) {
	var guess rowsRun
	useGuess := q.rowsVer != 0 && q.decoded
	if useGuess {
		guess = b.runRows(&q.rowsState, live)
	}
	q.decoded = false // q.st is the guess's state now, or stale
	b.queues.batches.Add(1)
	b.queues.commands.Add(uint64(len(live)))
	var final rowsRun
	ver, err := ps.UpdateParts(context.Background(), q.key, func(ver uint64, read store.ReadFunc) (store.Parts, error) {
		if useGuess && ver == q.rowsVer {
			b.queues.inRows.Add(1) // counted again if retried: tests only
			final = guess
			return final.parts, nil
		}
		cur, parts, err := read()
		if err != nil {
			return store.Parts{}, err
		}
		if b.fencing != nil {
			if _, pending, derr := fence.Decode(cur); derr != nil || len(pending) > 0 {
				final, err = b.runFenced(cur, live)
				return final.parts, err
			}
		}
		final, err = b.runWhole(cur, parts, live)
		return final.parts, err
	})
	if err != nil {
		q.rowsVer = 0 // whether anything changed is unknown: read it again
		for _, c := range live {
			c.Finish(err)
		}
		return
	}
	if final.rows != nil {
		// The stored value is the state in rows: keep it for the next batch.
		q.rowsState, q.rowsVer, q.decoded = final.rowsState, ver, true
	} else {
		q.rowsVer = 0 // unchanged, kept in a form this committer did not write
	}
	for i, c := range live {
		c.res = final.res[i]
		if final.waits != nil {
			c.wait = final.waits[i]
		}
		c.Finish(nil)
	}
}

// runRows runs cmds on q's state (its rows changed in place), which is the
// stored value, and returns the parts to write.
func (b *Backend) runRows(q *rowsState, cmds []*luCommand) rowsRun {
	st, rows := q.st, q.rows
	rows.Reset()
	oldNext := rows.Next
	st.TrackRows(rows)
	r := rowsRun{rowsState: rowsState{st: st, rows: rows}, res: make([]pr.Result, len(cmds))}
	for i, c := range cmds {
		r.res[i] = pr.Execute(b.profile, &r.st, c.nexus, c.cdb, c.param)
	}
	r.st.TrackRows(nil)
	r.head, r.tail = r.st.AppendBinaryHead(nil), r.st.AppendBinaryTail(nil)
	r.runs, r.inParts = q.runs, q.inParts
	if len(rows.Put) == 0 && len(rows.Gone) == 0 && bytes.Equal(r.head, q.head) && bytes.Equal(r.tail, q.tail) {
		return r // nothing to write
	}
	if v := b.wholeFor(&r.st); v != nil {
		r.runs, r.inParts = nil, false
		r.parts = store.Parts{Write: true, Whole: v}
		return r
	}
	if !q.inParts {
		b.replaceParts(&r) // grown out of the whole form
		return r
	}
	runs := slices.Clone(q.runs)
	dirty := map[int64]bool{}
	// The runs of the registrations there were: those changed or removed.
	for _, ids := range [][]int64{rows.Put, rows.Gone} {
		for _, id := range ids {
			if id < oldNext && len(runs) > 0 {
				dirty[runOf(runs, id)] = true
			}
		}
	}
	// The registrations added (the last IDs, all from oldNext) fill the
	// last run, then new ones.
	j0, _ := slices.BinarySearch(rows.IDs, oldNext)
	last := 0
	if len(runs) > 0 {
		first, _ := slices.BinarySearch(rows.IDs, runs[len(runs)-1])
		last = j0 - first
	}
	for j := j0; j < len(rows.IDs); j++ {
		if len(runs) == 0 || last >= b.regsPerRun() {
			runs, last = append(runs, rows.IDs[j]), 0
		}
		last++
		dirty[runs[len(runs)-1]] = true
	}
	p := store.Parts{Write: true}
	// The head and the tail are written when they changed (the tail, with
	// the reservation and the unit attentions, seldom does).
	if !bytes.Equal(r.head, q.head) {
		p.Put = append(p.Put, store.Part{Seq: headSeq, Value: r.head})
	}
	if !bytes.Equal(r.tail, q.tail) {
		p.Put = append(p.Put, store.Part{Seq: tailSeq, Value: r.tail})
	}
	starts := make([]int64, 0, len(dirty))
	for s := range dirty {
		starts = append(starts, s)
	}
	slices.Sort(starts)
	for _, s := range starts {
		k, _ := slices.BinarySearch(runs, s)
		i, _ := slices.BinarySearch(rows.IDs, s)
		end := len(rows.IDs)
		if k+1 < len(runs) {
			end, _ = slices.BinarySearch(rows.IDs, runs[k+1])
		}
		if i == end {
			p.Delete = append(p.Delete, s)
			runs = slices.Delete(runs, k, k+1)
			continue
		}
		p.Put = append(p.Put, store.Part{Seq: s, Value: appendRegs(nil, &r.st, i, end)})
	}
	r.runs, r.parts = runs, p
	return r
}

// replaceParts sets r's parts to write its state in parts anew (Replace):
// its head, a run of up to regsPerRun registrations from each regsPerRun-th
// row ID, its tail.
func (b *Backend) replaceParts(r *rowsRun) {
	per, n := b.regsPerRun(), len(r.st.Registrations)
	p := store.Parts{Write: true, Replace: true, Put: make([]store.Part, 0, n/per+3)}
	p.Put = append(p.Put, store.Part{Seq: headSeq, Value: r.head}, store.Part{Seq: tailSeq, Value: r.tail})
	r.runs = nil
	for i := 0; i < n; i += per {
		s := r.rows.IDs[i]
		r.runs = append(r.runs, s)
		p.Put = append(p.Put, store.Part{Seq: s, Value: appendRegs(nil, &r.st, i, min(i+per, n))})
	}
	r.parts, r.inParts = p, true
}

// runOf returns the number of the run that holds (or held) row id: the
// greatest run number not above it.
func runOf(runs []int64, id int64) int64 {
	k, found := slices.BinarySearch(runs, id)
	if found {
		return runs[k]
	}
	return runs[max(k-1, 0)]
}

// runWhole runs cmds on the stored value cur, decoded, and returns the
// state's parts to write in place of whatever the store holds (nothing when
// the commands changed nothing). A pure function of cur, as a
// store.PartsFunc must be.
func (b *Backend) runWhole(cur []byte, parts []store.Part, cmds []*luCommand) (rowsRun, error) {
	var st pr.State
	if cur != nil {
		if err := st.UnmarshalBinary(cur); err != nil {
			return rowsRun{}, err
		}
	}
	if q, ok := adoptParts(st, parts); ok {
		// Parts laid out as this file lays them out (another helper's on
		// the same file, or this one's own before its cache was lost): go on
		// writing only what changes, rather than all of them again.
		b.queues.adopted.Add(1) // tests only
		return b.runRows(&q, cmds), nil
	}
	r := rowsRun{res: make([]pr.Result, len(cmds))}
	for i, c := range cmds {
		r.res[i] = pr.Execute(b.profile, &st, c.nexus, c.cdb, c.param)
	}
	next, err := st.MarshalBinary()
	if err != nil {
		return rowsRun{}, err
	}
	if cur != nil && bytes.Equal(next, cur) {
		return r, nil // unchanged: written neither whole nor in rows
	}
	r.st, r.rows = st, pr.NewRows(len(st.Registrations), headSeq+1)
	r.head, r.tail = st.AppendBinaryHead(nil), st.AppendBinaryTail(nil)
	if b.fitsWhole(len(next)) { // wholeFor, with next already encoded
		r.parts = store.Parts{Write: true, Whole: next}
		return r, nil
	}
	b.replaceParts(&r)
	return r, nil
}

// runFenced runs cmds through the fencing on the stored value cur, which
// holds fence records (or cannot be decoded: the fencing reports that), and
// returns it to write whole, as one part: what StepAll gives, byte for byte.
func (b *Backend) runFenced(cur []byte, cmds []*luCommand) (rowsRun, error) {
	run := b.runValue(cur, cmds)
	if run.err != nil {
		return rowsRun{}, run.err
	}
	r := rowsRun{res: run.res, waits: run.waits}
	if run.changed {
		r.parts = store.Parts{Write: true, Replace: true, Put: []store.Part{{Seq: headSeq, Value: run.next}}}
	}
	return r, nil
}

// adoptParts returns st (the decoded value) with the row IDs, runs, head and
// tail its parts give, when they are laid out as runRows and replaceParts lay
// them out: the head, runs whose parts are the encodings of consecutive
// registrations (numbered so that each registration can have an ID from its
// run's number up to the next run's), the tail. Anything else (parts of
// another layout, a value kept whole) is not adopted.
func adoptParts(st pr.State, parts []store.Part) (rowsState, bool) {
	n := len(parts)
	if n < 2 || parts[0].Seq != headSeq || parts[n-1].Seq != tailSeq {
		return rowsState{}, false
	}
	q := rowsState{st: st, inParts: true, rows: &pr.Rows{Next: headSeq + 1}}
	q.head, q.tail = st.AppendBinaryHead(nil), st.AppendBinaryTail(nil)
	if !bytes.Equal(q.head, parts[0].Value) || !bytes.Equal(q.tail, parts[n-1].Value) {
		return rowsState{}, false
	}
	i := 0
	var enc []byte
	for k, p := range parts[1 : n-1] {
		limit := parts[k+2].Seq // the next run's number, or the tail's
		if p.Seq <= headSeq || len(p.Value) == 0 {
			return rowsState{}, false
		}
		q.runs = append(q.runs, p.Seq)
		id := p.Seq
		for off := 0; off < len(p.Value); i, id = i+1, id+1 {
			if i >= len(st.Registrations) || id >= limit {
				return rowsState{}, false
			}
			enc = st.AppendBinaryRegistration(enc[:0], i)
			if !bytes.HasPrefix(p.Value[off:], enc) {
				return rowsState{}, false
			}
			off += len(enc)
			q.rows.IDs = append(q.rows.IDs, id)
		}
		q.rows.Next = id
	}
	if i != len(st.Registrations) {
		return rowsState{}, false
	}
	return q, true
}

// appendRegs appends the encoding of st's registrations i to end-1 to b: a
// run's part.
func appendRegs(b []byte, st *pr.State, i, end int) []byte {
	for ; i < end; i++ {
		b = st.AppendBinaryRegistration(b, i)
	}
	return b
}
