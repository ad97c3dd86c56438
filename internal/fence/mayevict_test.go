package fence

import (
	"math/rand/v2"
	"testing"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// TestMayEvictHidesNoEviction runs seeded random PR OUT commands (every
// service action, a few keys, four initiators, two of them with an ISID on
// two ports) through the engine, and checks that every command for which
// mayEvict says the state before need not be kept evicts nobody (Evicted
// finds no one), while the commands it keeps the state for do evict in some
// runs (so the sequences reach evictions at all).
func TestMayEvictHidesNoEviction(t *testing.T) {
	nexuses := []pr.Nexus{vmA, vmB, vmC, sas,
		{Initiator: pr.ISCSIInitiator(vmA.Initiator.Name, "000000000001"), RTPI: 2},
		{Initiator: pr.ISCSIInitiator(vmB.Initiator.Name, "000000000002"), RTPI: 2}}
	actions := []byte{scsi.SARegister, scsi.SARegisterAndIgnoreExisting, scsi.SAReserve, scsi.SARelease,
		scsi.SAClear, scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARegisterAndMove}
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
		scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}
	evictions := 0
	for _, p := range []pr.Profile{pr.LIO(), pr.SPC4()} {
		for seed := uint64(1); seed <= 20; seed++ {
			rng := rand.New(rand.NewPCG(seed, 14))
			var st pr.State
			for step := 0; step < 400; step++ {
				c := prOut{n: nexuses[rng.IntN(len(nexuses))], sa: actions[rng.IntN(len(actions))],
					typ: types[rng.IntN(len(types))], rk: uint64(rng.IntN(4)), sark: uint64(rng.IntN(4)), unreg: rng.IntN(2) == 0}
				if c.sa == scsi.SARegisterAndMove {
					to := nexuses[rng.IntN(3)] // iSCSI without ISID: what cdbParam encodes
					c.moveTo = &to
				}
				cdb, _ := c.cdbParam()
				res, evicted := apply(p, &st, c)
				if !mayEvict(cdb[:]) && len(evicted) > 0 {
					t.Fatalf("seed %d step %d: %s from %s (%#x) evicted %v, but mayEvict said no", seed, step, scsi.CommandName(cdb[:]), c.n, res.Status, evicted)
				}
				evictions += len(evicted)
				st.UnitAttentions = nil // keep the commands reaching their service actions
			}
		}
	}
	if evictions == 0 {
		t.Fatal("no command evicted anyone: the sequences test nothing")
	}
	t.Logf("%d evictions, all by commands mayEvict keeps the state for", evictions)
}
