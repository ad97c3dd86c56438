package main

import (
	"fmt"

	"github.com/prhelper/prhelper/scsi"
)

// nextIoctl is Next's command when Gen.Ioctl is set: only what the block
// layer's persistent-reservation ioctls can express (docs/linux-pr.md §4), so
// that the differences between prhelper --backend=linuxpr and the device are
// the ones the ioctl path makes, not refusals of what it cannot carry. PR IN is
// READ KEYS or READ RESERVATION with the full allocation length (no READ FULL
// STATUS, no REPORT CAPABILITIES, which the backend synthesizes); PR OUT is
// REGISTER, REGISTER AND IGNORE EXISTING KEY, RESERVE, RELEASE, CLEAR and
// PREEMPT with a 24-byte parameter list, no flags (no SPEC_I_PT,
// ALL_TG_PT or APTPL: sd sets APTPL itself), scope LU and one of the six
// types. REGISTER AND MOVE and REPLACE LOST RESERVATION have no ioctl.
// PREEMPT AND ABORT has one but is left out: one that LIO executes can hang
// over tcm_loop, and the engine's prediction that LIO would refuse it (how
// prOut guards it) missed once in the lab (seed 1602 step 211, 3 initiators:
// both sides hung). Keys are
// chosen with the same helpers as the full generator.
func (g *Gen) nextIoctl() Step {
	i := g.rng.Intn(g.n)
	if g.pct(30) {
		sa := []byte{scsi.SAReadKeys, scsi.SAReadReservation}[g.rng.Intn(2)]
		cdb := scsi.PRInCDB(sa, fullAlloc)
		return Step{Path: i, CDB: cdb, Desc: fmt.Sprintf("P%d %s", i+1, kindOf(cdb[:]))}
	}
	var sa, typ byte
	var rk, sark uint64
	switch w := g.rng.Intn(100); {
	case w < 35:
		sa = scsi.SARegister
		rk = g.ownKey(i)
		if g.pct(35) {
			sa = scsi.SARegisterAndIgnoreExisting
			rk = []uint64{rk, 0, g.poolKey()}[g.rng.Intn(3)]
		} else if g.pct(12) {
			rk = g.poolKey()
		}
		switch r := g.rng.Intn(100); {
		case r < 62:
			sark = g.poolKey()
		case r < 80:
			sark = 0
		default:
			sark = g.ownKey(i)
		}
	case w < 53:
		sa, typ, rk = scsi.SAReserve, g.ioctlType(), g.resKey(i)
	case w < 67:
		sa, typ, rk = scsi.SARelease, g.ioctlType(), g.resKey(i)
	case w < 73:
		sa, rk = scsi.SAClear, g.resKey(i)
	default:
		sa, typ, rk = scsi.SAPreempt, g.ioctlType(), g.resKey(i)
		switch r := g.rng.Intn(100); {
		case r < 70:
			sark = g.otherKey(i)
		case r < 82:
			sark = 0
		case r < 90:
			sark = g.ownKey(i)
		default:
			sark = g.poolKey()
		}
	}
	st := Step{Path: i, CDB: scsi.PROutCDB(sa, 0, typ, 24), Param: basicParam(rk, sark, 0, nil)}
	st.Desc = fmt.Sprintf("P%d %s type %d rk=%x sark=%x", i+1, kindOf(st.CDB[:]), typ, rk, sark)
	return st
}

// ioctlType is a reservation type enum pr_type can carry: the current
// reservation's often, else one of the six.
func (g *Gen) ioctlType() byte {
	if g.shadow.Reservation != nil && g.pct(45) {
		return g.shadow.Reservation.Type
	}
	return g.pick(validTypes)
}
