package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// initiatorBase is the SAS address prefix of the lab's tcm_loop initiator
// ports: path N (1-based) is naa.5001405b0000000N (test/lab/guest/lib.sh,
// lab_lio_path).
const initiatorBase = 0x5001405b00000000

// fullAlloc is the allocation length of most PR IN commands: the helper
// protocol's data limit (PR_HELPER_DATA_SIZE).
const fullAlloc = wire.MaxData

// keyPool are the reservation keys the generator draws from; a small pool makes
// right and wrong keys both frequent.
var keyPool = []uint64{
	0xaaaa0000000000a1, 0xbbbb0000000000b2, 0xcccc0000000000c3,
	0xdddd0000000000d4, 0xeeee0000000000e5, 0x1111000000000011,
}

// validTypes are the six persistent-reservation types (SPC-4 §6.16.2 table 170);
// badTypes are reserved or obsolete codes.
var (
	validTypes = []byte{1, 3, 5, 6, 7, 8}
	badTypes   = []byte{0, 2, 4, 9, 0x0f}
	oddAllocs  = []uint16{0, 1, 4, 7, 8, 9, 12, 16, 23, 24, 30, 31, 40, 64, 100}
)

// Step is one generated command: the path (initiator index, 0-based) it goes
// through, the 16-byte CDB as the helper protocol carries it, the PR OUT
// parameter list (exactly the CDB's PARAMETER LIST LENGTH bytes, as QEMU sends
// it) and a short description.
type Step struct {
	Path  int
	CDB   [wire.CDBSize]byte
	Param []byte
	Desc  string
}

// Kind names the command's opcode and service action for coverage counts, e.g.
// "OUT/RESERVE".
func (s Step) Kind() string {
	return kindOf(s.CDB[:])
}

func kindOf(cdb []byte) string {
	sa := cdb[1] & 0x1f
	if cdb[0] == scsi.OpPersistentReserveIn {
		if n, ok := inNames[sa]; ok {
			return "IN/" + n
		}
		return fmt.Sprintf("IN/SA%02x", sa)
	}
	if n, ok := outNames[sa]; ok {
		return "OUT/" + n
	}
	return fmt.Sprintf("OUT/SA%02x", sa)
}

var inNames = map[byte]string{0: "READ_KEYS", 1: "READ_RESERVATION", 2: "REPORT_CAPABILITIES", 3: "READ_FULL_STATUS"}

var outNames = map[byte]string{
	0: "REGISTER", 1: "RESERVE", 2: "RELEASE", 3: "CLEAR", 4: "PREEMPT",
	5: "PREEMPT_AND_ABORT", 6: "REGISTER_AND_IGNORE", 7: "REGISTER_AND_MOVE", 8: "REPLACE_LOST",
}

// Gen generates a PR command sequence for n initiators, one per path, each
// reaching the logical unit through its own target port (RTPIs[i]). It is
// deterministic: the same seed, n and RTPIs give the same sequence. To choose
// plausible keys it keeps a shadow of the logical unit's state run through the
// pr engine (LIO profile); the shadow only biases choices, the comparison of
// the real answers is the caller's.
//
// DupTIDs lets a SPEC_I_PT TransportID list name the commanding initiator, or
// one initiator twice. LIO then registers that I_T nexus twice
// (core_scsi3_decode_spec_i_port only skips TransportIDs registered before the
// command): READ KEYS and READ FULL STATUS show two registrations of one I_T
// nexus, which SPC-4 has no room for. The LIO profile does the same
// (pr.Profile.SpecIPTDuplicates, docs/spc4-pr.md §14.2 D27); pr.SPC4() skips
// the repeat. Found by prgen in the lab (three seeds with an earlier revision
// of this generator); testdata/former-dup-tids-seed1007-n3.txt.gz replays one
// (step 339). When one of the two registrations goes, LIO's reservation
// check counts the nexus as unregistered though the other remains
// (pr.Profile.SharedRegisteredFlag, docs/spc4-pr.md §14.4 D29): found with
// every flag on (seeds 5004, 5005 and 5022, 3-4 initiators;
// testdata/lio-seed5004-n3-all.txt.gz and its two siblings replay them).
// Off by default (the generator's defaults are SPC-4's common ground);
// tests/emulate-vs-lio.sh turns it on.
//
// An earlier engine answered RESERVATION CONFLICT to a PREEMPT under an
// all-registrants reservation whose SARK matched only the caller's own key, where
// LIO answers GOOD; prgen left those out behind an OwnKeyPreempt switch. The
// engine is fixed (pr/preempt.go) and the switch is gone: the checked runs send
// them, and testdata/lio-seed12-n3.txt.gz (recorded with the case let through)
// replays the step that found it (473).
//
// ZeroLenWE lets through PR OUT commands with no parameter list (PARAMETER
// LIST LENGTH 0) from an unregistered nexus while another nexus holds a Write
// Exclusive family reservation (types 1, 5, 7). LIO's reservation check
// (core_scsi3_pr_seq_non_holder) lets a non-holder's command without data-out
// pass under Write Exclusive types, so such a PREEMPT, CLEAR, RELEASE or
// RESERVE reaches the PR OUT handler and answers 05/1A/00 PARAMETER LIST
// LENGTH ERROR; SPC-4 table 65 (PR OUT from a not registered nexus: conflict)
// asks for RESERVATION CONFLICT, which pr.SPC4() answers; pr.LIO() answers as
// LIO (Profile.NoDataPROutByDirection, docs/spc4-pr.md §14 D26). A LIO quirk,
// found by prgen in the lab with an earlier revision of this generator: an
// unregistered PREEMPT with no list under Write Exclusive Registrants Only.
//
// MoveNoUnreg lets a REGISTER AND MOVE go to a nexus whose registration was
// earlier the source of a REGISTER AND MOVE with UNREG=0. LIO
// (core_scsi3_emulate_pro_register_and_move) sets "scope" from the
// reservation's type and stores it in the source registration's scope, and
// never sets the destination's: when such a registration later receives the
// reservation by a move, LIO's holder carries a scope of 1h-8h, invisible in
// READ RESERVATION (only the high nibble is reported), so the holder's own
// RESERVE and RELEASE get RESERVATION CONFLICT and its PREEMPT of itself
// queues RESERVATIONS RELEASED for the others. The LIO profile does the same
// (pr.Profile.MoveSourceScope, docs/spc4-pr.md §14.3 D28); pr.SPC4() keeps
// LU_SCOPE, as SPC-4 does. A LIO bug, found by prgen in the lab with
// 10000-step runs of an earlier revision of this generator (seed 777000 step
// 4237: RESERVE by the holder, LIO RESERVATION CONFLICT, engine GOOD; seed
// 777003 step 1137: LIO 06/2A/04, engine GOOD). Off by default, like DupTIDs;
// tests/emulate-vs-lio.sh turns it on.
//
// Ioctl restricts the sequence to the commands the block layer's
// persistent-reservation ioctls can express (nextIoctl), for the differential
// of prhelper --backend=linuxpr (prgen -linuxpr, linuxpr.go). The other
// switches do not apply to it.
type Gen struct {
	DupTIDs     bool
	ZeroLenWE   bool
	MoveNoUnreg bool
	Ioctl       bool

	badScope map[int]bool // paths whose LIO registration has a wrong scope

	rng    *rand.Rand
	n      int
	rtpis  []uint16
	prof   pr.Profile
	shadow pr.State
}

// NewGen returns a generator for seed over len(rtpis) initiators (2 to 4).
func NewGen(seed int64, rtpis []uint16) (*Gen, error) {
	if len(rtpis) < 2 || len(rtpis) > 4 {
		return nil, fmt.Errorf("prgen: want 2 to 4 initiators, got %d", len(rtpis))
	}
	g := &Gen{rng: rand.New(rand.NewSource(seed)), n: len(rtpis), rtpis: append([]uint16(nil), rtpis...), prof: pr.LIO()}
	g.shadow.Ports = LabPorts(rtpis)
	return g, nil
}

// InitiatorAddr is the SAS address of path i's initiator port (0-based).
func InitiatorAddr(i int) uint64 { return initiatorBase | uint64(i+1) }

// LabPorts describes the lab's target ports as LIO has them: path i's target
// port RTPIs[i] has the logical unit mapped for initiator i only (tcm_loop
// makes one dynamic node ACL per nexus).
func LabPorts(rtpis []uint16) []pr.Port {
	ps := make([]pr.Port, len(rtpis))
	for i, r := range rtpis {
		ps[i] = pr.Port{RTPI: r, Protocol: scsi.ProtoSAS, Initiators: []pr.Initiator{pr.SASInitiator(InitiatorAddr(i))}}
	}
	return ps
}

// Nexus is path i's I_T nexus.
func (g *Gen) Nexus(i int) pr.Nexus {
	return pr.Nexus{Initiator: pr.SASInitiator(InitiatorAddr(i)), RTPI: g.rtpis[i]}
}

func (g *Gen) pct(p int) bool { return g.rng.Intn(100) < p }

func (g *Gen) pick(b []byte) byte { return b[g.rng.Intn(len(b))] }

func (g *Gen) poolKey() uint64 { return keyPool[g.rng.Intn(len(keyPool))] }

// ownKey is the key path i is registered with in the shadow, 0 if none.
func (g *Gen) ownKey(i int) uint64 {
	n := g.Nexus(i)
	for _, r := range g.shadow.Registrations {
		if r.Nexus.Equal(n) {
			return r.Key
		}
	}
	return 0
}

// otherKey is a registered key of another nexus (the holder's more often), or
// a pool key when there is none.
func (g *Gen) otherKey(i int) uint64 {
	if res := g.shadow.Reservation; res != nil && g.pct(50) {
		for _, r := range g.shadow.Registrations {
			if r.Nexus.Equal(res.Holder) {
				return r.Key
			}
		}
	}
	regs := g.shadow.Registrations
	if len(regs) > 0 {
		return regs[g.rng.Intn(len(regs))].Key
	}
	return g.poolKey()
}

func (g *Gen) resKey(i int) uint64 {
	switch r := g.rng.Intn(100); {
	case r < 78:
		return g.ownKey(i)
	case r < 86:
		return 0
	default:
		return g.poolKey()
	}
}

func (g *Gen) resType() byte {
	if g.shadow.Reservation != nil && g.pct(45) {
		return g.shadow.Reservation.Type
	}
	if g.pct(88) {
		return g.pick(validTypes)
	}
	return g.pick(badTypes)
}

func (g *Gen) scope() byte {
	if g.pct(94) {
		return 0
	}
	return g.pick([]byte{1, 2, 0x0f})
}

// tid is a TransportID: usually the SAS TransportID of one of the lab's
// initiators, sometimes of an initiator the logical unit does not know, an
// iSCSI or FC one, or a malformed one.
func (g *Gen) tid() []byte {
	switch r := g.rng.Intn(100); {
	case r < 80:
		return SASTransportID(InitiatorAddr(g.rng.Intn(g.n)))
	case r < 86:
		return SASTransportID(InitiatorAddr(4 + g.rng.Intn(3)))
	case r < 91:
		return pr.ISCSIInitiator("iqn.2025-01.example:prgen", "").TransportID()
	case r < 95:
		t := make([]byte, 24) // FC N_Port name
		binary.BigEndian.PutUint64(t[8:16], 0x2100001b32000001)
		return t
	default:
		t := SASTransportID(InitiatorAddr(g.rng.Intn(g.n)))
		return t[:g.rng.Intn(24)]
	}
}

// SASTransportID is the SAS TransportID (SPC-4 §7.6.4.7, protocol 6) of addr.
func SASTransportID(addr uint64) []byte {
	return pr.SASInitiator(addr).TransportID()
}

// basicParam is the 24-byte PR OUT parameter list (SPC-4 §6.16.3) with flags
// in byte 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h) and, with SPEC_I_PT, the
// TransportID list.
func basicParam(rk, sark uint64, flags byte, tids [][]byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	p[20] = flags
	if flags&0x08 != 0 {
		var l []byte
		for _, t := range tids {
			l = append(l, t...)
		}
		p = binary.BigEndian.AppendUint32(p, uint32(len(l)))
		p = append(p, l...)
	}
	return p
}

// moveParam is the REGISTER AND MOVE parameter list (SPC-4 §6.16.4).
func moveParam(rk, sark uint64, unreg bool, rtpi uint16, tid []byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	if unreg {
		p[17] = 0x02
	}
	binary.BigEndian.PutUint16(p[18:20], rtpi)
	binary.BigEndian.PutUint32(p[20:24], uint32(len(tid)))
	return append(p, tid...)
}

// mangleLength sometimes makes the parameter list the wrong length: cut short
// (0, 8, 20, 23 bytes, or the TransportID list cut) or too long (zeros added).
func (g *Gen) mangleLength(p []byte) ([]byte, string) {
	if !g.pct(7) {
		return p, ""
	}
	if g.pct(55) {
		n := []int{0, 8, 20, 23, len(p) - 1, len(p) - 4}[g.rng.Intn(6)]
		if n < 0 || n >= len(p) {
			n = 0
		}
		return p[:n], fmt.Sprintf(" (list cut to %d)", n)
	}
	add := []int{1, 4, 8, 24}[g.rng.Intn(4)]
	return append(p, make([]byte, add)...), fmt.Sprintf(" (list +%d)", add)
}

// Next returns the next command and applies it to the shadow.
func (g *Gen) Next() Step {
	s := g.next()
	r := g.apply(s)
	g.trackMoveScope(s, r)
	return s
}

// trackMoveScope keeps, for MoveNoUnreg, the set of nexuses whose LIO
// registration carries the wrong scope: the source of a successful REGISTER
// AND MOVE with UNREG=0. A registration that goes away, or whose nexus takes a
// reservation with RESERVE or PREEMPT (LIO sets the scope there), is clean
// again.
func (g *Gen) trackMoveScope(s Step, r pr.Result) {
	if g.badScope == nil {
		g.badScope = map[int]bool{}
	}
	if s.CDB[0] == scsi.OpPersistentReserveOut && r.Status == scsi.StatusGood {
		switch s.CDB[1] & 0x1f {
		case scsi.SARegisterAndMove:
			if len(s.Param) >= 24 && s.Param[17]&0x02 == 0 {
				g.badScope[s.Path] = true
			}
		case scsi.SAReserve, scsi.SAPreempt, scsi.SAPreemptAndAbort:
			delete(g.badScope, s.Path)
		}
	}
	for i := range g.badScope {
		if g.ownKey(i) == 0 {
			delete(g.badScope, i)
		}
	}
}

// Reset forgets the shadow's registrations and reservation (the ports stay):
// the caller has cleared the logical unit.
func (g *Gen) Reset() {
	g.shadow = pr.State{Ports: g.shadow.Ports}
	g.badScope = nil
}

func (g *Gen) apply(s Step) pr.Result {
	return pr.Execute(g.prof, &g.shadow, g.Nexus(s.Path), s.CDB[:], s.Param)
}

func (g *Gen) next() Step {
	if g.Ioctl {
		return g.nextIoctl()
	}
	i := g.rng.Intn(g.n)
	if g.pct(30) {
		return g.prIn(i)
	}
	return g.prOut(i)
}

func (g *Gen) prIn(i int) Step {
	sa := byte(g.rng.Intn(4))
	if g.pct(2) {
		sa = g.pick([]byte{4, 5, 0x1f})
	}
	alloc := uint16(fullAlloc)
	if g.pct(18) {
		alloc = oddAllocs[g.rng.Intn(len(oddAllocs))]
	}
	return Step{Path: i, CDB: scsi.PRInCDB(sa, alloc), Desc: fmt.Sprintf("P%d %s alloc %d", i+1, kindOf([]byte{scsi.OpPersistentReserveIn, sa}), alloc)}
}

func (g *Gen) prOut(i int) Step {
	w := g.rng.Intn(100)
	var sa byte
	switch {
	case w < 24:
		sa = scsi.SARegister
	case w < 34:
		sa = scsi.SARegisterAndIgnoreExisting
	case w < 50:
		sa = scsi.SAReserve
	case w < 62:
		sa = scsi.SARelease
	case w < 68:
		sa = scsi.SAClear
	case w < 82:
		sa = scsi.SAPreempt
	case w < 86:
		sa = scsi.SAPreemptAndAbort
	case w < 97:
		sa = scsi.SARegisterAndMove
	default:
		sa = g.pick([]byte{scsi.SAReplaceLostReservation, 9, 0x1f})
	}
	var (
		typ, scope byte
		param      []byte
		note       string
	)
	switch sa {
	case scsi.SARegister, scsi.SARegisterAndIgnoreExisting:
		rk := g.ownKey(i)
		if sa == scsi.SARegisterAndIgnoreExisting || g.pct(12) {
			rk = []uint64{rk, 0, g.poolKey()}[g.rng.Intn(3)]
		}
		var sark uint64
		switch r := g.rng.Intn(100); {
		case r < 62:
			sark = g.poolKey()
		case r < 80:
			sark = 0
		default:
			sark = g.ownKey(i)
		}
		var flags byte
		var tids [][]byte
		if g.pct(10) {
			flags |= 0x01
		}
		if g.pct(15) {
			flags |= 0x04
		}
		if g.pct(18) {
			flags |= 0x08
			for k := g.rng.Intn(3); k >= 0; k-- {
				t := g.tid()
				if !g.DupTIDs && (bytes.Equal(t, SASTransportID(InitiatorAddr(i))) || slices.ContainsFunc(tids, func(u []byte) bool { return bytes.Equal(t, u) })) {
					continue
				}
				tids = append(tids, t)
			}
		}
		param = basicParam(rk, sark, flags, tids)
		if flags&0x08 != 0 && g.pct(10) { // TransportID list length that disagrees with the list
			binary.BigEndian.PutUint32(param[24:28], uint32(len(param)-28+[]int{-4, 4, 24}[g.rng.Intn(3)]))
			note = " (bad TPDL)"
		}
		if g.pct(3) {
			typ = g.pick(validTypes) // a type on REGISTER is ignored
		}
		note += fmt.Sprintf(" rk=%x sark=%x flags=%02x tids=%d", rk, sark, flags, len(tids))
	case scsi.SAReserve, scsi.SARelease:
		typ, scope = g.resType(), g.scope()
		rk := g.resKey(i)
		param = basicParam(rk, 0, 0, nil)
		if g.pct(3) {
			binary.BigEndian.PutUint64(param[8:16], g.poolKey()) // SARK ignored
		}
		if g.pct(3) {
			param[20] = g.pick([]byte{0x01, 0x04, 0x08}) // flags: APTPL ignored, others invalid
		}
		note = fmt.Sprintf(" type %d scope %d rk=%x", typ, scope, rk)
	case scsi.SAClear:
		rk := g.resKey(i)
		param = basicParam(rk, 0, 0, nil)
		note = fmt.Sprintf(" rk=%x", rk)
	case scsi.SAPreempt, scsi.SAPreemptAndAbort:
		typ, scope = g.resType(), g.scope()
		rk := g.resKey(i)
		var sark uint64
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
		param = basicParam(rk, sark, 0, nil)
		note = fmt.Sprintf(" type %d scope %d rk=%x sark=%x", typ, scope, rk, sark)
	case scsi.SARegisterAndMove:
		typ, scope = g.resType(), g.scope()
		rk := g.resKey(i)
		sark := g.poolKey()
		if g.pct(8) {
			sark = 0
		}
		j := g.rng.Intn(g.n)
		rtpi := g.rtpis[j]
		if g.pct(15) {
			rtpi = g.rtpis[g.rng.Intn(g.n)]
		}
		if g.pct(5) {
			rtpi = []uint16{0, 9, 0xff}[g.rng.Intn(3)]
		}
		tid := SASTransportID(InitiatorAddr(j))
		if g.pct(15) {
			tid = g.tid()
		}
		unreg := g.pct(30)
		if g.badScope[j] && !g.MoveNoUnreg && bytes.Equal(tid, SASTransportID(InitiatorAddr(j))) && rtpi == g.rtpis[j] {
			// Known LIO bug (see MoveNoUnreg): the destination's registration
			// has a wrong scope in LIO; send it to no port instead (05/26/00).
			rtpi = 0
			note = " (destination left out: LIO corrupted its scope)"
		}
		param = moveParam(rk, sark, unreg, rtpi, tid)
		note = fmt.Sprintf(" type %d rk=%x sark=%x unreg=%v rtpi=%d tid=P%d", typ, rk, sark, unreg, rtpi, j+1) + note
	default:
		typ = g.pick(validTypes)
		param = basicParam(g.resKey(i), 0, 0, nil)
	}
	param, ln := g.mangleLength(param)
	if len(param) == 0 && !g.ZeroLenWE && g.zeroLenWEQuirk(i) {
		param, ln = basicParam(0, 0, 0, nil)[:8], " (list cut to 8: zero-length LIO quirk left out)"
	}
	st := Step{Path: i, CDB: scsi.PROutCDB(sa, scope, typ, uint32(len(param))), Param: param}
	st.Desc = fmt.Sprintf("P%d %s%s%s", i+1, kindOf(st.CDB[:]), note, ln)
	if sa == scsi.SAPreempt || sa == scsi.SAPreemptAndAbort {
		// PREEMPT AND ABORT that succeeds makes LIO abort the preempted
		// nexuses' tasks, which can hang the command over tcm_loop (lab README).
		// Only the ones the engine (LIO profile) predicts to fail are sent; the
		// others go as PREEMPT. The shadow is a copy: the prediction changes nothing.
		if sa == scsi.SAPreemptAndAbort && g.predict(i, st) == scsi.StatusGood {
			st.CDB[1] = st.CDB[1]&^0x1f | scsi.SAPreempt
			note += " (PREEMPT AND ABORT LIO would execute: sent as PREEMPT)"
		}
		st.Desc = fmt.Sprintf("P%d %s%s%s", i+1, kindOf(st.CDB[:]), note, ln)
	}
	return st
}

// zeroLenWEQuirk reports whether a PR OUT without parameter list from path i
// meets LIO's data-direction quirk (see ZeroLenWE): a Write Exclusive family
// reservation (types 1, 5, 7) held by someone else and path i unregistered.
func (g *Gen) zeroLenWEQuirk(i int) bool {
	res := g.shadow.Reservation
	if res == nil || (res.Type != scsi.TypeWriteExclusive && res.Type != scsi.TypeWriteExclusiveRegOnly && res.Type != scsi.TypeWriteExclusiveAllRegs) {
		return false
	}
	me := g.Nexus(i)
	return !res.Holder.Equal(me) && g.ownKey(i) == 0
}

// predict is the status the shadow engine gives st from path i, without
// changing the shadow.
func (g *Gen) predict(i int, st Step) byte {
	return predict(g.prof, &g.shadow, g.Nexus(i), st)
}

// predict is the status the engine gives st from nexus n on a copy of state.
func predict(p pr.Profile, state *pr.State, n pr.Nexus, st Step) byte {
	b, err := state.MarshalBinary()
	if err != nil {
		return scsi.StatusCheckCondition
	}
	var sh pr.State
	if err := sh.UnmarshalBinary(b); err != nil {
		return scsi.StatusCheckCondition
	}
	return pr.Execute(p, &sh, n, st.CDB[:], st.Param).Status
}

// Generate returns the first n steps for seed over len(rtpis) initiators.
func Generate(seed int64, rtpis []uint16, n int) ([]Step, error) {
	g, err := NewGen(seed, rtpis)
	if err != nil {
		return nil, err
	}
	s := make([]Step, n)
	for k := range s {
		s[k] = g.Next()
	}
	return s, nil
}
