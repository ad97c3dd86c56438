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
// values in parts (store.PartStore: the SQLite store) and without fencing,
// the committer stores a unit's state as parts whose concatenation is its
// MarshalBinary encoding: part headSeq is the head (pr.State.AppendBinaryHead),
// one part per registration, numbered by its pr.Rows ID (increasing in
// registration order), and part tailSeq the tail. A batch then writes the
// head, the tail and the registrations its commands added, changed or
// removed (pr.State.TrackRows), not the whole state, so what a command costs
// does not grow with the registrations. Get, and so PR IN, prhelperctl and
// a fencing helper, still read the whole encoding.
//
// The committer keeps the decoded state, its row IDs and the store's version
// of the value it last wrote. A batch runs on that state, and inside the
// store's transaction its parts are written only if the stored version is
// still that one; otherwise (another process, prhelperctl, a first command,
// a value kept whole) the commands run again on the value read whole, which
// is then written in parts anew (Replace): the answers are always those of
// the run that was committed.
const (
	headSeq = 0
	tailSeq = math.MaxInt64
)

// rowsRun is a batch's outcome on a state kept in rows.
type rowsRun struct {
	st    pr.State
	rows  *pr.Rows
	head  []byte
	tail  []byte
	parts store.Parts
	res   []pr.Result
}

// commitRows is commitBatch on a store that keeps parts, without fencing.
func (b *Backend) commitRows(q *luQueue, ps store.PartStore, live []*luCommand) {
	var guess rowsRun
	useGuess := q.rowsVer != 0 && q.decoded
	if useGuess {
		guess = b.runRows(q, live)
	}
	q.decoded = false // q.st is the guess's state now, or stale
	b.queues.batches.Add(1)
	b.queues.commands.Add(uint64(len(live)))
	var final rowsRun
	ver, err := ps.UpdateParts(context.Background(), q.key, func(ver uint64, read func() ([]byte, error)) (store.Parts, error) {
		if useGuess && ver == q.rowsVer {
			b.queues.inRows.Add(1) // counted again if retried: tests only
			final = guess
			return final.parts, nil
		}
		cur, err := read()
		if err != nil {
			return store.Parts{}, err
		}
		final, err = b.runWhole(cur, live)
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
		q.st, q.rows, q.head, q.tail, q.rowsVer, q.decoded = final.st, final.rows, final.head, final.tail, ver, true
	} else {
		q.rowsVer = 0 // unchanged, kept in a form this committer did not write
	}
	for i, c := range live {
		c.res, c.wait = final.res[i], (*fence.Wait)(nil)
		c.Finish(nil)
	}
}

// runRows runs cmds on q's state (changed in place), which is the stored
// value of version q.rowsVer in rows, and returns the parts to write.
func (b *Backend) runRows(q *luQueue, cmds []*luCommand) rowsRun {
	st, rows := q.st, q.rows
	rows.Reset()
	st.TrackRows(rows)
	r := rowsRun{st: st, rows: rows, res: make([]pr.Result, len(cmds))}
	for i, c := range cmds {
		r.res[i] = pr.Execute(b.profile, &r.st, c.nexus, c.cdb, c.param)
	}
	r.st.TrackRows(nil)
	r.head, r.tail = r.st.AppendBinaryHead(nil), r.st.AppendBinaryTail(nil)
	if len(rows.Put) == 0 && len(rows.Gone) == 0 && bytes.Equal(r.head, q.head) && bytes.Equal(r.tail, q.tail) {
		return r // nothing to write
	}
	p := store.Parts{Write: true, Delete: rows.Gone}
	p.Put = append(p.Put, store.Part{Seq: headSeq, Value: r.head}, store.Part{Seq: tailSeq, Value: r.tail})
	put := slices.Clone(rows.Put)
	slices.Sort(put)
	put = slices.Compact(put)
	for _, id := range put {
		if i, ok := slices.BinarySearch(rows.IDs, id); ok { // else removed since
			p.Put = append(p.Put, store.Part{Seq: id, Value: r.st.AppendBinaryRegistration(nil, i)})
		}
	}
	r.parts = p
	return r
}

// runWhole runs cmds on the stored value cur, decoded, and returns the
// state's parts to write in place of whatever the store holds (nothing when
// the commands changed nothing). A pure function of cur, as a
// store.PartsFunc must be.
func (b *Backend) runWhole(cur []byte, cmds []*luCommand) (rowsRun, error) {
	var st pr.State
	if cur != nil {
		if err := st.UnmarshalBinary(cur); err != nil {
			return rowsRun{}, err
		}
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
	p := store.Parts{Write: true, Replace: true, Put: make([]store.Part, 0, len(st.Registrations)+2)}
	p.Put = append(p.Put, store.Part{Seq: headSeq, Value: r.head}, store.Part{Seq: tailSeq, Value: r.tail})
	for i, id := range r.rows.IDs {
		p.Put = append(p.Put, store.Part{Seq: id, Value: st.AppendBinaryRegistration(nil, i)})
	}
	r.parts = p
	return r, nil
}
