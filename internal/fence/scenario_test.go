package fence_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/memory"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// recorder is a policy that records whom it fenced, by which helper, and
// fences nothing: the scenario checks who is fenced, not how.
type recorder struct {
	mu  *sync.Mutex
	log *[]string // "victim@helper"
	id  string
}

func (r recorder) String() string { return "record" }

func (r recorder) Fence(_ context.Context, t fence.Target) error {
	r.mu.Lock()
	*r.log = append(*r.log, t.Victim+"@"+r.id)
	r.mu.Unlock()
	return nil
}

const vm3 = "iqn.2025-01.dev.prhelper:vm:bbbbbbbb-cccc-dddd-eeee-ffffffffffff"

// pipeline is three VMs on two hosts sharing one store: vm1 on host A, vm2
// and vm3 on host B, each helper with a recording policy.
type pipeline struct {
	st     store.Store
	mu     sync.Mutex
	log    []string
	be     map[string]*emulate.Backend // by initiator
	hostOf map[string]string
}

func newPipeline(t *testing.T) *pipeline {
	p := &pipeline{st: memory.New(), be: map[string]*emulate.Backend{}, hostOf: map[string]string{vm1: "hostA@1", vm2: "hostB@2", vm3: "hostB@2"}}
	l := newLeases()
	hosts := map[string]*helper{}
	for _, id := range []string{"hostA@1", "hostB@2"} {
		reg := fence.NewRegistry()
		c := fence.New(fence.Options{Store: p.st, KeyPrefix: emulate.KeyPrefix, Profile: pr.LIO(),
			Policy: recorder{mu: &p.mu, log: &p.log, id: id}, Registry: reg, Timeout: 5 * time.Second, Poll: 2 * time.Millisecond,
			Members: l.join(id)})
		h := &helper{reg: reg, coord: c, be: emulate.New(p.st, pr.LIO()).WithFencing(c)}
		h.run(t)
		hosts[id] = h
	}
	for vm, id := range p.hostOf {
		hosts[id].track(t, vm, os.Getpid()) // the recorder never signals it
		p.be[vm] = hosts[id].be
	}
	return p
}

func (p *pipeline) state(t *testing.T) pr.State {
	t.Helper()
	v, err := p.st.Get(context.Background(), emulate.KeyPrefix+lu)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := fence.Decode(v)
	if err != nil {
		t.Fatal(err)
	}
	var st pr.State
	if b != nil {
		if err := st.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func (p *pipeline) fenced() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.log
	p.log = nil
	slices.Sort(out)
	return out
}

// scenarioCmd is one PR OUT of the scenario.
type scenarioCmd struct {
	from     string
	sa, typ  byte
	rk, sark uint64
}

func (c scenarioCmd) String() string {
	return fmt.Sprintf("%s sa=%d type=%d rk=%x sark=%x", c.from[len(c.from)-4:], c.sa, c.typ, c.rk, c.sark)
}

// runScenario runs cmds through the helpers of their VMs' hosts and checks,
// after each, that the VMs fenced (by the helper of the host each runs on,
// before the command's answer) are exactly those the rule of docs/fencing.md
// names, computed here independently from the engine's states before and
// after the command: registered before, not after, not the sender, and a
// reservation exists after. It also checks that no record is left pending
// after a GOOD.
func runScenario(t *testing.T, cmds []scenarioCmd) (fences int) {
	p := newPipeline(t)
	for i, c := range cmds {
		before := p.state(t)
		res, _ := prOut(t, p.be[c.from], c.from, c.sa, c.typ, c.rk, c.sark)
		after := p.state(t)
		got := p.fenced()
		var want []string
		if res.Status == scsi.StatusGood && after.Reservation != nil {
			for _, r := range before.Registrations {
				name := fence.InitiatorName(r.Nexus.Initiator)
				if name == c.from || slices.ContainsFunc(after.Registrations, func(a pr.Registration) bool {
					return fence.InitiatorName(a.Nexus.Initiator) == name
				}) {
					continue
				}
				want = append(want, name+"@"+p.hostOf[name])
			}
		}
		slices.Sort(want)
		want = slices.Compact(want)
		if !slices.Equal(got, want) {
			t.Fatalf("command %d (%v) answered %s: fenced %v, want %v\nbefore %+v\nafter %+v", i, c, scsi.StatusName(res.Status), got, want, before, after)
		}
		if res.Status == scsi.StatusGood {
			if recs := pending(t, p.st); len(recs) != 0 {
				t.Fatalf("command %d (%v): GOOD with records pending: %+v", i, c, recs)
			}
		}
		fences += len(got)
	}
	return fences
}

// randomCommands draws n commands in which each VM mostly uses its own key
// (so that its commands succeed and evictions are frequent), sometimes
// another's or 0.
func randomCommands(rng *rand.Rand, n int) []scenarioCmd {
	vms := []string{vm1, vm2, vm3}
	own := []uint64{0xa, 0xb, 0xc}
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
		scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}
	other := func(v int) uint64 {
		if rng.IntN(5) == 0 {
			return 0
		}
		return own[(v+1+rng.IntN(2))%3]
	}
	var out []scenarioCmd
	for range n {
		v := rng.IntN(3)
		c := scenarioCmd{from: vms[v], typ: types[rng.IntN(len(types))], rk: own[v]}
		if rng.IntN(10) == 0 {
			c.rk = other(v) // a wrong key: RESERVATION CONFLICT, or an unregistered sender
		}
		switch k := rng.IntN(20); {
		case k < 5:
			c.sa, c.rk, c.sark = scsi.SARegister, 0, own[v]
		case k < 6:
			c.sa, c.sark = scsi.SARegister, 0 // unregister
		case k < 7:
			c.sa, c.sark = scsi.SARegisterAndIgnoreExisting, own[v]
		case k < 11:
			c.sa = scsi.SAReserve
		case k < 12:
			c.sa = scsi.SARelease
		case k < 13:
			c.sa = scsi.SAClear
		case k < 17:
			c.sa, c.sark = scsi.SAPreempt, other(v)
		default:
			c.sa, c.sark = scsi.SAPreemptAndAbort, other(v)
		}
		out = append(out, c)
	}
	return out
}

// TestScenarioWhoIsFenced runs scripted and seeded random PR OUT sequences
// through two hosts' helpers (backend, coordinator, records in the store,
// membership) and checks every command's fences against the rule.
func TestScenarioWhoIsFenced(t *testing.T) {
	const (
		reg, res, pre = scsi.SARegister, scsi.SAReserve, scsi.SAPreempt
		wero, ea      = scsi.TypeWriteExclusiveRegOnly, scsi.TypeExclusiveAccess
		ear           = scsi.TypeExclusiveAccessAllRegs
	)
	scripted := map[string][]scenarioCmd{
		// vm2 preempts the holder vm1 (host A); vm3 keeps its own key.
		"preempt holder across hosts": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm3, reg, 0, 0, 0xc},
			{vm1, res, wero, 0xa, 0}, {vm2, pre, wero, 0xb, 0xa}},
		// vm1 preempts a key two VMs on host B share: both are fenced by B.
		"shared key on one host": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm3, reg, 0, 0, 0xb},
			{vm2, res, ea, 0xb, 0}, {vm1, pre, ea, 0xa, 0xb}},
		// All registrants: PREEMPT with SARK 0 fences every other registrant.
		"all registrants sark 0": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm3, reg, 0, 0, 0xc},
			{vm1, res, ear, 0xa, 0}, {vm3, pre, ear, 0xc, 0}},
		// No reservation: a PREEMPT removes a registration but fences nobody.
		"no reservation": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm2, pre, 0, 0xb, 0xa}},
		// CLEAR fences nobody.
		"clear": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm1, res, wero, 0xa, 0}, {vm2, scsi.SAClear, 0, 0xb, 0}},
		// The holder preempts a registrant under Write Exclusive: fenced
		// although it could not write before (docs/fencing.md).
		"holder preempts a registrant": {{vm1, reg, 0, 0, 0xa}, {vm2, reg, 0, 0, 0xb}, {vm1, res, scsi.TypeWriteExclusive, 0xa, 0},
			{vm1, pre, scsi.TypeWriteExclusive, 0xa, 0xb}},
	}
	wantFences := map[string]int{"preempt holder across hosts": 1, "shared key on one host": 2, "all registrants sark 0": 2,
		"no reservation": 0, "clear": 0, "holder preempts a registrant": 1}
	for name, cmds := range scripted {
		t.Run(name, func(t *testing.T) {
			if n := runScenario(t, cmds); n != wantFences[name] {
				t.Fatalf("%d fences, want %d", n, wantFences[name])
			}
		})
	}
	total := 0
	for _, seed := range []uint64{1, 2, 3, 20261207} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			t.Logf("seed %d", seed)
			n := runScenario(t, randomCommands(rand.New(rand.NewPCG(seed, 0)), 150))
			t.Logf("%d fences checked", n)
			total += n
		})
	}
	if total == 0 {
		t.Fatal("the random scenarios fenced nobody: they check nothing")
	}
}

// FuzzScenario: the same check on command sequences the fuzzer chooses
// (go test -fuzz FuzzScenario ./internal/fence/).
func FuzzScenario(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 2, 0, 3, 2, 1, 1, 6, 2, 1, 2, 1})
	f.Add([]byte{0, 0, 0, 1, 1, 0, 0, 2, 2, 0, 0, 2, 1, 3, 1, 2, 2, 6, 3, 2, 0, 7, 3, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		vms := []string{vm1, vm2, vm3}
		sas := []byte{scsi.SARegister, scsi.SARegisterAndIgnoreExisting, scsi.SAReserve, scsi.SARelease,
			scsi.SAClear, scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARegister}
		types := []byte{0, 1, 3, 5, 6, 7, 8, 5}
		keys := []uint64{0, 0xa, 0xb, 0xc}
		var cmds []scenarioCmd
		for i := 0; i+3 < len(b) && len(cmds) < 30; i += 4 {
			cmds = append(cmds, scenarioCmd{from: vms[int(b[i])%3], sa: sas[int(b[i+1])%len(sas)], typ: types[int(b[i+2])%len(types)],
				rk: keys[int(b[i+3])%4], sark: keys[int(b[i+3]>>2)%4]})
		}
		runScenario(t, cmds)
	})
}
