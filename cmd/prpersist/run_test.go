package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// received is what the fake helper saw for one request.
type received struct {
	cdb    [wire.CDBSize]byte
	param  []byte
	ino    uint64 // inode of the passed descriptor, 0 if none
	rdwr   bool   // the descriptor was open O_RDWR
	nonblk bool   // O_NONBLOCK
}

// fakeHelper accepts connections on a temporary socket, runs the handshake and
// answers every request with reply, recording what it received.
func fakeHelper(t *testing.T, reply wire.Reply) (string, <-chan received) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "helper.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan received, 4)
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go serve(c, reply, ch)
		}
	}()
	return path, ch
}

func serve(c *net.UnixConn, reply wire.Reply, ch chan<- received) {
	defer c.Close()
	if wire.ServerHandshake(c) != nil {
		return
	}
	for {
		req, err := wire.ReadRequest(c)
		if err != nil {
			return
		}
		r := received{cdb: req.CDB, param: req.Param}
		var st unix.Stat_t
		if unix.Fstat(req.FD, &st) == nil {
			r.ino = st.Ino
			fl, _ := unix.FcntlInt(uintptr(req.FD), unix.F_GETFL, 0)
			r.rdwr = fl&unix.O_ACCMODE == unix.O_RDWR
			r.nonblk = fl&unix.O_NONBLOCK != 0
		}
		unix.Close(req.FD)
		ch <- r
		rep := reply
		if wire.WriteReply(c, req.CDB[:], &rep) != nil {
			return
		}
	}
}

// disk is a temporary regular file standing in for the device.
func disk(t *testing.T) (string, uint64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk0")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return p, st.Ino
}

func runArgs(t *testing.T, socket string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	o, err := parseOptions(args, func(k string) string {
		if k == envSocket {
			return socket
		}
		return ""
	})
	if err != nil {
		t.Fatalf("parseOptions(%q): %v", args, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out, errw bytes.Buffer
	code = run(ctx, o, &out, &errw)
	return code, out.String(), errw.String()
}

func withSense(status byte, s scsi.Sense) wire.Reply {
	r := wire.Reply{Status: status}
	r.SetSense(s.Fixed())
	return r
}

func TestRunEndToEnd(t *testing.T) {
	keys := scsi.Keys{Generation: 2, Keys: []uint64{1, 2}}.Encode()
	tests := []struct {
		name      string
		args      []string
		reply     wire.Reply
		wantCDB   string // first 10 bytes
		wantParam string
		wantRDWR  bool
		code      int
		stdout    string
		stderr    string
	}{
		{name: "register (transcript: --out --register --param-sark=0x1)",
			args:    []string{"-n", "--out", "--register", "--param-sark=0x1"},
			wantCDB: "5f 00 00 00 00 00 00 00 18 00", wantParam: "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01" + strings.Repeat(" 00", 8),
			wantRDWR: true, code: 0},
		{name: "reserve conflict (transcript: exit 24)",
			args:    []string{"-n", "--out", "--reserve", "--param-rk=0x2", "--prout-type=1"},
			reply:   wire.Reply{Status: scsi.StatusReservationConflict},
			wantCDB: "5f 01 01 00 00 00 00 00 18 00", wantParam: "00 00 00 00 00 00 00 02" + strings.Repeat(" 00", 16),
			wantRDWR: true, code: 24,
			stderr: "PR out (Reserve): Reservation conflict\nprpersist failed: Reservation conflict\n"},
		{name: "read keys (transcript)",
			args:    []string{"-n", "--in", "--read-keys"},
			reply:   wire.Reply{Data: keys},
			wantCDB: "5e 00 00 00 00 00 00 20 00 00", wantRDWR: true, code: 0,
			stdout: "  PR generation=0x2, 2 registered reservation keys follow:\n    0x1\n    0x2\n"},
		{name: "read keys truncated by --maxlen 12",
			args:    []string{"-k", "-m", "12"},
			reply:   wire.Reply{Data: keys},
			wantCDB: "5e 00 00 00 00 00 00 00 0c 00", wantRDWR: true, code: 0,
			stdout: "  PR generation=0x2, 2 registered reservation keys follow:\n",
			stderr: "prpersist: response truncated to the allocation length (12 bytes); raise --maxlen\n"},
		{name: "unit attention on read reservation, read-only open",
			args:    []string{"-y", "-r"},
			reply:   withSense(scsi.StatusCheckCondition, scsi.SenseRegsPreempted),
			wantCDB: "5e 01 00 00 00 00 00 20 00 00", wantRDWR: false, code: 6,
			stderr: "Persistent reservation in:\nFixed format, current; Sense key: Unit Attention\nAdditional sense: Registrations preempted\n" +
				"PR in (Read reservation): Unit attention\nprpersist failed: Unit attention\n"},
		{name: "malformed capabilities",
			args:    []string{"-c"},
			reply:   wire.Reply{Data: []byte{0, 0x10, 0x1d, 0x90, 0xea, 0x01, 0, 0}},
			wantCDB: "5e 02 00 00 00 00 00 20 00 00", wantRDWR: true, code: 97,
			stderr: "Unexpected response for PRIN Report Capabilities\nprpersist failed: Malformed SCSI command\n"},
		{name: "malformed read keys",
			args:    []string{"-k"},
			reply:   wire.Reply{Data: []byte{0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 0}},
			wantCDB: "5e 00 00 00 00 00 00 20 00 00", wantRDWR: true, code: 97,
			stderr: "PR in (Read keys): PR IN READ KEYS: malformed data: READ KEYS: ADDITIONAL LENGTH 4 is not a multiple of 8\n" +
				"prpersist failed: Malformed SCSI command\n"},
		{name: "register and move with a SAS TransportID",
			args:    []string{"-M", "-K", "1", "-S", "2", "-Q", "1", "-U", "-X", "sas,5001405b00000002"},
			wantCDB: "5f 07 00 00 00 00 00 00 30 00",
			wantParam: "00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 02 00 01 00 00 00 18 " +
				"06 00 00 00 50 01 40 5b 00 00 00 02" + strings.Repeat(" 00", 12),
			wantRDWR: true, code: 0, stderr: ""},
		{name: "register with SPEC_I_PT, verbose",
			args:    []string{"-G", "-S", "1", "-X", "iqn.x", "-v"},
			wantCDB: "5f 00 00 00 00 00 00 00 34 00",
			wantParam: strings.Repeat("00 ", 15) + "01 00 00 00 00 08 00 00 00 00 00 00 18 05 00 00 14 69 71 6e 2e 78" +
				strings.Repeat(" 00", 15),
			wantRDWR: true, code: 0,
			stderr: "    Persistent reservation out cdb: [5f 00 00 00 00 00 00 00 34 00]\nPR out: command (Register) successful\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sock, got := fakeHelper(t, tc.reply)
			dev, ino := disk(t)
			code, stdout, stderr := runArgs(t, sock, append(tc.args, dev)...)
			if code != tc.code || stdout != tc.stdout || stderr != tc.stderr {
				t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout:\n%s\nstderr:\n%s", code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
			}
			var r received
			select {
			case r = <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("the helper received nothing")
			}
			if cdb := hexOfBytes(r.cdb[:10]); cdb != strings.ReplaceAll(tc.wantCDB, " ", "") {
				t.Errorf("CDB %s, want %s", cdb, tc.wantCDB)
			}
			if r.cdb[10] != 0 || r.cdb[15] != 0 {
				t.Errorf("CDB not zero padded: % x", r.cdb)
			}
			if p := hexOfBytes(r.param); p != strings.ReplaceAll(tc.wantParam, " ", "") {
				t.Errorf("parameter list %s, want %s", p, tc.wantParam)
			}
			if r.ino != ino || r.rdwr != tc.wantRDWR || !r.nonblk {
				t.Errorf("fd: inode %d (want %d), O_RDWR %v (want %v), O_NONBLOCK %v", r.ino, ino, r.rdwr, tc.wantRDWR, r.nonblk)
			}
		})
	}
}

func TestRunJSON(t *testing.T) {
	fs, err := scsi.FullStatus{Generation: 1, Descriptors: []scsi.StatusDescriptor{{Key: 5, Holder: true, Type: 1,
		RelativeTargetPort: 2, TransportID: scsi.SASTransportID(0x5001405b00000002)}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	sock, _ := fakeHelper(t, wire.Reply{Data: fs})
	dev, _ := disk(t)
	code, stdout, stderr := runArgs(t, sock, "--json", "-s", dev)
	if code != 0 || stderr != "" || strings.Count(stdout, "\n") != 1 {
		t.Fatalf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	var j struct {
		Command    string `json:"command"`
		Status     *int   `json:"status"`
		ExitStatus int    `json:"exit_status"`
		Data       string `json:"data"`
		Payload    struct {
			Generation  uint32 `json:"generation"`
			Descriptors []struct {
				Key                string `json:"key"`
				Holder             bool   `json:"r_holder"`
				TypeName           string `json:"type_name"`
				RelativeTargetPort uint16 `json:"relative_target_port"`
				TransportID        struct {
					Protocol    byte   `json:"protocol"`
					Description string `json:"description"`
					Hex         string `json:"hex"`
				} `json:"transport_id"`
			} `json:"descriptors"`
		} `json:"payload"`
	}
	if err := json.Unmarshal([]byte(stdout), &j); err != nil {
		t.Fatal(err)
	}
	d := j.Payload.Descriptors
	if j.Command != "PR IN READ FULL STATUS" || j.Status == nil || *j.Status != 0 || j.ExitStatus != 0 || j.Data != hexOfBytes(fs) ||
		j.Payload.Generation != 1 || len(d) != 1 || d[0].Key != "0x5" || !d[0].Holder || d[0].TypeName != "Write Exclusive" ||
		d[0].RelativeTargetPort != 2 || d[0].TransportID.Protocol != scsi.ProtoSAS ||
		d[0].TransportID.Description != "SAS address: 0x5001405b00000002" || d[0].TransportID.Hex != hexOfBytes(fs[32:56]) {
		t.Fatalf("JSON %s", stdout)
	}

	// 64-bit keys stay exact: they are strings.
	sock, _ = fakeHelper(t, wire.Reply{Data: scsi.Keys{Generation: 1, Keys: []uint64{0xfedcba9876543211}}.Encode()})
	_, stdout, _ = runArgs(t, sock, "--json", "-k", dev)
	if !strings.Contains(stdout, `"keys":["0xfedcba9876543211"]`) {
		t.Fatalf("JSON keys: %s", stdout)
	}

	sock, _ = fakeHelper(t, withSense(scsi.StatusCheckCondition, scsi.SenseInvalidParamLen))
	code, stdout, stderr = runArgs(t, sock, "--json", "-C", "-K", "1", dev)
	var e struct {
		Status     int `json:"status"`
		ExitStatus int `json:"exit_status"`
		Sense      struct {
			Key         byte   `json:"key"`
			ASC         byte   `json:"asc"`
			ASCQ        byte   `json:"ascq"`
			Description string `json:"description"`
			Raw         string `json:"raw"`
		} `json:"sense"`
	}
	if err := json.Unmarshal([]byte(stdout), &e); err != nil || code != 5 || stderr != "" {
		t.Fatalf("exit %d stdout %q stderr %q: %v", code, stdout, stderr, err)
	}
	if e.Status != 2 || e.ExitStatus != 5 || e.Sense.Key != 5 || e.Sense.ASC != 0x1a || e.Sense.ASCQ != 0 ||
		e.Sense.Description != "Parameter list length error" || e.Sense.Raw != "700005000000000a000000001a0000000000" {
		t.Fatalf("JSON %s", stdout)
	}
}

func TestRunFailures(t *testing.T) {
	dev, _ := disk(t)
	// No helper listening: SG_LIB_CAT_OTHER.
	missing := filepath.Join(t.TempDir(), "none.sock")
	code, stdout, stderr := runArgs(t, missing, "-k", dev)
	if code != exitOther || stdout != "" || !strings.HasPrefix(stderr, "prpersist: helper "+missing+": connect") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("no helper: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
	// A device that cannot be opened: SG_LIB_FILE_ERROR, and nothing is sent.
	sock, got := fakeHelper(t, wire.Reply{})
	code, _, stderr = runArgs(t, sock, "-k", filepath.Join(t.TempDir(), "nodev"))
	if code != exitFile || !strings.Contains(stderr, "error opening file") || !strings.Contains(stderr, "(rw)") {
		t.Fatalf("open failure: exit %d stderr %q", code, stderr)
	}
	select {
	case r := <-got:
		t.Fatalf("helper received % x for a device that did not open", r.cdb)
	case <-time.After(100 * time.Millisecond):
	}
	// The implied READ KEYS notes itself on stderr, as sg_persist does.
	sock, _ = fakeHelper(t, wire.Reply{Data: scsi.Keys{}.Encode()})
	code, stdout, stderr = runArgs(t, sock, dev)
	if code != 0 || stdout != "  PR generation=0x0, there are NO registered reservation keys\n" ||
		stderr != ">> No service action given; assume Persistent Reserve In command\n>> with Read Keys service action\n" {
		t.Fatalf("implied read keys: exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}

// TestRunHelperSilent: a helper that takes the request and never answers makes
// prpersist fail with 99 when the context expires, not hang.
func TestRunHelperSilent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		if wire.ServerHandshake(c) == nil {
			if req, err := wire.ReadRequest(c); err == nil {
				unix.Close(req.FD)
			}
		}
		<-done
	}()
	dev, _ := disk(t)
	o, err := parseOptions([]string{"--socket", path, "-k", dev}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errw bytes.Buffer
	start := time.Now()
	code := run(ctx, o, &out, &errw)
	if code != exitOther || time.Since(start) > 5*time.Second || !strings.Contains(errw.String(), "helper "+path) {
		t.Fatalf("exit %d after %v, stderr %q", code, time.Since(start), errw.String())
	}
}

// TestRunFileHint: the answer a helper without emulation gives for a disk image
// (ABORTED COMMAND 00/06) comes with a line saying why and what to do; the
// same answer for a device that is not a regular file does not.
func TestRunFileHint(t *testing.T) {
	dev, _ := disk(t)
	sock, _ := fakeHelper(t, withSense(scsi.StatusCheckCondition, scsi.SenseIOError))
	code, _, stderr := runArgs(t, sock, "-k", dev)
	if code != exitAborted || !strings.Contains(stderr, dev+" is a regular file") ||
		!strings.Contains(stderr, "--backend=emulate --db=PATH") || !strings.Contains(stderr, "--explain="+dev) {
		t.Fatalf("file: exit %d stderr %q", code, stderr)
	}
	sock, _ = fakeHelper(t, withSense(scsi.StatusCheckCondition, scsi.SenseIOError))
	code, _, stderr = runArgs(t, sock, "-k", "/dev/null")
	if code != exitAborted || strings.Contains(stderr, "regular file") {
		t.Fatalf("/dev/null: exit %d stderr %q", code, stderr)
	}
	sock, _ = fakeHelper(t, wire.Reply{Status: scsi.StatusReservationConflict})
	if _, _, stderr = runArgs(t, sock, "--out", "--reserve", "--param-rk=1", "--prout-type=1", dev); strings.Contains(stderr, "regular file") {
		t.Fatalf("conflict on a file: stderr %q", stderr)
	}
}
