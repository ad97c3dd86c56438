package fence

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

var (
	vmA = pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2025-01.dev.prhelper:vm:aaaaaaaa-0000-0000-0000-000000000001", ""), RTPI: 1}
	vmB = pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2025-01.dev.prhelper:vm:bbbbbbbb-0000-0000-0000-000000000002", ""), RTPI: 1}
	vmC = pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.2025-01.dev.prhelper:vm:cccccccc-0000-0000-0000-000000000003", ""), RTPI: 1}
	sas = pr.Nexus{Initiator: pr.SASInitiator(0x5001405b00000001), RTPI: 1}
)

// prOut is one PR OUT command for the engine.
type prOut struct {
	n         pr.Nexus
	sa, typ   byte
	rk, sark  uint64
	unreg     bool
	moveTo    *pr.Nexus // REGISTER AND MOVE destination
	wantGood  bool      // the step must be GOOD (checked, so the scenario means what it says)
	wantFence []pr.Nexus
}

func (c prOut) cdbParam() ([scsi.CDBLen]byte, []byte) {
	if c.sa == scsi.SARegisterAndMove {
		tid := []byte{0x05} // iSCSI, format 00b
		tid = append(tid, 0, 0, 0)
		tid = append(tid, []byte(c.moveTo.Initiator.Name)...)
		tid = append(tid, 0)
		for len(tid)%4 != 0 {
			tid = append(tid, 0)
		}
		binary.BigEndian.PutUint16(tid[2:4], uint16(len(tid)-4))
		p := make([]byte, 24, 24+len(tid))
		binary.BigEndian.PutUint64(p[0:], c.rk)
		binary.BigEndian.PutUint64(p[8:], c.sark)
		if c.unreg {
			p[17] = 0x02
		}
		binary.BigEndian.PutUint16(p[18:], c.moveTo.RTPI)
		binary.BigEndian.PutUint32(p[20:], uint32(len(tid)))
		p = append(p, tid...)
		return scsi.PROutCDB(c.sa, 0, c.typ, uint32(len(p))), p
	}
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], c.rk)
	binary.BigEndian.PutUint64(p[8:], c.sark)
	return scsi.PROutCDB(c.sa, 0, c.typ, 24), p
}

// apply runs c on st through the engine and returns the nexuses Evicted names.
func apply(p pr.Profile, st *pr.State, c prOut) (pr.Result, []pr.Nexus) {
	before := st.Clone()
	cdb, param := c.cdbParam()
	res := pr.Execute(p, st, c.n, cdb[:], param)
	return res, Evicted(p, &before, st, c.n)
}

func reg(n pr.Nexus, key uint64) prOut {
	return prOut{n: n, sa: scsi.SARegister, sark: key, wantGood: true}
}

func reserve(n pr.Nexus, key uint64, typ byte) prOut {
	return prOut{n: n, sa: scsi.SAReserve, typ: typ, rk: key, wantGood: true}
}

// TestWhoIsFenced is the table of docs/fencing.md, "Who is fenced", run on the
// engine: every row sets up registrations and a reservation with real commands,
// then one initiator's command evicts (or does not evict) the others.
func TestWhoIsFenced(t *testing.T) {
	const ka, kb, kc = 0xa, 0xb, 0xc
	types := []byte{scsi.TypeWriteExclusive, scsi.TypeExclusiveAccess, scsi.TypeWriteExclusiveRegOnly,
		scsi.TypeExclusiveAccessRegOnly, scsi.TypeWriteExclusiveAllRegs, scsi.TypeExclusiveAccessAllRegs}
	type scenario struct {
		name  string
		steps []prOut
	}
	var cases []scenario
	for _, typ := range types {
		ar := typ == scsi.TypeWriteExclusiveAllRegs || typ == scsi.TypeExclusiveAccessAllRegs
		// B preempts the holder A: A's registration goes, B holds a reservation
		// of the same type, A may not write any more: fenced, under every type.
		preemptHolder := prOut{n: vmB, sa: scsi.SAPreempt, typ: typ, rk: kb, sark: ka, wantGood: true, wantFence: []pr.Nexus{vmA}}
		if ar {
			// Under all-registrants types the reservation has no single
			// holder: SARK 0 removes every other registrant.
			preemptHolder.sark = 0
			preemptHolder.wantFence = []pr.Nexus{vmA, vmC}
		}
		cases = append(cases, scenario{fmt.Sprintf("PREEMPT holder, type %d", typ), []prOut{
			reg(vmA, ka), reg(vmB, kb), reg(vmC, kc), reserve(vmA, ka, typ), preemptHolder}})
		abort := preemptHolder
		abort.sa = scsi.SAPreemptAndAbort
		cases = append(cases, scenario{fmt.Sprintf("PREEMPT AND ABORT holder, type %d", typ), []prOut{
			reg(vmA, ka), reg(vmB, kb), reg(vmC, kc), reserve(vmA, ka, typ), abort}})
		if !ar {
			// The holder A removes the non-holder C's registration. Under
			// WE and EA C could not write before either (a registered
			// non-holder is refused there): still fenced, it is evicted.
			cases = append(cases, scenario{fmt.Sprintf("holder PREEMPTs a registrant, type %d", typ), []prOut{
				reg(vmA, ka), reg(vmB, kb), reg(vmC, kc), reserve(vmA, ka, typ),
				{n: vmA, sa: scsi.SAPreempt, typ: typ, rk: ka, sark: kc, wantGood: true, wantFence: []pr.Nexus{vmC}}}})
		}
		// CLEAR removes every registration and the reservation: anyone may
		// write afterwards, as on real storage: nobody is fenced.
		cases = append(cases, scenario{fmt.Sprintf("CLEAR, type %d", typ), []prOut{
			reg(vmA, ka), reg(vmB, kb), reserve(vmA, ka, typ),
			{n: vmB, sa: scsi.SAClear, rk: kb, wantGood: true}}})
	}
	cases = append(cases,
		scenario{"PREEMPT without a reservation", []prOut{
			reg(vmA, ka), reg(vmB, kb),
			{n: vmB, sa: scsi.SAPreempt, typ: scsi.TypeWriteExclusive, rk: kb, sark: ka, wantGood: true}}},
		scenario{"PREEMPT of a key shared by two initiators", []prOut{
			reg(vmA, ka), reg(vmB, kb), reg(vmC, ka), reserve(vmB, kb, scsi.TypeWriteExclusiveRegOnly),
			{n: vmB, sa: scsi.SAPreempt, typ: scsi.TypeWriteExclusiveRegOnly, rk: kb, sark: ka, wantGood: true, wantFence: []pr.Nexus{vmA, vmC}}}},
		scenario{"REGISTER AND MOVE with UNREG fences nobody", []prOut{
			reg(vmA, ka), reserve(vmA, ka, scsi.TypeWriteExclusiveRegOnly),
			{n: vmA, sa: scsi.SARegisterAndMove, rk: ka, sark: kb, unreg: true, moveTo: &vmB, wantGood: true}}},
		scenario{"unregistering oneself fences nobody", []prOut{
			reg(vmA, ka), reserve(vmA, ka, scsi.TypeWriteExclusive), reg(vmB, kb),
			{n: vmB, sa: scsi.SARegister, rk: kb, sark: 0, wantGood: true}}},
		scenario{"a refused PREEMPT fences nobody", []prOut{
			reg(vmA, ka), reserve(vmA, ka, scsi.TypeWriteExclusive),
			{n: vmB, sa: scsi.SAPreempt, typ: scsi.TypeWriteExclusive, rk: kb, sark: ka}}},
		scenario{"SAS initiator preempted", []prOut{
			reg(sas, ka), reserve(sas, ka, scsi.TypeExclusiveAccess), reg(vmB, kb),
			{n: vmB, sa: scsi.SAPreempt, typ: scsi.TypeExclusiveAccess, rk: kb, sark: ka, wantGood: true, wantFence: []pr.Nexus{sas}}}},
	)
	for _, p := range []pr.Profile{pr.LIO(), pr.SPC4()} {
		for _, sc := range cases {
			t.Run(p.Name+"/"+sc.name, func(t *testing.T) {
				st := &pr.State{}
				for i, c := range sc.steps {
					res, got := apply(p, st, c)
					if c.wantGood && res.Status != scsi.StatusGood {
						t.Fatalf("step %d: %s %v, want GOOD", i, scsi.StatusName(res.Status), res.Sense)
					}
					if !sameNexuses(got, c.wantFence) {
						t.Fatalf("step %d: fenced %v, want %v", i, got, c.wantFence)
					}
				}
			})
		}
	}
}

func sameNexuses(a, b []pr.Nexus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].Equal(b[i]) {
			return false
		}
	}
	return true
}

func TestInitiatorName(t *testing.T) {
	if got := InitiatorName(sas.Initiator); got != "naa.5001405b00000001" {
		t.Errorf("SAS: %s", got)
	}
	if got := InitiatorName(vmA.Initiator); got != vmA.Initiator.Name {
		t.Errorf("iSCSI: %s", got)
	}
}

// FuzzEvicted drives the engine with PR OUT commands of three initiators and
// checks Evicted against the rule of docs/fencing.md written independently of
// the access table: a nexus is fenced exactly when another initiator's GOOD
// command removed its registration and a persistent reservation exists after it
// (an unregistered nexus may write only while no reservation exists, under
// every type: SPC-4's table of access by type).
func FuzzEvicted(f *testing.F) {
	f.Add([]byte{0, 0, 1, 0, 1, 2, 0, 0, 2, 1, 3, 1, 0, 4, 4, 1, 3, 1})
	f.Add([]byte{0, 0, 1, 1, 0, 2, 2, 0, 3, 0, 1, 5, 0, 1, 1, 3, 2, 4, 7, 1, 0})
	f.Add([]byte{0, 0, 1, 1, 0, 2, 0, 1, 7, 1, 4, 8, 1, 0, 3, 1, 1, 0})
	nexuses := []pr.Nexus{vmA, vmB, vmC}
	keys := []uint64{0, 1, 2, 3}
	sas := []byte{scsi.SARegister, scsi.SAReserve, scsi.SARelease, scsi.SAClear, scsi.SAPreempt,
		scsi.SAPreemptAndAbort, scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndMove}
	types := []byte{0, 1, 3, 5, 6, 7, 8}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range []pr.Profile{pr.LIO(), pr.SPC4()} {
			st := &pr.State{}
			for i := 0; i+5 < len(b) && i < 6*40; i += 6 {
				c := prOut{
					n:     nexuses[int(b[i])%3],
					sa:    sas[int(b[i+1])%len(sas)],
					typ:   types[int(b[i+2])%len(types)],
					rk:    keys[int(b[i+3])%4],
					sark:  keys[int(b[i+4])%4],
					unreg: b[i+5]&1 != 0,
				}
				to := nexuses[int(b[i+5]>>1)%3]
				c.moveTo = &to
				before := st.Clone()
				res, got := apply(p, st, c)
				var want []pr.Nexus
				if res.Status == scsi.StatusGood && st.Reservation != nil {
					for _, r := range before.Registrations {
						if !r.Nexus.Initiator.SameNode(c.n.Initiator) && !registered(st, r.Nexus) {
							want = append(want, r.Nexus)
						}
					}
				}
				if !sameNexuses(got, want) {
					t.Fatalf("%s: %s %+v on %+v: fenced %v, want %v", p.Name, scsi.StatusName(res.Status), c, before, got, want)
				}
				for _, n := range got {
					if MayWrite(p, st, n) {
						t.Fatalf("fenced %v may still write", n)
					}
				}
			}
		}
	})
}

func compact(b []byte) string {
	var out bytes.Buffer
	if json.Compact(&out, b) != nil {
		return string(b)
	}
	return out.String()
}

// FuzzDecode: any stored value decodes without panic, and what decodes
// re-encodes to a value that decodes to the same.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"generation":3}`))
	f.Add([]byte(`{"fence":1,"pending":[{"id":"a/1/x","victim":"x","evictor":"y","created":1,"done":["a"]}],"state":{"v":1}}`))
	f.Add([]byte(`{"fence":2}`))
	f.Add([]byte(`{"fence":1,"pending":[],"state":null}`))
	f.Add([]byte(`{"fence":2,"pending":[{"id":"a/1/x","victim":"x","evictor":"y","created":1}],"bin":"AgAAAAAA"}`))
	f.Add([]byte{2, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, v []byte) {
		st, recs, err := Decode(v)
		if err != nil {
			return
		}
		b, err := Encode(st, recs)
		if err != nil {
			t.Fatal(err)
		}
		st2, recs2, err := Decode(b)
		if err != nil || len(recs2) != len(recs) || (len(recs) > 0 && compact(st2) != compact(st)) {
			t.Fatalf("round trip of %q: %q %v, %d records, %v", v, st2, recs2, len(recs), err)
		}
	})
}

// TestEnvelopeStates: records kept with a binary state (pr's version 2) and with a
// JSON one (version 1, written by earlier helpers) both come back byte for byte; a
// binary state goes into a version 2 envelope, which an unknown version is not.
func TestEnvelopeStates(t *testing.T) {
	st := pr.State{Generation: 3, Registrations: []pr.Registration{{Nexus: pr.Nexus{Initiator: pr.ISCSIInitiator("iqn.a", ""), RTPI: 1}, Key: 9}}}
	bin, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	recs := []Record{{ID: "h/1/iqn.b", Victim: "iqn.b", Evictor: "iqn.a", Created: 1}}
	for name, tc := range map[string]struct {
		state   []byte
		version string
	}{
		"binary": {bin, `"fence":2`},
		"JSON":   {[]byte(`{"v":1,"generation":3}`), `"fence":1`},
		"none":   {nil, `"fence":1`},
	} {
		v, err := Encode(tc.state, recs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Contains(v, []byte(tc.version)) {
			t.Fatalf("%s: envelope %s, want %s", name, v, tc.version)
		}
		got, gotRecs, err := Decode(v)
		if err != nil || !bytes.Equal(got, tc.state) || len(gotRecs) != 1 || gotRecs[0].ID != recs[0].ID {
			t.Fatalf("%s: Decode(%s) = %x, %v, %v", name, v, got, gotRecs, err)
		}
	}
	if got, recs, err := Decode(bin); err != nil || !bytes.Equal(got, bin) || recs != nil {
		t.Fatalf("a bare binary state: %x %v %v", got, recs, err)
	}
	if _, _, err := Decode([]byte(`{"fence":3,"pending":[]}`)); !errors.Is(err, pr.ErrState) {
		t.Fatalf("envelope version 3: %v, want ErrState", err)
	}
}
