package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
)

func TestBench(t *testing.T) {
	var n atomic.Int64
	mk := func(int) (doer, func(), func(int) *step) {
		return func(*step) (byte, error) { n.Add(1); return scsi.StatusGood, nil }, func() {}, func(int) *step { return &readKeys }
	}
	r, err := bench(path{}, "fake", 4, 100, mk)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != 100 || r.clients != 4 || r.p50 > r.p99 || r.rate <= 0 || r.statuses != "GOOD:100" {
		t.Errorf("result %+v", r)
	}
	if n.Load() != 104 { // 4 warm-up requests + 100
		t.Errorf("%d requests sent, want 104", n.Load())
	}
	bad := func(int) (doer, func(), func(int) *step) {
		return func(*step) (byte, error) { return 0, errors.New("boom") }, func() {}, func(int) *step { return &readKeys }
	}
	if _, err := bench(path{}, "bad", 1, 10, bad); err == nil {
		t.Error("failing doer: no error")
	}
}

// TestOpenLoop: with -rate the requests keep to their schedule, and a
// request that waits for its connection's previous one counts that wait. The
// bounds are ones sleeping makes certain: a schedule of 100 requests at
// 2,000/s takes at least 49.5 ms however fast the doer, and with one
// connection whose every request takes 2 ms against slots 0.25 ms apart,
// request j has waited j*1.75 ms for its slot.
func TestOpenLoop(t *testing.T) {
	fast := func(int) (doer, func(), func(int) *step) {
		return func(*step) (byte, error) { return scsi.StatusGood, nil }, func() {}, func(int) *step { return &readKeys }
	}
	r, err := bench(path{rate: 2000}, "fast", 4, 100, fast)
	if err != nil {
		t.Fatal(err)
	}
	if r.n != 100 || r.el < 49500*time.Microsecond {
		t.Errorf("100 requests at 2,000/s: %d in %v (%.0f/s), want 100 in at least 49.5 ms", r.n, r.el, r.rate)
	}
	slow := func(int) (doer, func(), func(int) *step) {
		return func(*step) (byte, error) { time.Sleep(2 * time.Millisecond); return scsi.StatusGood, nil },
			func() {}, func(int) *step { return &readKeys }
	}
	r, err = bench(path{rate: 4000}, "slow", 1, 20, slow)
	if err != nil {
		t.Fatal(err)
	}
	// p99 of 20 is request 18's latency: 2 ms of its own and 18*1.75 ms late.
	if want := 2*time.Millisecond + 18*1750*time.Microsecond; r.p99 < want {
		t.Errorf("p99 %v, want at least %v: the wait for the slot is not counted", r.p99, want)
	}
}

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"-dev", "/dev/null", "-n", "1"}, {"-dev", "/nonexistent"},
		{"-dev", "/dev/null", "-workload", "mixed"}, {"-dev", "/dev/null", "-workload", "bogus"},
		{"-dev", "/dev/null", "-clients", "0"}, {"-dev", "/dev/null", "-helper", "nosock"}, {"-dev", "/dev/null", "-rounds", "0"}, {"-dev", "/dev/null", "-n", "40", "-rounds", "3"}} {
		if rc := run(args, io.Discard); rc != 1 {
			t.Errorf("run(%q) = %d, want 1", args, rc)
		}
	}
}

// regHex is a REGISTER CDB announcing a 24-byte parameter list, in hex.
var regHex = func() string { c := scsi.PROutCDB(scsi.SARegister, 0, 0, 24); return hex.EncodeToString(c[:]) }()

func TestReadSeq(t *testing.T) {
	in := "# comment\n0 5e000000000000002000000000000000 -\n\n2 " + regHex + " " +
		strings.Repeat("00", 24) + "\n"
	seq, err := readSeq(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) != 2 || seq[0].path != 0 || seq[0].param != nil || seq[1].path != 2 || len(seq[1].param) != 24 ||
		seq[1].cdb[0] != scsi.OpPersistentReserveOut {
		t.Errorf("seq %+v", seq)
	}
	for _, bad := range []string{"", "0 5e -", "x 5e000000000000002000000000000000 -",
		"0 12000000000000002000000000000000 -", "0 " + regHex + " zz"} {
		if _, err := readSeq(strings.NewReader(bad)); err == nil {
			t.Errorf("readSeq(%q): no error", bad)
		}
	}
}

// TestEchoAndTable runs the echo floor on a socket and the whole table
// against it (as a helper, and as the reference), on a regular file, with
// every workload: each row must count every request as CHECK CONDITION (the
// floor's one answer).
func TestEchoAndTable(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "echo.sock")
	go serveEcho(sock)
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i > 500 {
			t.Fatal("echo socket never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid := helperPID(sock); pid != os.Getpid() {
		t.Errorf("helperPID = %d, want this process, %d", pid, os.Getpid())
	}
	if c0 := cpuTime(os.Getpid()); c0 <= 0 {
		t.Errorf("cpuTime of this process = %d", c0)
	}
	if helperPID(filepath.Join(dir, "none.sock")) != 0 || cpuTime(0) != -1 {
		t.Error("no socket: want pid 0 and cpu time -1")
	}
	cl := client.New(sock)
	f, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rep, err := cl.Do(t.Context(), scsi.PROutCDB(scsi.SARegister, 0, 0, 24), int(f.Fd()), make([]byte, 24))
	cl.Close()
	if err != nil || rep.Status != scsi.StatusCheckCondition {
		t.Fatalf("echo: %+v %v", rep, err)
	}
	seqPath := filepath.Join(dir, "seq.txt")
	seqText := "0 5e000000000000002000000000000000 -\n1 " + regHex + " " + strings.Repeat("00", 24) + "\n"
	if err := os.WriteFile(seqPath, []byte(seqText), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rc := run([]string{"-dev", f.Name() + "," + f.Name(), "-helper", "echo=" + sock, "-helper", "again=" + sock,
		"-ref", "echo", "-direct=false", "-clients", "1,4", "-workload", "readkeys,mixed,serial", "-seq", seqPath, "-n", "40", "-rounds", "2"}, &out)
	t.Log(out.String())
	if rc != 0 {
		t.Fatalf("rc %d", rc)
	}
	rows := 0
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "echo ") || strings.HasPrefix(l, "again ") {
			rows++
			if !strings.Contains(l, "CHECK_CONDITION:") || strings.Contains(l, "GOOD") {
				t.Errorf("row %q", l)
			}
			if strings.HasPrefix(l, "echo ") && !strings.Contains(l, " 1.00 ") {
				t.Errorf("reference row without ratio 1.00: %q", l)
			}
		}
	}
	if rows != 2*(2+2+1) {
		t.Errorf("%d rows, want 10", rows)
	}
}

// TestResetWith: the reset sends a command again while the device answers
// UNIT ATTENTION (a replay's PREEMPT or CLEAR left them on the nexus), sends
// the REGISTER once more with ALL_TG_PT after LIO's 5/24/00 for an initiator
// port an ALL_TG_PT registration covers, and fails on any other answer, or on
// more than resetUAs unit attentions.
func TestResetWith(t *testing.T) {
	ua := scsi.CheckCondition(scsi.SenseRegsPreempted)
	freed := scsi.CheckCondition(scsi.SenseReservationsFreed)
	inval := scsi.CheckCondition(scsi.SenseInvalidField)
	type answer struct {
		status byte
		sense  []byte
	}
	good := answer{scsi.StatusGood, nil}
	cases := []struct {
		name    string
		answers []answer
		sent    []byte // service actions sent, in order, 0x80 added when ALL_TG_PT is set
		err     string // "" when the reset must succeed
	}{
		{"clean", []answer{good, good}, []byte{scsi.SARegisterAndIgnoreExisting, scsi.SAClear}, ""},
		{"three UAs, then one before CLEAR",
			[]answer{{ua.Status, ua.Sense}, {freed.Status, freed.Sense}, {ua.Status, ua.Sense}, good, {ua.Status, ua.Sense}, good},
			[]byte{scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndIgnoreExisting,
				scsi.SARegisterAndIgnoreExisting, scsi.SAClear, scsi.SAClear}, ""},
		{"conflict", []answer{{scsi.StatusReservationConflict, nil}},
			[]byte{scsi.SARegisterAndIgnoreExisting}, "reset: REGISTER AND IGNORE EXISTING KEY: RESERVATION CONFLICT"},
		{"invalid field to CLEAR", []answer{good, {inval.Status, inval.Sense}},
			[]byte{scsi.SARegisterAndIgnoreExisting, scsi.SAClear}, "reset: CLEAR: CHECK CONDITION 5/24/00"},
		{"LIO's ALL_TG_PT refusal", []answer{{inval.Status, inval.Sense}, good, good},
			[]byte{scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndIgnoreExisting | 0x80, scsi.SAClear}, ""},
		{"ALL_TG_PT refused too", []answer{{inval.Status, inval.Sense}, {ua.Status, ua.Sense}, {inval.Status, inval.Sense}},
			[]byte{scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndIgnoreExisting | 0x80, scsi.SARegisterAndIgnoreExisting | 0x80},
			"REGISTER AND IGNORE EXISTING KEY: CHECK CONDITION 5/24/00 (with ALL_TG_PT) (after 1 unit attentions: 6/2a/05)"},
		{"invalid parameter", []answer{{scsi.StatusCheckCondition, scsi.CheckCondition(scsi.SenseInvalidParam).Sense}},
			[]byte{scsi.SARegisterAndIgnoreExisting}, "CHECK CONDITION 5/26/00"},
	}
	endless := make([]answer, resetUAs+1)
	sent := make([]byte, resetUAs+1)
	for i := range endless {
		endless[i], sent[i] = answer{ua.Status, ua.Sense}, scsi.SARegisterAndIgnoreExisting
	}
	cases = append(cases, struct {
		name    string
		answers []answer
		sent    []byte
		err     string
	}{"endless UAs", endless, sent, "after 16 unit attentions"})
	for _, c := range cases {
		var got []byte
		err := resetWith(func(st *step) (byte, []byte, error) {
			if len(got) == len(c.answers) {
				t.Fatalf("%s: command %d sent, only %d answers", c.name, len(got)+1, len(c.answers))
			}
			a := c.answers[len(got)]
			sa := st.cdb[1] & 0x1f
			if st.param[20]&scsi.ParamAllTgPt != 0 {
				sa |= 0x80
			}
			got = append(got, sa)
			return a.status, a.sense, nil
		})
		if !bytes.Equal(got, c.sent) {
			t.Errorf("%s: sent service actions %x, want %x", c.name, got, c.sent)
		}
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
	if err := resetWith(func(*step) (byte, []byte, error) { return 0, nil, errors.New("EIO") }); err == nil ||
		!strings.Contains(err.Error(), "EIO") {
		t.Errorf("transport error: %v", err)
	}
}

// TestClientsAndLoopFloor: the three ways of driving a connection (-client)
// get the floors' answer, CHECK CONDITION, INVALID COMMAND OPERATION CODE,
// for PR IN and for PR OUT with a parameter list, from the echo floor and the
// loop floor alike, on several connections at once and after a connection
// that broke the protocol was dropped; a whole run with -client thread over
// both floors gives rows of CHECK CONDITION only.
func TestClientsAndLoopFloor(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0)) // run -client thread raises it
	dir := t.TempDir()
	floors := map[string]string{"echo": filepath.Join(dir, "echo.sock"), "loop": filepath.Join(dir, "loop.sock")}
	go serveEcho(floors["echo"])
	go serveEchoLoop(floors["loop"])
	for _, sock := range floors {
		waitSocket(t, sock)
	}
	f, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	reg := registerStep(0, 0)
	for name, sock := range floors {
		// A connection that sends a CDB no helper accepts is closed by the
		// floor; the others are served on.
		bad, closeBad, err := leanDoer(sock, f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bad(&step{cdb: [16]byte{0x12}}); err == nil {
			t.Errorf("%s: an INQUIRY CDB was answered", name)
		}
		closeBad()
		for _, kind := range []string{"lib", "lean", "thread"} {
			p := path{name: name, sock: sock, client: kind}
			var ds []doer
			for i := 0; i < 3; i++ {
				d, closeFn := p.open(f, i)
				defer closeFn()
				ds = append(ds, d)
			}
			for k := 0; k < 4; k++ {
				for i, d := range ds {
					for _, st := range []*step{&readKeys, reg} {
						s, err := d(st)
						if err != nil || s != scsi.StatusCheckCondition {
							t.Fatalf("%s, client %s, connection %d, CDB %x: status %#x, %v", name, kind, i, st.cdb[0], s, err)
						}
					}
				}
			}
		}
	}
	var out bytes.Buffer
	rc := run([]string{"-dev", f.Name(), "-helper", "echo=" + floors["echo"], "-helper", "loop=" + floors["loop"],
		"-ref", "echo", "-direct=false", "-clients", "1,4", "-workload", "readkeys,register", "-n", "40", "-client", "thread"}, &out)
	if rc != 0 || strings.Count(out.String(), "CHECK_CONDITION:40") != 8 || strings.Contains(out.String(), "GOOD") {
		t.Errorf("rc %d, want 8 rows of CHECK_CONDITION:40:\n%s", rc, out.String())
	}
	if rc := run([]string{"-dev", f.Name(), "-client", "fibre"}, &out); rc == 0 {
		t.Error("-client fibre accepted")
	}
}

func waitSocket(t *testing.T, sock string) {
	t.Helper()
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			return
		}
		if i > 500 {
			t.Fatalf("%s never appeared", sock)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
