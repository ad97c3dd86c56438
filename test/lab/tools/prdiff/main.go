// Command prdiff is the lab's differential test of two PR helpers: it sends one
// scripted sequence of PERSISTENT RESERVE IN/OUT commands to a reference helper
// (qemu-pr-helper) and to the helper under test (prhelper), each driving its own
// LU, and requires every reply to be byte-identical: status, data size, all 96
// sense bytes and the data.
//
// Usage:
//
//	prdiff [-expect NAME|FILE] -ref SOCK -ref-dev DEV_A,DEV_B -test SOCK -test-dev DEV_A,DEV_B
//
// The two LUs must be identical and fresh (same LIO backstore settings, same
// initiator port names on their two I_T nexuses A and B), so that LIO answers
// both the same way; with one vCPU LIO is deterministic (lab README). Command i
// goes to the reference first, then to the helper under test. Each step also
// carries the status (and sense code) the script expects, checked against the
// reference, so a script that stopped exercising what it claims is noticed.
//
// One documented exception: qemu-pr-helper answers PR OUT on a read-only fd
// from an uninitialized response buffer (docs/pr-helper-protocol.md §4.10, §4.13 item 7), so for
// those steps only sense bytes 0-17 are compared, and the helper under test must
// send zeros in bytes 18-95.
//
// With -expect NAME|FILE the helper under test may differ from the reference
// at the steps an expectation set lists (format: parseExpect; built in:
// "linuxpr", the <linux/pr.h> backend against the SG_IO one, linuxpr.expect):
// there its reply must be exactly the documented one and must differ from the
// reference's, so a difference that goes away is noticed too. Every other step
// must still be byte-identical.
//
// Exit status: 0 when every reply matched (or differed exactly as documented)
// and met the expectation, 1 otherwise.
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

const (
	pathA = 0
	pathB = 1
)

// step is one command of the script.
type step struct {
	desc  string
	path  int  // pathA or pathB
	ro    bool // send a read-only fd
	cdb   [wire.CDBSize]byte
	param []byte
	want  byte        // expected status
	sense *scsi.Sense // expected sense code when want is CHECK CONDITION
}

// Keys used by the script.
const (
	keyA = 0xaaaa0000000000a1
	keyB = 0xbbbb0000000000b2
	keyC = 0xcccc0000000000c3
)

// sasTID is a SAS TransportID (SPC-4 §7.6.4.7, protocol identifier 6) for the
// tcm_loop initiator port naa.5001405b0000000N: tcm_loop naa. ports are SAS.
func sasTID(n int) []byte {
	t := make([]byte, 24)
	t[0] = 0x06
	binary.BigEndian.PutUint64(t[4:12], 0x5001405b00000000|uint64(n))
	return t
}

// regParam builds the 24-byte basic PR OUT parameter list (SPC-4 §6.16.3) with
// flags in byte 20 (SPEC_I_PT 08h, ALL_TG_PT 04h, APTPL 01h) and, when tids is
// not empty, the TransportID list after it.
func regParam(rk, sark uint64, flags byte, tids ...[]byte) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	p[20] = flags
	if len(tids) > 0 {
		var l []byte
		for _, t := range tids {
			l = append(l, t...)
		}
		p = binary.BigEndian.AppendUint32(p, uint32(len(l)))
		p = append(p, l...)
	}
	return p
}

// moveParam builds the REGISTER AND MOVE parameter list (SPC-4 §6.16.4).
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

func in(path int, sa byte, alloc uint16, desc string, want byte, sense *scsi.Sense) step {
	return step{desc: desc, path: path, cdb: scsi.PRInCDB(sa, alloc), want: want, sense: sense}
}

func out(path int, sa, typ byte, param []byte, desc string, want byte, sense *scsi.Sense) step {
	return step{desc: desc, path: path, cdb: scsi.PROutCDB(sa, 0, typ, uint32(len(param))), param: param, want: want, sense: sense}
}

func sense(key, asc, ascq byte) *scsi.Sense { return &scsi.Sense{Key: key, ASC: asc, ASCQ: ascq} }

const (
	good     = scsi.StatusGood
	check    = scsi.StatusCheckCondition
	conflict = scsi.StatusReservationConflict
)

var (
	uaPreempted = sense(6, 0x2a, 0x05)
	uaReleased  = sense(6, 0x2a, 0x04)
	uaCleared   = sense(6, 0x2a, 0x03)
	invField    = sense(5, 0x24, 0x00)
	invParamLen = sense(5, 0x1a, 0x00)
	invParam    = sense(5, 0x26, 0x00)
	invOpcode   = sense(5, 0x20, 0x00)
)

// script is the command sequence. Expectations are LIO 6.1's answers as the lab
// documents them (e.g. RELEASE with the wrong type gives RESERVATION CONFLICT).
func script() []step {
	const full = 8192
	s := []step{
		in(pathA, scsi.SAReadKeys, full, "A READ KEYS (empty)", good, nil),
		in(pathA, scsi.SAReportCapabilities, full, "A REPORT CAPABILITIES", good, nil),
		in(pathB, scsi.SAReadReservation, full, "B READ RESERVATION (none)", good, nil),
		in(pathA, scsi.SAReadFullStatus, full, "A READ FULL STATUS (empty)", good, nil),
		out(pathA, scsi.SARegister, 0, regParam(0, keyA, 0), "A REGISTER keyA", good, nil),
		out(pathA, scsi.SARegister, 0, regParam(0, keyA, 0), "A REGISTER again with rk=0 -> conflict", conflict, nil),
		out(pathB, scsi.SARegister, 0, regParam(0x1234, keyB, 0), "B REGISTER unregistered with rk!=0 -> conflict", conflict, nil),
		out(pathB, scsi.SARegister, 0, regParam(0, keyB, 0), "B REGISTER keyB", good, nil),
		in(pathA, scsi.SAReadKeys, full, "A READ KEYS (2 keys)", good, nil),
		in(pathA, scsi.SAReadKeys, 0, "A READ KEYS alloc 0 (LIO: < 8 is invalid)", check, invField),
		in(pathA, scsi.SAReadKeys, 4, "A READ KEYS alloc 4", check, invField),
		in(pathA, scsi.SAReadKeys, 8, "A READ KEYS alloc 8", good, nil),
		in(pathA, scsi.SAReadKeys, 12, "A READ KEYS alloc 12", good, nil),
		in(pathB, scsi.SAReadFullStatus, full, "B READ FULL STATUS", good, nil),
		in(pathB, scsi.SAReadFullStatus, 30, "B READ FULL STATUS alloc 30", good, nil),
		in(pathB, scsi.SAReportCapabilities, 4, "B REPORT CAPABILITIES alloc 4", check, invField),
		out(pathA, scsi.SAReserve, 9, regParam(keyA, 0, 0), "A RESERVE bad type 9", check, invField),
		{desc: "A RESERVE bad scope 1 (LIO: 26h)", path: pathA, cdb: scsi.PROutCDB(scsi.SAReserve, 1, 1, 24), param: regParam(keyA, 0, 0), want: check, sense: invParam},
		out(pathA, scsi.SAReserve, 1, regParam(keyB, 0, 0), "A RESERVE with B's key -> conflict", conflict, nil),
		out(pathA, scsi.SAReserve, 1, regParam(keyA, 0, 0), "A RESERVE type 1 (WE)", good, nil),
		out(pathA, scsi.SAReserve, 1, regParam(keyA, 0, 0), "A RESERVE type 1 again (no-op)", good, nil),
		out(pathB, scsi.SAReserve, 1, regParam(keyB, 0, 0), "B RESERVE while A holds -> conflict", conflict, nil),
		in(pathB, scsi.SAReadReservation, full, "B READ RESERVATION (A holds)", good, nil),
		in(pathB, scsi.SAReadReservation, 8, "B READ RESERVATION alloc 8", good, nil),
		out(pathA, scsi.SARelease, 3, regParam(keyA, 0, 0), "A RELEASE wrong type 3 (LIO: conflict)", conflict, nil),
		out(pathA, scsi.SARegister, 0, regParam(keyA, keyA, 0)[:20], "A REGISTER param list 20 bytes", check, invParamLen),
		out(pathB, scsi.SAReserve, 1, nil, "B RESERVE param list 0 bytes, unregistered", conflict, nil),
		out(pathA, scsi.SAReserve, 1, nil, "A RESERVE param list 0 bytes", check, invParamLen),
		out(pathA, scsi.SARegister, 0, append(regParam(keyA, keyA, 0), 0, 0, 0, 0, 0, 0, 0, 0), "A REGISTER param list 32 bytes", check, invParamLen),
		{desc: "A REGISTER on a read-only fd", path: pathA, ro: true, cdb: scsi.PROutCDB(scsi.SARegister, 0, 0, 24), param: regParam(keyA, keyC, 0), want: check, sense: invOpcode},
		{desc: "A READ KEYS on a read-only fd", path: pathA, ro: true, cdb: scsi.PRInCDB(scsi.SAReadKeys, full), want: good},
		out(pathB, scsi.SAPreempt, 3, regParam(keyB, keyA, 0), "B PREEMPT A, type 3 (EA)", good, nil),
		in(pathA, scsi.SAReadKeys, full, "A READ KEYS -> UA registrations preempted", check, uaPreempted),
		in(pathA, scsi.SAReadKeys, full, "A READ KEYS (only keyB)", good, nil),
		out(pathA, scsi.SARegisterAndIgnoreExisting, 0, regParam(0, keyA, 0), "A REGISTER AND IGNORE keyA", good, nil),
		out(pathB, scsi.SARelease, 3, regParam(keyB, 0, 0), "B RELEASE type 3", good, nil),
		out(pathB, scsi.SAReserve, 5, regParam(keyB, 0, 0), "B RESERVE type 5 (WE registrants only)", good, nil),
		out(pathB, scsi.SARelease, 5, regParam(keyB, 0, 0), "B RELEASE type 5", good, nil),
		in(pathA, scsi.SAReadReservation, full, "A READ RESERVATION -> UA reservations released", check, uaReleased),
		out(pathB, scsi.SAPreempt, 1, regParam(keyB, 0, 0), "B PREEMPT with sark 0, no reservation", check, invParam),
		out(pathB, scsi.SAClear, 0, regParam(keyB, 0, 0), "B CLEAR", good, nil),
		in(pathA, scsi.SAReadKeys, full, "A READ KEYS -> UA reservations preempted (cleared)", check, uaCleared),
		out(pathA, scsi.SARegister, 0, regParam(0, keyA, 0x08, sasTID(2)), "A REGISTER SPEC_I_PT for initiator 2", good, nil),
		in(pathB, scsi.SAReadKeys, full, "B READ KEYS (A and B hold keyA)", good, nil),
		in(pathA, scsi.SAReadFullStatus, full, "A READ FULL STATUS", good, nil),
		out(pathA, scsi.SAClear, 0, regParam(keyA, 0, 0), "A CLEAR", good, nil),
		in(pathB, scsi.SAReadKeys, full, "B READ KEYS -> UA", check, uaCleared),
		out(pathA, scsi.SARegister, 0, regParam(0, keyA, 0), "A REGISTER keyA", good, nil),
		out(pathA, scsi.SAReserve, 1, regParam(keyA, 0, 0), "A RESERVE type 1", good, nil),
		out(pathA, scsi.SARegisterAndMove, 1, moveParam(keyA, keyC, false, 2, sasTID(2)), "A REGISTER AND MOVE to initiator 2 via port 2, keyC", good, nil),
		in(pathB, scsi.SAReadReservation, full, "B READ RESERVATION (B holds, keyC)", good, nil),
		in(pathA, scsi.SAReadFullStatus, full, "A READ FULL STATUS after move", good, nil),
		out(pathA, scsi.SAPreempt, 1, regParam(keyA, keyC, 0), "A PREEMPT B (keyC), type 1", good, nil),
		in(pathB, scsi.SAReadKeys, full, "B READ KEYS -> UA", check, uaPreempted),
		out(pathA, scsi.SARelease, 1, regParam(keyA, 0, 0), "A RELEASE type 1", good, nil),
		out(pathA, scsi.SARegisterAndIgnoreExisting, 0, regParam(0, keyA, 0x01), "A REGISTER AND IGNORE keyA, APTPL", good, nil),
		in(pathA, scsi.SAReportCapabilities, full, "A REPORT CAPABILITIES (APTPL active)", good, nil),
		in(pathA, 0x1f, full, "A PR IN bad service action 1Fh", check, invField),
		out(pathA, 0x1f, 0, regParam(keyA, 0, 0), "A PR OUT bad service action 1Fh", check, invField),
		out(pathA, scsi.SAReplaceLostReservation, 1, regParam(keyA, 0, 0), "A REPLACE LOST RESERVATION", check, invField),
		out(pathA, scsi.SAClear, 0, regParam(keyA, 0, 0), "A CLEAR", good, nil),
		out(pathB, scsi.SARegister, 0, regParam(0, keyB, 0x04), "B REGISTER ALL_TG_PT keyB", good, nil),
		in(pathA, scsi.SAReadFullStatus, full, "A READ FULL STATUS (ALL_TG_PT registration)", good, nil),
		{desc: "B REGISTER, parameter list length 10018h (QEMU frames 18h)", path: pathB, cdb: scsi.PROutCDB(scsi.SARegister, 0, 0, 0x10018), param: regParam(keyB, 0, 0), want: check, sense: invField},
		out(pathB, scsi.SARegister, 0, regParam(keyB, 0, 0), "B unregister without ALL_TG_PT (LIO: 24h)", check, invField),
		out(pathB, scsi.SARegister, 0, regParam(keyB, 0, 0x04), "B unregister with ALL_TG_PT", good, nil),
		in(pathB, scsi.SAReadKeys, full, "B READ KEYS (empty)", good, nil),
		in(pathA, scsi.SAReadFullStatus, full, "A READ FULL STATUS (empty)", good, nil),
	}
	return s
}

// side is one helper with the two paths to its LU.
type side struct {
	name string
	cl   *client.Client
	rw   [2]*os.File
	ro   [2]*os.File
}

func openSide(name, sock, devs string) (*side, error) {
	d := strings.Split(devs, ",")
	if len(d) != 2 {
		return nil, fmt.Errorf("%s: want two devices DEV_A,DEV_B, got %q", name, devs)
	}
	s := &side{name: name, cl: client.New(sock, client.WithReconnect(1, 0))}
	for i, p := range d {
		var err error
		if s.rw[i], err = os.OpenFile(p, os.O_RDWR, 0); err != nil {
			return nil, fmt.Errorf("%s: open %s: %w", name, p, err)
		}
		if s.ro[i], err = os.OpenFile(p, os.O_RDONLY, 0); err != nil {
			return nil, fmt.Errorf("%s: open %s read-only: %w", name, p, err)
		}
	}
	return s, nil
}

func (s *side) do(st step, timeout time.Duration) (*wire.Reply, error) {
	f := s.rw[st.path]
	if st.ro {
		f = s.ro[st.path]
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.cl.Do(ctx, st.cdb, int(f.Fd()), st.param)
}

func dump(w io.Writer, name string, r *wire.Reply) {
	fmt.Fprintf(w, "    %s: status 0x%02x size %d\n", name, r.Status, len(r.Data))
	fmt.Fprintf(w, "    %s sense: % x\n", name, r.Sense[:])
	if len(r.Data) > 0 {
		fmt.Fprintf(w, "    %s data: % x\n", name, r.Data)
	}
}

func summary(r *wire.Reply) string {
	s := fmt.Sprintf("%s size=%d", scsi.StatusName(r.Status), len(r.Data))
	if r.Status == scsi.StatusCheckCondition {
		if sn, ok := scsi.ParseSense(r.Sense[:]); ok {
			s += " sense=" + sn.String()
		}
	}
	return s
}

// compare returns "" when the replies count as identical for st.
func compare(st step, ref, test *wire.Reply) string {
	if ref.Status != test.Status {
		return "status differs"
	}
	if len(ref.Data) != len(test.Data) {
		return "data size differs"
	}
	if string(ref.Data) != string(test.Data) {
		return "data differs"
	}
	if ref.Sense == test.Sense {
		return ""
	}
	if st.ro && st.cdb[0] == scsi.OpPersistentReserveOut {
		if string(ref.Sense[:scsi.FixedSenseLen]) != string(test.Sense[:scsi.FixedSenseLen]) {
			return "sense bytes 0-17 differ"
		}
		for _, b := range test.Sense[scsi.FixedSenseLen:] {
			if b != 0 {
				return "sense bytes 18-95 of the helper under test are not zero"
			}
		}
		return ""
	}
	return "sense differs"
}

func expectation(st step, r *wire.Reply) string {
	if r.Status != st.want {
		return fmt.Sprintf("expected %s, reference gave %s", scsi.StatusName(st.want), summary(r))
	}
	if st.sense != nil {
		sn, ok := scsi.ParseSense(r.Sense[:])
		if !ok || sn != *st.sense {
			return fmt.Sprintf("expected sense %s, reference gave %s", st.sense, summary(r))
		}
	}
	return ""
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("prdiff", flag.ContinueOnError)
	refSock := fs.String("ref", "", "reference helper socket (qemu-pr-helper)")
	refDev := fs.String("ref-dev", "", "reference LU: DEV_A,DEV_B (two I_T nexuses)")
	testSock := fs.String("test", "", "socket of the helper under test (prhelper)")
	testDev := fs.String("test-dev", "", "LU of the helper under test: DEV_A,DEV_B")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit for each request")
	expectName := fs.String("expect", "", "documented differences of the helper under test: \"linuxpr\" or a file")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *refSock == "" || *testSock == "" || *refDev == "" || *testDev == "" {
		fmt.Fprintln(os.Stderr, "usage: prdiff [-expect NAME|FILE] -ref SOCK -ref-dev DEV_A,DEV_B -test SOCK -test-dev DEV_A,DEV_B")
		return 1
	}
	steps := script()
	exp, err := loadExpect(*expectName, steps)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prdiff: %v\n", err)
		return 1
	}
	ref, err := openSide("ref", *refSock, *refDev)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prdiff: %v\n", err)
		return 1
	}
	test, err := openSide("test", *testSock, *testDev)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prdiff: %v\n", err)
		return 1
	}
	same, documented, bad := 0, 0, 0
	for i, st := range steps {
		p := "A"
		if st.path == pathB {
			p = "B"
		}
		rr, rerr := ref.do(st, *timeout)
		tr, terr := test.do(st, *timeout)
		if rerr != nil || terr != nil {
			bad++
			fmt.Fprintf(w, "step %2d [%s] %-55s MISMATCH: ref error %v, test error %v\n", i+1, p, st.desc, rerr, terr)
			continue
		}
		d := compare(st, rr, tr)
		e := expectation(st, rr)
		if ex, ok := exp[i+1]; ok {
			m := matchExpected(ex, tr)
			switch {
			case d == "":
				bad++
				fmt.Fprintf(w, "step %2d [%s] %-55s identical, but DOCUMENTED AS DIFFERENT (%s): stale expectation\n", i+1, p, st.desc, ex)
			case m != "":
				bad++
				fmt.Fprintf(w, "step %2d [%s] %-55s MISMATCH (%s; %s)\n", i+1, p, st.desc, d, m)
				fmt.Fprintf(w, "    cdb: % x  param: % x\n", st.cdb[:10], st.param)
				dump(w, "ref ", rr)
				dump(w, "test", tr)
			case e != "":
				bad++
				fmt.Fprintf(w, "step %2d [%s] %-55s differs as documented, but UNEXPECTED: %s\n", i+1, p, st.desc, e)
			default:
				documented++
				fmt.Fprintf(w, "step %2d [%s] %-55s differs as documented: ref %s, test %s\n", i+1, p, st.desc, summary(rr), summary(tr))
				fmt.Fprintf(w, "    why: %s\n", ex.Why)
			}
			continue
		}
		switch {
		case d != "":
			bad++
			fmt.Fprintf(w, "step %2d [%s] %-55s MISMATCH (%s)\n", i+1, p, st.desc, d)
			fmt.Fprintf(w, "    cdb: % x  param: % x\n", st.cdb[:10], st.param)
			dump(w, "ref ", rr)
			dump(w, "test", tr)
		case e != "":
			bad++
			fmt.Fprintf(w, "step %2d [%s] %-55s identical, but UNEXPECTED: %s\n", i+1, p, st.desc, e)
		default:
			same++
			note := ""
			if rr.Sense != tr.Sense {
				note = " (reference's uninitialized sense bytes 18-95 ignored, test's are zero)"
			}
			fmt.Fprintf(w, "step %2d [%s] %-55s identical: %s%s\n", i+1, p, st.desc, summary(rr), note)
		}
	}
	if exp != nil {
		fmt.Fprintf(w, "prdiff: %d steps, %d identical, %d differ as documented (%d listed), %d mismatched or unexpected\n",
			len(steps), same, documented, len(exp), bad)
	} else {
		fmt.Fprintf(w, "prdiff: %d steps, %d identical, %d mismatched or unexpected\n", len(steps), same, bad)
	}
	if bad > 0 {
		return 1
	}
	return 0
}
