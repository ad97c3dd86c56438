package main

import (
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"strings"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// The lab's initiator ports (test/lab/guest/lib.sh, lab_lio_path): host A is
// naa.5001405b00000001 on the reference LU and ...01 and ...02 (the map's two
// paths) on the map's LU; host B is ...03 on both.
const (
	initiatorA1 = 0x5001405b00000001
	initiatorA2 = 0x5001405b00000002
	initiatorB  = 0x5001405b00000003
	// unknownInitiator is a SAS address neither LU knows: host B's REGISTER AND
	// MOVE goes there (see Gen).
	unknownInitiator = 0x5001405b000000ee
)

// Host is who sends a step.
type Host int

const (
	HostA Host = iota // through the map (prhelper) / the reference's single nexus
	HostB             // its own nexus on each LU
)

func (h Host) String() string { return [...]string{"A", "B"}[h] }

// Step is one generated command. REGISTER AND MOVE names a relative target
// port that differs between the two LUs, so the parameter list is per side.
type Step struct {
	Host     Host
	CDB      [wire.CDBSize]byte
	ParamMap []byte
	ParamRef []byte
	Desc     string
}

// Ports are the RELATIVE TARGET PORT IDENTIFIERs of host B's nexus on the
// map's LU and on the reference LU (the REGISTER AND MOVE destination).
type Ports struct{ BMap, BRef uint16 }

var keyPool = []uint64{0xa1, 0xa2, 0xb1, 0xb2}

// Gen makes a seeded random sequence of PR commands from host A and host B:
// every service action but PREEMPT AND ABORT (it can hang over tcm_loop, lab
// README), without SPEC_I_PT and ALL_TG_PT (they name or register single
// nexuses, which a multipath host cannot express: doc.go of
// internal/backend/mpath), and with REGISTER AND MOVE from host B only towards
// an initiator the LU does not know (a move to host A names one of the map's
// nexuses). It keeps a shadow of the reference LU (the pr engine, LIO
// profile) to choose plausible keys; the shadow only biases choices.
type Gen struct {
	// Disjoint keeps the hosts' registrations apart: host A registers a1 or
	// a2, host B (and REGISTER AND MOVE destinations) b1 or b2.
	Disjoint bool

	rng    *rand.Rand
	ports  Ports
	shadow pr.State
	a, b   pr.Nexus
}

// NewGen returns a generator for seed.
func NewGen(seed int64, ports Ports) *Gen {
	return &Gen{rng: rand.New(rand.NewSource(seed)), ports: ports,
		a: pr.Nexus{Initiator: pr.SASInitiator(initiatorA1), RTPI: 1},
		b: pr.Nexus{Initiator: pr.SASInitiator(initiatorB), RTPI: 2}}
}

func (g *Gen) pct(p int) bool { return g.rng.Intn(100) < p }

func (g *Gen) key(n pr.Nexus) uint64 {
	for _, r := range g.shadow.Registrations {
		if r.Nexus.Equal(n) {
			return r.Key
		}
	}
	return 0
}

func (g *Gen) pool() uint64 { return keyPool[g.rng.Intn(len(keyPool))] }

// newKey is a key for host to register.
func (g *Gen) newKey(h Host) uint64 {
	if g.Disjoint {
		return keyPool[2*int(h)+g.rng.Intn(2)]
	}
	return g.pool()
}

// Next returns the next step and applies it to the shadow.
func (g *Gen) Next() Step {
	st := g.next()
	n := g.a
	if st.Host == HostB {
		n = g.b
	}
	pr.Execute(pr.LIO(), &g.shadow, n, st.CDB[:], st.ParamRef)
	g.shadow.UnitAttentions = nil
	return st
}

func (g *Gen) next() Step {
	host := Host(g.rng.Intn(2))
	me, other := g.a, g.b
	if host == HostB {
		me, other = g.b, g.a
	}
	if g.pct(30) {
		sa := byte(g.rng.Intn(4))
		cdb := scsi.PRInCDB(sa, wire.MaxData)
		return Step{Host: host, CDB: cdb, Desc: fmt.Sprintf("%v %s", host, scsi.CommandName(cdb[:]))}
	}
	own := g.key(me)
	key := func() uint64 {
		if g.pct(75) {
			return own
		}
		return g.pool()
	}
	types := []byte{1, 3, 5, 6, 7, 8}
	typ := types[g.rng.Intn(len(types))]
	if g.shadow.Reservation != nil && g.pct(50) {
		typ = g.shadow.Reservation.Type
	}
	var sa byte
	p := make([]byte, 24)
	q := p
	note := ""
	switch w := g.rng.Intn(100); {
	case w < 25:
		sa = scsi.SARegister
		if g.pct(45) {
			sa = scsi.SARegisterAndIgnoreExisting
		}
		sark := g.newKey(host)
		if g.pct(25) {
			sark = 0
		}
		putKeys(p, key(), sark)
		if g.pct(20) {
			p[20] = scsi.ParamAPTPL
		}
	case w < 45:
		sa = scsi.SAReserve
		putKeys(p, key(), 0)
	case w < 60:
		sa = scsi.SARelease
		putKeys(p, key(), 0)
	case w < 65:
		sa = scsi.SAClear
		putKeys(p, key(), 0)
	case w < 90:
		sa = scsi.SAPreempt
		sark := g.key(other)
		switch x := g.rng.Intn(100); {
		case x < 20:
			sark = own
		case x < 35:
			sark = 0
		case x < 50:
			sark = g.pool()
		}
		putKeys(p, key(), sark)
	default:
		sa = scsi.SARegisterAndMove
		rk, sark, unreg := key(), g.newKey(HostB), g.pct(40)
		if host == HostA {
			p = moveParam(rk, sark, unreg, g.ports.BMap, initiatorB)
			q = moveParam(rk, sark, unreg, g.ports.BRef, initiatorB)
			note = " to B"
		} else {
			p = moveParam(rk, sark, unreg, g.ports.BMap, unknownInitiator)
			q = moveParam(rk, sark, unreg, g.ports.BRef, unknownInitiator)
			note = " to an unknown initiator"
		}
	}
	if sa != scsi.SARegisterAndMove {
		q = p
	}
	if len(p) > 24 || sa == scsi.SARegisterAndMove {
		p, q = slices.Clone(p), slices.Clone(q)
	}
	cdb := scsi.PROutCDB(sa, 0, typ, uint32(len(p)))
	return Step{Host: host, CDB: cdb, ParamMap: p, ParamRef: q,
		Desc: fmt.Sprintf("%v %s type %d rk=%x sark=%x%s%s", host, scsi.CommandName(cdb[:]), typ,
			binary.BigEndian.Uint64(p[0:8]), binary.BigEndian.Uint64(p[8:16]), aptplNote(sa, p), note)}
}

func aptplNote(sa byte, p []byte) string {
	if (sa == scsi.SARegister || sa == scsi.SARegisterAndIgnoreExisting) && p[20]&scsi.ParamAPTPL != 0 {
		return " APTPL"
	}
	if sa == scsi.SARegisterAndMove && p[17]&scsi.MoveUnreg != 0 {
		return " UNREG"
	}
	return ""
}

func putKeys(p []byte, key, saKey uint64) {
	binary.BigEndian.PutUint64(p[0:8], key)
	binary.BigEndian.PutUint64(p[8:16], saKey)
}

// moveParam is a REGISTER AND MOVE parameter list (SPC-4 §6.16.4) naming a SAS
// initiator.
func moveParam(rk, sark uint64, unreg bool, rtpi uint16, addr uint64) []byte {
	p := make([]byte, 24)
	putKeys(p, rk, sark)
	if unreg {
		p[17] = scsi.MoveUnreg
	}
	binary.BigEndian.PutUint16(p[18:20], rtpi)
	tid := pr.SASInitiator(addr).TransportID()
	binary.BigEndian.PutUint32(p[20:24], uint32(len(tid)))
	return append(p, tid...)
}

// Reply is what one side answered: status, sense (fixed format, parsed) and data.
type Reply struct {
	Status byte
	Sense  scsi.Sense
	Data   []byte
}

// Fold is a reply with host A's nexuses folded into one host: READ KEYS as
// the set of distinct keys, generations left out, READ FULL STATUS as one
// entry per host and key (holding when any of its nexuses holds, with the
// holder's type and scope); the rest as it came.
func Fold(cdb [wire.CDBSize]byte, r Reply) string {
	s := scsi.StatusName(r.Status)
	if r.Status == scsi.StatusCheckCondition {
		s += " " + r.Sense.String()
	}
	if r.Status != scsi.StatusGood || cdb[0] != scsi.OpPersistentReserveIn || len(r.Data) < 8 {
		return s + fmt.Sprintf(" %x", r.Data)
	}
	switch scsi.ServiceAction(cdb[:]) {
	case scsi.SAReadKeys:
		k, err := scsi.DecodeKeys(r.Data)
		if err != nil {
			return s + " " + err.Error()
		}
		ks := slices.Clone(k.Keys)
		slices.Sort(ks)
		return s + fmt.Sprintf(" keys %x", slices.Compact(ks))
	case scsi.SAReadFullStatus:
		fs, err := scsi.DecodeFullStatus(r.Data)
		if err != nil {
			return s + " " + err.Error()
		}
		held := map[string]string{}
		for _, x := range fs.Descriptors {
			host := "?"
			switch x.TransportID.Addr {
			case initiatorA1, initiatorA2:
				host = "A"
			case initiatorB:
				host = "B"
			}
			k := fmt.Sprintf("%s:%x%s", host, x.Key, map[bool]string{true: ":all_tg_pt"}[x.AllTargetPorts])
			if v, ok := held[k]; !ok || (x.Holder && v == "") {
				held[k] = ""
				if x.Holder {
					held[k] = fmt.Sprintf(":holds type %d scope %d", x.Type, x.Scope)
				}
			}
		}
		var ds []string
		for k, v := range held {
			ds = append(ds, k+v)
		}
		slices.Sort(ds)
		return s + " [" + strings.Join(ds, " ") + "]"
	default:
		return s + fmt.Sprintf(" %x", append(make([]byte, 4), r.Data[4:]...))
	}
}
