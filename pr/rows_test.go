package pr

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// rowMirror is what a store keeping one row per registration holds: the rows
// by ID, written only from what Rows recorded.
type rowMirror map[int64][]byte

// apply writes the rows r recorded (st is the state after the commands) and
// forgets them.
func (m rowMirror) apply(st *State, r *Rows) {
	at := make(map[int64]int, len(r.IDs))
	for i, id := range r.IDs {
		at[id] = i
	}
	for _, id := range r.Put {
		if i, ok := at[id]; ok {
			m[id] = st.AppendBinaryRegistration(nil, i)
		}
	}
	for _, id := range r.Gone {
		if _, ok := at[id]; ok {
			panic("a removed row is still a registration")
		}
		delete(m, id)
	}
	r.Reset()
}

// check fails unless the head, the rows in ID order and the tail are
// MarshalBinary's bytes, and the IDs increase in registration order.
func (m rowMirror) check(t *testing.T, st *State, r *Rows, what string) {
	t.Helper()
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, r.IDs) || len(r.IDs) != len(st.Registrations) {
		t.Fatalf("%s: rows %v, IDs %v, %d registrations", what, ids, r.IDs, len(st.Registrations))
	}
	got := st.AppendBinaryHead(nil)
	for _, id := range ids {
		got = append(got, m[id]...)
	}
	got = st.AppendBinaryTail(got)
	want, _ := st.MarshalBinary()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: rows assemble to\n%x\nMarshalBinary\n%x", what, got, want)
	}
}

// TestRowsMatchMarshal runs seeded random command sequences (every PR OUT
// service action, PREEMPT and CLEAR removing registrations in the middle,
// REGISTER with key 0, power-on) on a state that tracks its rows, writes only
// the rows recorded after each command, and checks that they always assemble
// to MarshalBinary's bytes.
func TestRowsMatchMarshal(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	total := 0
	for _, seed := range seeds {
		rng := rand.New(rand.NewPCG(seed, 0x0077))
		data := make([]byte, 16384)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		p := LIO()
		switch seed % 3 {
		case 1:
			p = SPC4()
		case 2:
			p.SharedRegisteredFlag = true
		}
		var st State
		if seed%2 == 0 {
			st.Ports = fuzzPorts
			st = st.Clone()
		}
		rows := NewRows(0, 1)
		st.TrackRows(rows)
		m := rowMirror{}
		r := &byteReader{b: data}
		removed := 0
		for i := 0; !r.done(); i++ {
			fuzzCommand(t, p, &st, r)
			removed += len(rows.Gone)
			m.apply(&st, rows)
			m.check(t, &st, rows, "seed "+strconv.FormatUint(seed, 10)+" command "+strconv.Itoa(i))
		}
		t.Logf("seed %d: %d registrations at the end, %d rows removed", seed, len(st.Registrations), removed)
		total += removed
	}
	if total < 100 {
		t.Errorf("%d registrations removed in all: the sequences do not test removals", total)
	}
}

// rowsRunner returns the rows a new state records its changes in, and run,
// which sends one PR OUT to that state (failing the test unless the answer is GOOD), writes
// the rows it recorded to a mirror, checks the mirror against the state, and
// returns the IDs recorded as changed and as removed.
func rowsRunner(t *testing.T, what string) (rows *Rows, run func(n Nexus, sa, typ byte, rk, sark uint64) (put, gone []int64)) {
	p := SPC4()
	var st State
	rows = NewRows(0, 1)
	st.TrackRows(rows)
	m := rowMirror{}
	return rows, func(n Nexus, sa, typ byte, rk, sark uint64) (put, gone []int64) {
		t.Helper()
		cdb := scsi.PROutCDB(sa, 0, typ, 24)
		if res := Execute(p, &st, n, cdb[:], registerParam(rk, sark, 0)); res.Status != 0 {
			t.Fatalf("service action %#x from %s: %+v", sa, n, res)
		}
		put, gone = slices.Clone(rows.Put), slices.Clone(rows.Gone)
		m.apply(&st, rows)
		m.check(t, &st, rows, what)
		return put, gone
	}
}

// TestRowsScripted removes a registration in the middle (a REGISTER with
// service action key 0), preempts two, and checks the rows left.
func TestRowsScripted(t *testing.T) {
	rows, run := rowsRunner(t, "scripted")
	for i, n := range fuzzNexuses[:4] {
		run(n, 0x00, 0, 0, uint64(i+1))
	}
	run(fuzzNexuses[1], 0x00, 0, 2, 0) // unregister the second
	if !slices.Equal(rows.IDs, []int64{1, 3, 4}) {
		t.Fatalf("IDs after unregistering the second: %v", rows.IDs)
	}
	run(fuzzNexuses[4], 0x00, 0, 0, 9)
	run(fuzzNexuses[0], 0x04, 1, 1, 3) // PREEMPT the key 3 registration
	if !slices.Equal(rows.IDs, []int64{1, 4, 5}) {
		t.Fatalf("IDs after the preemption: %v", rows.IDs)
	}
}

// TestRowsReservationsLeaveRowsAlone checks that RESERVE, RELEASE and PREEMPT
// record no registration as changed when none is: the reservation lives in
// the head, and a stale scope (D28) that is already clear is not a change.
// A state kept in rows then writes no run for them.
func TestRowsReservationsLeaveRowsAlone(t *testing.T) {
	_, run := rowsRunner(t, "reservations")
	for i, n := range fuzzNexuses[:3] {
		run(n, 0x00, 0, 0, uint64(i+1))
	}
	for _, c := range []struct {
		what     string
		n        Nexus
		sa, typ  byte
		rk, sark uint64
		gone     []int64
	}{
		{"RESERVE", fuzzNexuses[0], 0x01, 1, 1, 0, nil},
		{"RESERVE again", fuzzNexuses[0], 0x01, 1, 1, 0, nil},
		{"RELEASE", fuzzNexuses[0], 0x02, 1, 1, 0, nil},
		{"RESERVE by another", fuzzNexuses[1], 0x01, 1, 2, 0, nil},
		{"PREEMPT of the holder", fuzzNexuses[2], 0x04, 1, 3, 2, []int64{2}},
	} {
		put, gone := run(c.n, c.sa, c.typ, c.rk, c.sark)
		if len(put) != 0 || !slices.Equal(gone, c.gone) {
			t.Errorf("%s: rows changed %v, removed %v; want none changed, %v removed", c.what, put, gone, c.gone)
		}
	}
}
