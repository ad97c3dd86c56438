package vinit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// TestRandomBackends is the differential of docs/virtual-initiators.md §9
// through the whole backend: three helpers sharing one store, host A on a
// two-path map (the mpath backend), B and C on one disk each (sgio), all over
// the fake SG_IO kernel answered by the pr engine. Random PR OUT commands
// from two VMs per host; after each, every helper polls (the acting one
// first) until the LUN stops changing; then, for every host and each of its
// I_T nexuses, READ and WRITE on the LUN are allowed exactly when some VM of
// the host may do them in the emulated state. Seeds are fixed and printed.
func TestRandomBackends(t *testing.T) {
	seeds, steps := 30, 100
	if testing.Short() {
		seeds = 5
	}
	for seed := 1; seed <= seeds; seed++ {
		runRandomBackends(t, seed, steps)
		if t.Failed() {
			return
		}
	}
}

type randomHost struct {
	b     *Backend
	fd    int   // the guests' descriptor
	nexus []int // the host's descriptors on the LUN, one per I_T nexus
	vms   []string
}

func runRandomBackends(t *testing.T, seed, steps int) {
	rng := rand.New(rand.NewPCG(uint64(seed), 1515))
	st := memory.New()
	l := newRealLU(fdB, fdC)
	const fdD = 10
	l.nexus[fdD] = pr.Nexus{Initiator: pr.SASInitiator(0x5001405000000d01), RTPI: 1}
	hosts := []*randomHost{
		{b: newMpathHost(t, "host-a", st, l), fd: fdMap, nexus: []int{pathB, pathC}},
		{b: newHost(t, "host-b", st, l), fd: fdB, nexus: []int{fdB}},
		{b: newHost(t, "host-c", st, l), fd: fdD, nexus: []int{fdD}},
	}
	var all []string
	hostOf := map[string]*randomHost{}
	for i, h := range hosts {
		for j := 1; j <= 2; j++ {
			vm := fmt.Sprintf("iqn.2026-01.test:h%d-vm%d", i, j)
			h.vms = append(h.vms, vm)
			hostOf[vm] = h
			all = append(all, vm)
		}
	}
	types := []byte{1, 3, 5, 6, 7, 8}
	var log []string
	fail := func(format string, a ...any) {
		t.Helper()
		t.Fatalf("seed %d: "+format+"\n%s", append([]any{seed}, append(a, strings.Join(log, "\n"))...)...)
	}
	good, nonHolderPaths := 0, 0
	for range steps {
		vm := all[rng.IntN(len(all))]
		h := hostOf[vm]
		emu := emulated(t, st)
		cur := uint64(0)
		for _, r := range emu.Registrations {
			if fence.InitiatorName(r.Nexus.Initiator) == vm {
				cur = r.Key
			}
		}
		key, sark, typ := cur, uint64(rng.IntN(5)), types[rng.IntN(len(types))]
		if r := emu.Reservation; r != nil && rng.IntN(2) == 0 {
			typ = r.Type
		}
		var sa byte
		switch rng.IntN(10) {
		case 0, 1:
			sa = scsi.SARegister
			if cur != 0 && rng.IntN(2) == 0 {
				sark = 0
			}
		case 2:
			sa, key = scsi.SARegisterAndIgnoreExisting, 0
		case 3, 4:
			sa = scsi.SAReserve
		case 5:
			sa = scsi.SARelease
		case 6, 7, 8:
			sa = scsi.SAPreempt
		case 9:
			sa = scsi.SAClear
		}
		res, err := out(t, h.b, h.fd, vm, sa, typ, key, sark)
		cdb := scsi.PROutCDB(sa, 0, typ, 24)
		log = append(log, fmt.Sprintf("%s %s key=%#x sark=%#x type=%d: %s %v", vm, scsi.CommandName(cdb[:]), key, sark, typ, res, err))
		if res.Status == scsi.StatusGood {
			good++
		} else if s, ok := res.ParseSense(); ok && s == scsi.SenseTargetFailure {
			fail("the LUN was not brought in line: %v", err)
		}
		// Every helper polls, the acting one first, until the LUN is still.
		order := []*randomHost{h}
		for _, o := range hosts {
			if o != h {
				order = append(order, o)
			}
		}
		stable := false
		for round := 0; round < 6 && !stable; round++ {
			before := lunBytes(l)
			for _, o := range order {
				if err := o.b.Poll(context.Background(), lu, o.fd); err != nil {
					fail("poll: %v", err)
				}
			}
			stable = before == lunBytes(l)
		}
		if !stable {
			fail("the LUN kept changing")
		}
		emu = emulated(t, st)
		for i, o := range hosts {
			for _, c := range [][]byte{{0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0}, write10} {
				want := false
				for _, v := range o.vms {
					want = want || allowedOn(&emu, pr.Nexus{Initiator: pr.ISCSIInitiator(v, ""), RTPI: 1}, c)
				}
				lunSt := lunState(l)
				some := false
				for _, fd := range o.nexus {
					l.mu.Lock()
					n := l.nexus[fd]
					l.mu.Unlock()
					got := allowedOn(lunSt, n, c)
					some = some || got
					if r := lunSt.Reservation; r != nil && (r.Type == scsi.TypeWriteExclusive || r.Type == scsi.TypeExclusiveAccess) &&
						len(o.nexus) > 1 && !r.Holder.Equal(n) && registeredOn(lunSt, n) {
						// The multipath limit of docs/virtual-initiators.md
						// §3: under 1h/3h only the holding path of the
						// holding host has the holder's rights; the host's
						// rights are checked as a whole below.
						nonHolderPaths++
						continue
					}
					if got != want {
						fail("host %d nexus %d %s: LUN allows %v, its VMs %v\nemulated %+v %+v\nLUN %+v %+v", i, fd, scsi.CommandName(c), got, want,
							emu.Registrations, emu.Reservation, lunState(l).Registrations, lunState(l).Reservation)
					}
				}
				if some != want {
					fail("host %d %s: some path allows %v, its VMs %v", i, scsi.CommandName(c), some, want)
				}
			}
		}
	}
	if seed <= 2 || seed%10 == 0 {
		t.Logf("seed %d: %d of %d guest commands GOOD, %d PR OUT on the LUN, %d checks of a non-holding path under 1h/3h left to the host-wide check",
			seed, good, steps, l.prOuts, nonHolderPaths)
	}
}

func emulated(t *testing.T, st store.Store) pr.State {
	t.Helper()
	v, err := st.Get(context.Background(), emulate.KeyPrefix+lu)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := fence.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	var s pr.State
	if b != nil {
		if err := s.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// lunState is a copy of the LUN's state.
func lunState(l *realLU) *pr.State {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, _ := l.st.MarshalBinary()
	var c pr.State
	_ = c.UnmarshalBinary(b)
	return &c
}

// lunBytes is the LUN's registrations and reservation, to see it change.
func lunBytes(l *realLU) string {
	s := lunState(l)
	return fmt.Sprintf("%+v %+v", s.Registrations, s.Reservation)
}

// allowedOn is the reservation check of cdb from n on a copy of st without
// its unit attentions.
func allowedOn(st *pr.State, n pr.Nexus, cdb []byte) bool {
	b, _ := st.MarshalBinary()
	var c pr.State
	_ = c.UnmarshalBinary(b)
	c.UnitAttentions = nil
	return pr.CheckAccess(pr.LIO(), &c, n, cdb).Status == scsi.StatusGood
}

// registeredOn reports whether nexus n holds a registration in st.
func registeredOn(st *pr.State, n pr.Nexus) bool {
	for _, r := range st.Registrations {
		if r.Nexus.Equal(n) {
			return true
		}
	}
	return false
}
