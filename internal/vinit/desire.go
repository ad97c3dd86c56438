// Package vinit is the pure core of virtual initiators over a real LUN
// (docs/virtual-initiators.md): from the emulated state of one logical unit and
// the host of each nexus, the state the real LUN should have (Desire); from the
// LUN's state as READ FULL STATUS reports it (ReadLUN), the PR OUT commands one
// host sends to get there (Plan). It does no I/O: the backend
// (internal/backend/vinit) reads the store and the LUN and sends the commands.
package vinit

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// HostKey is the derived key of host id on the real LUN
// (docs/virtual-initiators.md §2): the first 8 bytes of SHA-256 of a fixed
// prefix and the id, 1 when those are 0.
func HostKey(id string) uint64 {
	sum := sha256.Sum256([]byte("prhelper vinit host key\x00" + id))
	if k := binary.BigEndian.Uint64(sum[:8]); k != 0 {
		return k
	}
	return 1
}

// Desired is the state the real LUN should have (docs/virtual-initiators.md §3).
type Desired struct {
	// Registered holds the hosts with at least one registered VM.
	Registered map[string]bool
	// Reservation is nil when the emulated LU has no reservation.
	Reservation *HostReservation
}

// HostReservation is a reservation on the real LUN: its type and the host
// that holds it (for the all-registrants types, the one that creates it).
type HostReservation struct {
	Type   byte
	Holder string
}

// AllRegistrants reports whether t is an all-registrants type (7h, 8h).
func AllRegistrants(t byte) bool {
	return t == scsi.TypeWriteExclusiveAllRegs || t == scsi.TypeExclusiveAccessAllRegs
}

// Desire computes the desired LUN state from the emulated state st and the host
// of each nexus (hostOf's ok false: the nexus is on no known host and counts for
// none). A reservation whose holder is on no known host is desired as none (no
// host could create it), except an all-registrants one, which the host of the
// first registration on a known host creates.
func Desire(st *pr.State, hostOf func(pr.Nexus) (string, bool)) Desired {
	d := Desired{Registered: map[string]bool{}}
	for _, r := range st.Registrations {
		if h, ok := hostOf(r.Nexus); ok {
			d.Registered[h] = true
		}
	}
	res := st.Reservation
	if res == nil {
		return d
	}
	if h, ok := hostOf(res.Holder); ok {
		d.Reservation = &HostReservation{Type: res.Type, Holder: h}
		return d
	}
	if AllRegistrants(res.Type) {
		// Every registrant holds it: any registered host may create it.
		for _, r := range st.Registrations {
			if h, ok := hostOf(r.Nexus); ok {
				d.Reservation = &HostReservation{Type: res.Type, Holder: h}
				return d
			}
		}
	}
	return d
}
