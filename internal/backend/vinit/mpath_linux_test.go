package vinit

import (
	"context"
	"fmt"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/backend/mpath"
	kernel "github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// fdMap is host A's multipath map as its guests' descriptor; its paths sdb
// and sdc are descriptors pathB and pathC of the fake kernel, each its own
// I_T nexus on the LUN.
const (
	fdMap        = 3
	pathB, pathC = 201, 202
)

// newMpathHost builds host id's helper over the mpath backend, the map's
// paths opened and reached through the fake kernel below SG_IO.
func newMpathHost(t *testing.T, id string, st store.Store, l *realLU) *Backend {
	l.mu.Lock()
	l.nexus[pathB] = pr.Nexus{Initiator: pr.SASInitiator(0x5001405000000c01), RTPI: 1}
	l.nexus[pathC] = pr.Nexus{Initiator: pr.SASInitiator(0x5001405000000c02), RTPI: 1}
	l.mu.Unlock()
	mp, err := mpath.New(mpath.Options{
		Discover: func(fd int) (mpath.Map, error) {
			if fd != fdMap && fd <= 100 {
				return mpath.Map{}, fmt.Errorf("fd %d is not a dm-multipath map", fd)
			}
			return mpath.Map{Name: "mpatha", WWID: "36001405abc", Paths: []mpath.Path{
				{Dev: "sdb", Usable: true, State: "usable"}, {Dev: "sdc", Usable: true, State: "usable"}}}, nil
		},
		Open: func(dev string) (int, error) {
			switch dev {
			case "sdb":
				return pathB, nil
			case "sdc":
				return pathC, nil
			}
			return -1, fmt.Errorf("no %s", dev)
		},
		SGIO: kernel.Options{Ioctl: l.ioctl},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{
		Emulate:        emulate.New(st, pr.LIO()),
		Lower:          func(int) (backend.Backend, error) { return mp, nil },
		Store:          st,
		StateKeyPrefix: emulate.KeyPrefix,
		ParseInitiator: emulate.ParseInitiator,
		Host:           id,
		Dup:            func(fd int) (int, error) { return fd, nil },
		Close:          func(int) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pathKeys counts the LUN's registrations (one per I_T nexus) with key k.
func (l *realLU) pathKeys(k uint64) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.st.Registrations {
		if r.Key == k {
			n++
		}
	}
	return n
}

// TestMultipathHost: host A reaches the LUN through a two-path map (the mpath
// backend), host B through one SCSI disk. A's key is on both paths while a VM
// of A is registered; a change of A's reservation type (a PREEMPT of A's own
// key) leaves both paths registered; B's eviction of A's VMs removes A from
// both paths, and the LUN refuses writes through either; A registers on both
// again for a new VM.
func TestMultipathHost(t *testing.T) {
	st := memory.New()
	l := newRealLU(fdB, fdC)
	ha, hb := newMpathHost(t, "host-a", st, l), newHost(t, "host-b", st, l)
	ka := ha.Key()

	good(t)(out(t, ha, fdMap, a1, scsi.SARegister, 0, 0, 0x11))
	good(t)(out(t, ha, fdMap, a2, scsi.SARegister, 0, 0, 0x12))
	good(t)(out(t, ha, fdMap, a1, scsi.SAReserve, scsi.TypeWriteExclusive, 0x11, 0))
	if n := l.pathKeys(ka); n != 2 {
		t.Fatalf("A's key on %d paths, want 2", n)
	}
	good(t)(out(t, ha, fdMap, a2, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0x12, 0x11))
	if v := l.view(t, fdC); l.pathKeys(ka) != 2 || v.Reservation == nil || v.Reservation.Key != ka || v.Reservation.Type != scsi.TypeExclusiveAccess {
		t.Fatalf("after a2 preempted a1: A's key on %d paths, LUN %+v", l.pathKeys(ka), v)
	}
	good(t)(out(t, hb, fdB, b1, scsi.SARegister, 0, 0, 0x21))
	good(t)(out(t, hb, fdB, b1, scsi.SAPreempt, scsi.TypeExclusiveAccess, 0x21, 0x12))
	if n := l.pathKeys(ka); n != 0 {
		t.Fatalf("A's key on %d paths after B evicted A's VMs", n)
	}
	for _, fd := range []int{pathB, pathC} {
		if res := l.may(fd, write10); res.Status != scsi.StatusReservationConflict {
			t.Fatalf("WRITE through A's path %d: %s", fd, res)
		}
	}
	good(t)(out(t, ha, fdMap, a1, scsi.SARegister, 0, 0, 0x11))
	if n := l.pathKeys(ka); n != 2 {
		t.Fatalf("A's key on %d paths after a1 registered again, want 2", n)
	}
	if err := ha.Poll(context.Background(), lu, fdMap); err != nil {
		t.Fatal(err)
	}
}
