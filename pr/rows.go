package pr

// Rows records, while commands run on a State, which registrations they
// added, changed and removed, so that a store keeping each registration in a
// row of its own (docs/performance.md §5.7.6) writes those rows and the
// state's head and tail (AppendBinaryHead, AppendBinaryTail) instead of the
// whole encoding: the work of a command then does not grow with the number
// of registrations.
//
// Every registration has a row ID; IDs[i] is that of Registrations[i], and
// IDs increase in registration order (a new registration is appended with
// Next, removals keep the order), so rows listed by ID are the registrations
// in order.
type Rows struct {
	IDs  []int64 // the row of each registration, parallel to State.Registrations
	Next int64   // the ID the next added registration gets
	Put  []int64 // rows added or changed since the last Reset (may repeat)
	Gone []int64 // rows removed since the last Reset
}

// NewRows returns Rows for a state of n registrations numbered first,
// first+1, ...
func NewRows(n int, first int64) *Rows {
	r := &Rows{IDs: make([]int64, n), Next: first + int64(n)}
	for i := range r.IDs {
		r.IDs[i] = first + int64(i)
	}
	return r
}

// Reset forgets the rows recorded (after they were written).
func (r *Rows) Reset() { r.Put, r.Gone = r.Put[:0], r.Gone[:0] }

// TrackRows makes the engine record in r what it changes in st's
// registrations (nil: stop). r.IDs must have one ID per registration. A
// Clone does not track; a decode (UnmarshalBinary) stops tracking.
func (st *State) TrackRows(r *Rows) { st.rows = r }

// touch records that registration i changed in place. Every write to a
// field of st.Registrations[i] must be followed by it (TestRowsMatchMarshal
// finds a missing one), or a store kept in rows misses that change.
func (st *State) touch(i int) {
	if st.rows != nil {
		st.rows.Put = append(st.rows.Put, st.rows.IDs[i])
	}
}

// clearStaleScope clears registration i's scope left by a move (D28) and
// records the change only when there is one: RESERVE, RELEASE and PREEMPT
// clear it on every success, and it is seldom set, so an unconditional touch
// rewrote the caller's run of a state kept in rows for nothing.
func (st *State) clearStaleScope(i int) {
	if st.Registrations[i].StaleScope != 0 {
		st.Registrations[i].StaleScope = 0
		st.touch(i)
	}
}
