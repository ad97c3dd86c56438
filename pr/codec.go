package pr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The binary state encoding (version 2), written by State.MarshalBinary. A store
// keeps one value per logical unit and every PR OUT decodes and re-encodes it, so
// the encoding is compact and cheap; version 1, JSON, is still read
// (State.UnmarshalBinary tells them apart by the first byte: a JSON object starts
// with '{' or white space, never with a version byte).
//
//	state      = 0x02 uvarint(generation) flags(1 byte) registrations reservation? spc2holder? uas ports
//	flags      = bit 0 APTPL, bit 1 a reservation follows, bit 2 an SPC-2 holder follows,
//	             bit 3 the reservation has a stale scope
//	registrations = uvarint(n) n × (nexus key(8 bytes, big endian) regflags(1 byte) stale?)
//	regflags   = bit 0 ALL_TG_PT, bit 1 APTPL, bit 2 a stale scope follows,
//	             bit 3 LIO's "registered" flag is cleared (FlagCleared, D29)
//	reservation = nexus type(1 byte) scope(1 byte) stale?
//	stale      = StaleScope (1 byte, non-zero; Profile.MoveSourceScope, docs/spc4-pr.md §14 D28)
//	spc2holder = nexus
//	uas        = uvarint(n) n × (nexus uvarint(m) m × (asc ascq))
//	ports      = uvarint(n) n × (uvarint(rtpi) protocol(1 byte) initiators)
//	initiators = 0x00 (nil: every initiator) | 0x01 uvarint(m) m × initiator
//	nexus      = initiator uvarint(rtpi)
//	initiator  = protocol(1 byte) string(name) string(isid) uvarint(addr)
//	string     = uvarint(length) bytes
//
// Nothing may follow the last port. A change of meaning gets a new version byte.
// The stale-scope bits and regflags bit 3 were added within version 2: earlier
// helpers read every state without them and refuse one with them (unknown flags).
const binaryVersion = 2

const (
	flagAPTPL       = 1 << 0
	flagReservation = 1 << 1
	flagSPC2Holder  = 1 << 2
	flagResStale    = 1 << 3

	regAllTgPt = 1 << 0
	regAPTPL   = 1 << 1
	regStale   = 1 << 2
	regCleared = 1 << 3
)

// appendBinary appends the version 2 encoding of st to b: its head, each
// registration, its tail (the pieces a store that keeps each registration in a
// row of its own writes apart, rows.go).
func (st *State) appendBinary(b []byte) []byte {
	b = st.AppendBinaryHead(b)
	for i := range st.Registrations {
		b = st.AppendBinaryRegistration(b, i)
	}
	return st.AppendBinaryTail(b)
}

// AppendBinaryHead appends the first piece of MarshalBinary's encoding (the
// version, generation, flags and registration count) to b. MarshalBinary's
// bytes are AppendBinaryHead's, then AppendBinaryRegistration's for each
// registration in order, then AppendBinaryTail's.
func (st *State) AppendBinaryHead(b []byte) []byte {
	b = append(b, binaryVersion)
	b = binary.AppendUvarint(b, uint64(st.Generation))
	var flags byte
	if st.APTPL {
		flags |= flagAPTPL
	}
	if st.Reservation != nil {
		flags |= flagReservation
	}
	if st.SPC2Holder != nil {
		flags |= flagSPC2Holder
	}
	if st.Reservation != nil && st.Reservation.StaleScope != 0 {
		flags |= flagResStale
	}
	b = append(b, flags)
	return binary.AppendUvarint(b, uint64(len(st.Registrations)))
}

// AppendBinaryRegistration appends the encoding of registration i to b (see
// AppendBinaryHead).
func (st *State) AppendBinaryRegistration(b []byte, i int) []byte {
	r := &st.Registrations[i]
	b = appendNexus(b, r.Nexus)
	b = binary.BigEndian.AppendUint64(b, r.Key)
	var rf byte
	if r.AllTgPt {
		rf |= regAllTgPt
	}
	if r.APTPL {
		rf |= regAPTPL
	}
	if r.StaleScope != 0 {
		rf |= regStale
	}
	if r.FlagCleared {
		rf |= regCleared
	}
	b = append(b, rf)
	if r.StaleScope != 0 {
		b = append(b, r.StaleScope)
	}
	return b
}

// AppendBinaryTail appends the last piece of MarshalBinary's encoding (the
// reservation, SPC-2 holder, unit attentions and ports) to b (see
// AppendBinaryHead).
func (st *State) AppendBinaryTail(b []byte) []byte {
	if r := st.Reservation; r != nil {
		b = appendNexus(b, r.Holder)
		b = append(b, r.Type, r.Scope)
		if r.StaleScope != 0 {
			b = append(b, r.StaleScope)
		}
	}
	if st.SPC2Holder != nil {
		b = appendNexus(b, *st.SPC2Holder)
	}
	b = binary.AppendUvarint(b, uint64(len(st.UnitAttentions)))
	for _, u := range st.UnitAttentions {
		b = appendNexus(b, u.Nexus)
		b = binary.AppendUvarint(b, uint64(len(u.Conditions)))
		for _, c := range u.Conditions {
			b = append(b, c.ASC, c.ASCQ)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(st.Ports)))
	for _, p := range st.Ports {
		b = binary.AppendUvarint(b, uint64(p.RTPI))
		b = append(b, p.Protocol)
		if p.Initiators == nil {
			b = append(b, 0)
			continue
		}
		b = append(b, 1)
		b = binary.AppendUvarint(b, uint64(len(p.Initiators)))
		for _, i := range p.Initiators {
			b = appendInitiator(b, i)
		}
	}
	return b
}

func appendNexus(b []byte, n Nexus) []byte {
	b = appendInitiator(b, n.Initiator)
	return binary.AppendUvarint(b, uint64(n.RTPI))
}

func appendInitiator(b []byte, i Initiator) []byte {
	b = append(b, i.Protocol)
	b = binary.AppendUvarint(b, uint64(len(i.Name)))
	b = append(b, i.Name...)
	b = binary.AppendUvarint(b, uint64(len(i.ISID)))
	b = append(b, i.ISID...)
	return binary.AppendUvarint(b, i.Addr)
}

// errShort is the error of an encoding that ends inside a field.
var errShort = errors.New("truncated")

// decoder reads a version 2 encoding; the first error sticks and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, a ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, a...)
	}
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(max uint64, what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.err = errShort
		return 0
	case n < 0:
		d.fail("%s overflows 64 bits", what)
		return 0
	case v > max:
		d.fail("%s %d out of range (at most %d)", what, v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length; each element takes at least min bytes, so a length
// beyond what is left is rejected before anything is allocated.
func (d *decoder) count(min int, what string) int {
	n := d.uvarint(math.MaxInt32, what)
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("%s %d longer than the data", what, n)
		return 0
	}
	return int(n)
}

func (d *decoder) string(what string) string {
	n := d.count(1, what+" length")
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// stale reads a StaleScope byte, present only when non-zero (one encoding per
// state).
func (d *decoder) stale() byte {
	v := d.byte()
	if v == 0 && d.err == nil {
		d.fail("stale scope 0 encoded")
	}
	return v
}

func (d *decoder) uint64BE() uint64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.err = errShort
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) initiator() Initiator {
	return Initiator{Protocol: d.byte(), Name: d.string("initiator name"), ISID: d.string("ISID"), Addr: d.uvarint(math.MaxUint64, "address")}
}

func (d *decoder) nexus() Nexus {
	i := d.initiator()
	return Nexus{Initiator: i, RTPI: uint16(d.uvarint(math.MaxUint16, "relative target port identifier"))}
}

// Smallest encodings, for count: an initiator is a protocol, two empty strings and
// an address of 0; a nexus adds an RTPI.
const (
	minInitiator = 4
	minNexus     = minInitiator + 1
)

// decodeBinary decodes a version 2 encoding (b[0] is the version byte) into a new
// State, without checking the invariants.
func decodeBinary(b []byte) (State, error) {
	d := &decoder{b: b[1:]}
	var st State
	st.Generation = uint32(d.uvarint(math.MaxUint32, "generation"))
	flags := d.byte()
	if flags&^(flagAPTPL|flagReservation|flagSPC2Holder|flagResStale) != 0 || flags&flagResStale != 0 && flags&flagReservation == 0 {
		d.fail("unknown flags %#x", flags)
	}
	st.APTPL = flags&flagAPTPL != 0
	if n := d.count(minNexus+9, "registration count"); n > 0 {
		st.Registrations = make([]Registration, n)
		for i := range st.Registrations {
			r := &st.Registrations[i]
			r.Nexus, r.Key = d.nexus(), d.uint64BE()
			rf := d.byte()
			if rf&^(regAllTgPt|regAPTPL|regStale|regCleared) != 0 {
				d.fail("registration %d: unknown flags %#x", i, rf)
			}
			r.AllTgPt, r.APTPL, r.FlagCleared = rf&regAllTgPt != 0, rf&regAPTPL != 0, rf&regCleared != 0
			if rf&regStale != 0 {
				r.StaleScope = d.stale()
			}
		}
	}
	if flags&flagReservation != 0 {
		st.Reservation = &Reservation{Holder: d.nexus(), Type: d.byte(), Scope: d.byte()}
		if flags&flagResStale != 0 {
			st.Reservation.StaleScope = d.stale()
		}
	}
	if flags&flagSPC2Holder != 0 {
		h := d.nexus()
		st.SPC2Holder = &h
	}
	if n := d.count(minNexus+1, "unit attention queue count"); n > 0 {
		st.UnitAttentions = make([]PendingUA, n)
		for i := range st.UnitAttentions {
			u := &st.UnitAttentions[i]
			u.Nexus = d.nexus()
			if m := d.count(2, "unit attention count"); m > 0 {
				u.Conditions = make([]UA, m)
				for j := range u.Conditions {
					u.Conditions[j] = UA{ASC: d.byte(), ASCQ: d.byte()}
				}
			}
		}
	}
	if n := d.count(3, "port count"); n > 0 {
		st.Ports = make([]Port, n)
		for i := range st.Ports {
			p := &st.Ports[i]
			p.RTPI = uint16(d.uvarint(math.MaxUint16, "port relative target port identifier"))
			p.Protocol = d.byte()
			switch kind := d.byte(); kind {
			case 0:
			case 1:
				p.Initiators = make([]Initiator, d.count(minInitiator, "port initiator count"))
				for j := range p.Initiators {
					p.Initiators[j] = d.initiator()
				}
			default:
				d.fail("port %d: initiator list marker %#x", i, kind)
			}
		}
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("%d bytes after the state", len(d.b))
	}
	if d.err != nil {
		return State{}, fmt.Errorf("%w: version %d encoding: %v", ErrState, binaryVersion, d.err)
	}
	return st, nil
}
