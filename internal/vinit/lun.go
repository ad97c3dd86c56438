package vinit

import (
	"errors"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/scsi"
)

// LUN is what the plan needs of the real LUN's state, by key: the hosts are
// told apart by their keys (docs/virtual-initiators.md §2), whatever nexus or
// multipath path each registration was made through.
type LUN struct {
	Generation uint32
	// Keys lists the registered keys, each once, in the order READ FULL STATUS
	// first reports them.
	Keys []uint64
	// Reservation is nil when the LUN has none.
	Reservation *LUNReservation
}

// LUNReservation is the LUN's reservation: its type and the key of a
// registration that holds it (for the all-registrants types every
// registration holds it; Key is the first one READ FULL STATUS marks).
type LUNReservation struct {
	Type byte
	Key  uint64
}

// ErrTruncated is READ FULL STATUS data cut short by the allocation length.
var ErrTruncated = errors.New("READ FULL STATUS truncated")

// FullStatusAlloc is the allocation length the backend reads READ FULL STATUS
// with: 8192, the PR IN data the passthrough and multipath backends transfer
// (the pr-helper protocol's data size, docs/pr-helper-protocol.md). It must
// not be larger: LIO rejects a CDB whose allocation length exceeds the
// transfer the initiator set up ("DATA overflow", ILLEGAL REQUEST 5/24/00), as
// the lab showed with 0xffff. At 24 bytes a descriptor plus a TransportID of
// at most a few hundred bytes, 8192 bytes hold dozens of host registrations;
// more come back as ErrTruncated, never as a host that seems unregistered.
const FullStatusAlloc = 8192

// ReadLUN decodes READ FULL STATUS parameter data (SPC-4 §6.15.5). Data cut
// short by the allocation length is an error: a registration left out would
// look like a host that is not registered.
func ReadLUN(data []byte) (LUN, error) {
	fs, err := scsi.DecodeFullStatus(data)
	if err != nil {
		return LUN{}, fmt.Errorf("vinit: %w", err)
	}
	if fs.Truncated {
		return LUN{}, fmt.Errorf("vinit: %w (%d bytes)", ErrTruncated, len(data))
	}
	l := LUN{Generation: fs.Generation}
	for _, d := range fs.Descriptors {
		if !slices.Contains(l.Keys, d.Key) {
			l.Keys = append(l.Keys, d.Key)
		}
		if d.Holder && l.Reservation == nil {
			l.Reservation = &LUNReservation{Type: d.Type, Key: d.Key}
		}
	}
	return l, nil
}

// Has reports whether key k is registered.
func (l LUN) Has(k uint64) bool { return slices.Contains(l.Keys, k) }

// holds reports whether the registration of key k holds the reservation.
func (l LUN) holds(k uint64) bool {
	r := l.Reservation
	return r != nil && l.Has(k) && (AllRegistrants(r.Type) || r.Key == k)
}

// MayWrite reports whether the LUN lets the initiator registered with key k (a
// host, docs/virtual-initiators.md §2; k absent: an unregistered one) write,
// by the reservation table of SPC-4 §5.13.1 as docs/virtual-initiators.md §3
// uses it: anyone without a reservation; under Write Exclusive and Exclusive
// Access only the holder; under the registrants-only and all-registrants
// types every registrant.
func (l LUN) MayWrite(k uint64) bool {
	r := l.Reservation
	switch {
	case r == nil:
		return true
	case !l.Has(k):
		return false
	case r.Type == scsi.TypeWriteExclusive || r.Type == scsi.TypeExclusiveAccess:
		return r.Key == k
	}
	return true
}

// clone returns a deep copy of l.
func (l LUN) clone() LUN {
	l.Keys = slices.Clone(l.Keys)
	if l.Reservation != nil {
		r := *l.Reservation
		l.Reservation = &r
	}
	return l
}

// remove removes key k and applies what SPC-4 §5.13.11.2 and §5.13.11.4 say of
// a holder's registration going: a non-all-registrants reservation ends with its
// holder, an all-registrants one with the last registration.
func (l *LUN) remove(k uint64) {
	l.Keys = slices.DeleteFunc(l.Keys, func(x uint64) bool { return x == k })
	r := l.Reservation
	switch {
	case r == nil:
	case AllRegistrants(r.Type):
		if len(l.Keys) == 0 {
			l.Reservation = nil
		} else if r.Key == k {
			r.Key = l.Keys[0]
		}
	case r.Key == k:
		l.Reservation = nil
	}
}

// apply changes l as command c from the registration of key self does on a
// device that follows SPC-4: the plan's model of the LUN (Plan).
func (l *LUN) apply(self uint64, c Command) {
	switch c.Action {
	case scsi.SARegisterAndIgnoreExisting:
		if !l.Has(c.SAKey) {
			l.Keys = append(l.Keys, c.SAKey)
		}
	case scsi.SARegister: // only ever used to unregister
		l.remove(self)
	case scsi.SAReserve:
		l.Reservation = &LUNReservation{Type: c.Type, Key: self}
	case scsi.SARelease:
		l.Reservation = nil
	case scsi.SAPreempt:
		r := l.Reservation
		takes := r != nil && !AllRegistrants(r.Type) && r.Key == c.SAKey
		if c.SAKey == self {
			// Only sent by the holder, to change the type: its own
			// registration stays (SPC-4 §5.13.11.4.3).
			l.Reservation = &LUNReservation{Type: c.Type, Key: self}
			return
		}
		l.remove(c.SAKey)
		if takes {
			l.Reservation = &LUNReservation{Type: c.Type, Key: self}
		}
	}
}
