package main

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
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
	r, err := bench("fake", 4, 100, mk)
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
	if _, err := bench("bad", 1, 10, bad); err == nil {
		t.Error("failing doer: no error")
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
