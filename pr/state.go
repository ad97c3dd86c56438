package pr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/prhelper/prhelper/scsi"
)

// StateVersion is the version written by State.MarshalBinary: 2, the binary
// encoding described in codec.go. Version 1 (JSON) is still read.
const StateVersion = binaryVersion

// jsonVersion is the "v" field of the version 1 (JSON) encoding.
const jsonVersion = 1

// State is everything one logical unit keeps for persistent reservations
// (docs/spc4-pr.md §5): the registrations in registration order (READ KEYS and READ
// FULL STATUS list them in that order), the reservation, PRgeneration, PTPL_A,
// the SPC-2 RESERVE holder (for CRH, §12), the pending unit attentions (§9) and
// the logical unit's target ports (configuration, never changed by the engine).
//
// Invariants kept by the engine and checked by Validate: keys are non-zero, and
// the reservation's Holder is a registered nexus (for the all-registrants types
// it is LIO's "representative", the registration READ RESERVATION and PREEMPT
// refer to). One I_T nexus has one registration, except where
// Profile.SpecIPTDuplicates gave it two (docs/spc4-pr.md §14 D27): then every
// command finds the first (regFor, regExact), and the holder is the first
// registration of Holder (holderIndex).
type State struct {
	Generation     uint32         `json:"generation"`
	Registrations  []Registration `json:"registrations,omitempty"`
	Reservation    *Reservation   `json:"reservation,omitempty"`
	APTPL          bool           `json:"aptpl,omitempty"`
	SPC2Holder     *Nexus         `json:"spc2_holder,omitempty"`
	UnitAttentions []PendingUA    `json:"unit_attentions,omitempty"`
	// Ports lists the target ports through which the logical unit is reachable
	// and which initiators it is mapped for. Empty means one port: the one of the
	// commanding nexus, open to every initiator of its protocol.
	Ports []Port `json:"ports,omitempty"`

	// rows, when set, records what the engine changes (TrackRows).
	rows *Rows
}

// Registration is one registered I_T nexus (SPC-4 §5.7.7).
type Registration struct {
	Nexus Nexus  `json:"nexus"`
	Key   uint64 `json:"key"`
	// AllTgPt records that the registration was made with ALL_TG_PT=1; LIO
	// reports it in READ FULL STATUS and requires it to unregister.
	AllTgPt bool `json:"all_tg_pt,omitempty"`
	// APTPL is the APTPL bit of the command that made the registration.
	APTPL bool `json:"aptpl,omitempty"`
	// StaleScope is the scope LIO left with a registration that was the
	// source of a REGISTER AND MOVE (the reservation's type, 1h-8h), which it
	// carries into a reservation it later receives by a move
	// (Profile.MoveSourceScope, docs/spc4-pr.md §14 D28); 0 otherwise.
	StaleScope byte `json:"stale_scope,omitempty"`
	// FlagCleared records that LIO's "registered" flag of this registration's
	// initiator device at its target port was cleared when another of that
	// device's registrations there was removed, and not set since by a new
	// one (Profile.SharedRegisteredFlag, docs/spc4-pr.md §14 D29): the
	// reservation check counts the nexus as unregistered. The engine keeps it
	// equal on every registration of one device at one port.
	FlagCleared bool `json:"flag_cleared,omitempty"`
}

// Reservation is the persistent reservation (SPC-4 §5.7.9).
type Reservation struct {
	// Holder is the holding I_T nexus; for types 7h and 8h every registrant
	// holds the reservation and Holder is the representative registration.
	Holder Nexus `json:"holder"`
	Type   byte  `json:"type"`
	Scope  byte  `json:"scope"`
	// StaleScope is the holder's scope when a REGISTER AND MOVE gave it one
	// that is not LU_SCOPE (Registration.StaleScope, Profile.MoveSourceScope,
	// docs/spc4-pr.md §14 D28): not reported, but RESERVE, RELEASE and PREEMPT
	// compare it; 0 otherwise. The engine keeps it equal to the holder
	// registration's StaleScope, as LIO keeps one value there.
	StaleScope byte `json:"stale_scope,omitempty"`
}

// PendingUA is the queue of unit attentions waiting for one nexus (or, with
// Profile.NodeACLGranularity, for one initiator device at one target port: the
// Nexus then has no ISID).
type PendingUA struct {
	Nexus      Nexus `json:"nexus"`
	Conditions []UA  `json:"conditions"`
}

// UA is a unit attention condition: sense key 06h with ASC/ASCQ.
type UA struct {
	ASC  byte `json:"asc"`
	ASCQ byte `json:"ascq"`
}

// Sense returns the sense data that reports u.
func (u UA) Sense() scsi.Sense {
	return scsi.Sense{Key: scsi.KeyUnitAttention, ASC: u.ASC, ASCQ: u.ASCQ}
}

// Unit attention ASCQs under ASC 2Ah (SPC-4 Annex D; docs/spc4-pr.md §1).
const (
	ascqReservationsPreempted  = 0x03
	ascqReservationsReleased   = 0x04
	ascqRegistrationsPreempted = 0x05
)

// stateJSON is the version 1 (JSON) form: {"v":1, ...State fields}.
type stateJSON struct {
	V int `json:"v"`
	stateFields
}

type stateFields State

// MarshalBinary encodes st in the binary encoding, version StateVersion
// (codec.go); the encoding is stable: equal states give equal bytes.
func (st State) MarshalBinary() ([]byte, error) {
	return st.appendBinary(make([]byte, 0, 64+48*len(st.Registrations))), nil
}

// MarshalJSONV1 encodes st in the version 1 (JSON) encoding, which
// UnmarshalBinary still reads: for documents people and other tools read (an
// export of the state), not for stores, which hold MarshalBinary's encoding.
func (st State) MarshalJSONV1() ([]byte, error) { return st.marshalJSON() }

// marshalJSON encodes st in the version 1 (JSON) encoding that earlier helpers
// wrote, for tests of what stores still hold.
func (st State) marshalJSON() ([]byte, error) {
	if i, ok := st.nonUTF8(); ok {
		// JSON strings are UTF-8: encoding/json would turn the bytes into
		// U+FFFD and the state would come back with another initiator.
		return nil, fmt.Errorf("encode PR state as JSON: initiator %q is not UTF-8 (the binary encoding keeps it)", i.Name+i.ISID)
	}
	b, err := json.Marshal(stateJSON{V: jsonVersion, stateFields: stateFields(st)})
	if err != nil {
		return nil, fmt.Errorf("encode PR state: %w", err)
	}
	return b, nil
}

// nonUTF8 returns an initiator of st whose name or ISID is not valid UTF-8.
func (st State) nonUTF8() (Initiator, bool) {
	bad := func(i Initiator) bool { return !utf8.ValidString(i.Name) || !utf8.ValidString(i.ISID) }
	var all []Initiator
	for _, r := range st.Registrations {
		all = append(all, r.Nexus.Initiator)
	}
	if st.Reservation != nil {
		all = append(all, st.Reservation.Holder.Initiator)
	}
	if st.SPC2Holder != nil {
		all = append(all, st.SPC2Holder.Initiator)
	}
	for _, u := range st.UnitAttentions {
		all = append(all, u.Nexus.Initiator)
	}
	for _, p := range st.Ports {
		all = append(all, p.Initiators...)
	}
	for _, i := range all {
		if bad(i) {
			return i, true
		}
	}
	return Initiator{}, false
}

// ErrState marks state bytes that cannot be decoded or break an invariant.
var ErrState = errors.New("bad PR state")

// UnmarshalBinary decodes bytes written by MarshalBinary, of this version (binary)
// or of version 1 (JSON, which begins with '{' or white space). An unknown version,
// a truncated encoding, data after the state or a state that fails Validate is an
// error, and st is then unchanged.
func (st *State) UnmarshalBinary(b []byte) error {
	var n State
	var err error
	switch {
	case len(b) == 0:
		return fmt.Errorf("%w: empty", ErrState)
	case b[0] == binaryVersion:
		n, err = decodeBinary(b)
	case b[0] == '{' || b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r':
		n, err = decodeJSON(b)
	default:
		return fmt.Errorf("%w: version byte %#x, this engine reads version %d and version %d (JSON)", ErrState, b[0], binaryVersion, jsonVersion)
	}
	if err != nil {
		return err
	}
	n.normalize()
	if err := n.Validate(); err != nil {
		return err
	}
	*st = n
	return nil
}

// decodeJSON decodes the version 1 encoding. An unknown version, an unknown field
// or data after the object is an error.
func decodeJSON(b []byte) (State, error) {
	var head struct {
		V *int `json:"v"`
	}
	// json.Unmarshal also rejects data after the object.
	if err := json.Unmarshal(b, &head); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrState, err)
	}
	if head.V == nil {
		return State{}, fmt.Errorf("%w: no version field", ErrState)
	}
	if *head.V != jsonVersion {
		return State{}, fmt.Errorf("%w: JSON version %d, this engine reads JSON version %d", ErrState, *head.V, jsonVersion)
	}
	var s stateJSON
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return State{}, fmt.Errorf("%w: %v", ErrState, err)
	}
	return State(s.stateFields), nil
}

// Validate checks the invariants the engine keeps (see State).
func (st *State) Validate() error {
	// Linear: every command of an emulated LU decodes its state, and a
	// quadratic check was most of a command's cost at thousands of
	// registrations (issue 12). Two registrations of one nexus are allowed
	// (Profile.SpecIPTDuplicates).
	for i, r := range st.Registrations {
		if r.Key == 0 {
			return fmt.Errorf("%w: registration %d (%s) has key 0", ErrState, i, r.Nexus)
		}
		if r.StaleScope != 0 && !validType(r.StaleScope) {
			return fmt.Errorf("%w: registration %d (%s) has stale scope %#x", ErrState, i, r.Nexus, r.StaleScope)
		}
	}
	if r := st.Reservation; r != nil {
		if !validType(r.Type) {
			return fmt.Errorf("%w: reservation type %#x", ErrState, r.Type)
		}
		if r.Scope != 0 {
			return fmt.Errorf("%w: reservation scope %#x", ErrState, r.Scope)
		}
		if r.StaleScope != 0 && !validType(r.StaleScope) {
			return fmt.Errorf("%w: reservation stale scope %#x", ErrState, r.StaleScope)
		}
		if st.regExact(r.Holder) < 0 {
			return fmt.Errorf("%w: reservation holder %s is not registered", ErrState, r.Holder)
		}
	}
	for i, u := range st.UnitAttentions {
		if len(u.Conditions) == 0 {
			return fmt.Errorf("%w: unit attention queue %d is empty", ErrState, i)
		}
	}
	return nil
}

// normalize turns empty slices into nil so that a state round-trips through
// MarshalBinary/UnmarshalBinary unchanged (Port.Initiators keeps its nil/empty
// distinction: it is encoded without omitempty).
func (st *State) normalize() {
	if len(st.Registrations) == 0 {
		st.Registrations = nil
	}
	if len(st.UnitAttentions) == 0 {
		st.UnitAttentions = nil
	}
	if len(st.Ports) == 0 {
		st.Ports = nil
	}
}

// Clone returns a deep copy of st: Execute changes st in place, so a caller
// that compares a state before and after a command, or checks access on a
// state it must not change, works on a Clone.
func (st *State) Clone() State {
	c := *st
	c.rows = nil
	c.Registrations = append([]Registration(nil), st.Registrations...)
	if st.Reservation != nil {
		r := *st.Reservation
		c.Reservation = &r
	}
	if st.SPC2Holder != nil {
		h := *st.SPC2Holder
		c.SPC2Holder = &h
	}
	c.UnitAttentions = nil
	for _, u := range st.UnitAttentions {
		u.Conditions = append([]UA(nil), u.Conditions...)
		c.UnitAttentions = append(c.UnitAttentions, u)
	}
	c.Ports = nil
	for _, p := range st.Ports {
		if p.Initiators != nil {
			p.Initiators = append([]Initiator{}, p.Initiators...)
		}
		c.Ports = append(c.Ports, p)
	}
	return c
}

// validType reports whether t is one of the six reservation types (SPC-4 table 169).
func validType(t byte) bool {
	switch t {
	case scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess,
		scsi.TypeWriteExclusiveRegOnly, scsi.TypeExclusiveAccessRegOnly,
		scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs:
		return true
	}
	return false
}

// allRegistrants reports whether t is an all-registrants type (7h, 8h).
func allRegistrants(t byte) bool {
	return t == scsi.TypeWriteExclusiveAllRegs || t == scsi.TypeExclusiveAccessAllRegs
}

// registrantsOnly reports whether t is a registrants-only type (5h, 6h).
func registrantsOnly(t byte) bool {
	return t == scsi.TypeWriteExclusiveRegOnly || t == scsi.TypeExclusiveAccessRegOnly
}

// writeExclusiveFamily reports whether t lets non-holders read (1h, 5h, 7h).
func writeExclusiveFamily(t byte) bool {
	return t == scsi.TypeWriteExclusive || t == scsi.TypeWriteExclusiveRegOnly || t == scsi.TypeWriteExclusiveAllRegs
}

// regFor returns the index of the registration that identifies nexus n, or -1:
// LIO core_scsi3_locate_pr_reg, the first registration of n's initiator device at
// n's port whose ISID is absent or equal (docs/spc4-pr.md §5).
func (st *State) regFor(n Nexus) int {
	for i, r := range st.Registrations {
		if r.Nexus.covers(n) {
			return i
		}
	}
	return -1
}

// regExact returns the index of the registration for exactly nexus n, or -1.
func (st *State) regExact(n Nexus) int {
	for i, r := range st.Registrations {
		if r.Nexus.Equal(n) {
			return i
		}
	}
	return -1
}

// isHolder reports whether registration i holds the reservation: it is the
// holder's registration (the first of Holder's, D27), or the type is
// all-registrants (LIO is_reservation_holder, §5).
func (st *State) isHolder(i int) bool {
	r := st.Reservation
	if r == nil || i < 0 || i >= len(st.Registrations) {
		return false
	}
	return allRegistrants(r.Type) || i == st.holderIndex()
}

// holderIndex returns the index of the (representative) holder's registration:
// the first registration of Holder.
func (st *State) holderIndex() int {
	if st.Reservation == nil {
		return -1
	}
	return st.regExact(st.Reservation.Holder)
}

// removeRegs removes the registrations for which drop returns true, keeping the
// order of the others, and returns the removed ones and whether the holder's
// registration (holderIndex) was among them. Under SharedRegisteredFlag (D29)
// the registrations left of a removed one's initiator device at its port lose
// LIO's "registered" flag.
func (st *State) removeRegs(p Profile, drop func(i int, r Registration) bool) (gone []Registration, holderGone bool) {
	h := st.holderIndex()
	var kept []Registration
	var keptIDs []int64
	for i, r := range st.Registrations {
		if drop(i, r) {
			gone = append(gone, r)
			holderGone = holderGone || i == h
			if st.rows != nil {
				st.rows.Gone = append(st.rows.Gone, st.rows.IDs[i])
			}
		} else {
			kept = append(kept, r)
			if st.rows != nil {
				keptIDs = append(keptIDs, st.rows.IDs[i])
			}
		}
	}
	st.Registrations = kept
	if st.rows != nil {
		st.rows.IDs = keptIDs
	}
	st.setRegisteredFlag(p, gone, false)
	return gone, holderGone
}

// addRegs appends regs; under SharedRegisteredFlag (D29) adding them sets
// LIO's "registered" flag of each one's initiator device at its port again, for
// every registration there.
func (st *State) addRegs(p Profile, regs ...Registration) {
	for _, r := range regs {
		r.FlagCleared = false
		st.Registrations = append(st.Registrations, r)
		if st.rows != nil {
			st.rows.IDs = append(st.rows.IDs, st.rows.Next)
			st.rows.Next++
			st.touch(len(st.Registrations) - 1)
		}
	}
	st.setRegisteredFlag(p, regs, true)
}

// nodePort is one LIO node ACL LUN entry: an initiator device (SameNode) at a
// target port.
type nodePort struct {
	protocol byte
	name     string
	addr     uint64
	rtpi     uint16
}

func nodePortOf(n Nexus) nodePort {
	return nodePort{n.Initiator.Protocol, n.Initiator.Name, n.Initiator.Addr, n.RTPI}
}

// setRegisteredFlag sets (on) or clears LIO's "registered" flag of the
// initiator device at the target port of each of regs: FlagCleared on every
// registration of st of such a device at such a port
// (Profile.SharedRegisteredFlag, D29). One pass over st, whatever the number
// of registrations. Nothing changes without the profile field.
func (st *State) setRegisteredFlag(p Profile, regs []Registration, on bool) {
	if !p.SharedRegisteredFlag || len(regs) == 0 || len(st.Registrations) == 0 {
		return
	}
	entries := make(map[nodePort]bool, len(regs))
	for _, r := range regs {
		entries[nodePortOf(r.Nexus)] = true
	}
	for i, r := range st.Registrations {
		if entries[nodePortOf(r.Nexus)] {
			st.Registrations[i].FlagCleared = !on
			st.touch(i)
		}
	}
}

// fixHolder restores the holder invariant after removeRegs reported the
// holder's registration gone (holderGone): a non-all-registrants reservation is
// released; under an all-registrants one the first remaining registration
// becomes the representative, with the reservation's type and scope (LIO moves dev_pr_res_holder to the next registration, §7.1.1),
// and the reservation ends with the last registrant. It returns true when the
// reservation was released.
func (st *State) fixHolder(holderGone bool) bool {
	r := st.Reservation
	if r == nil || !holderGone {
		return false
	}
	if allRegistrants(r.Type) && len(st.Registrations) > 0 {
		r.Holder = st.Registrations[0].Nexus
		st.Registrations[0].StaleScope = r.StaleScope // LIO copies the scope too (D28)
		st.touch(0)
		return false
	}
	st.Reservation = nil
	return true
}

// ports returns the logical unit's target ports (State.Ports, or the single
// implicit port of nexus n when none are configured).
func (st *State) ports(n Nexus) []Port {
	if len(st.Ports) > 0 {
		return st.Ports
	}
	return []Port{{RTPI: n.RTPI, Protocol: n.Initiator.Protocol}}
}
