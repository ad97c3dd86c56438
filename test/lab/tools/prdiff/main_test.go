package main

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func TestSasTID(t *testing.T) {
	tid := sasTID(2)
	if len(tid) != 24 || tid[0] != 0x06 {
		t.Fatalf("sasTID(2) = % x: want 24 bytes, protocol identifier 6", tid)
	}
	if got := binary.BigEndian.Uint64(tid[4:12]); got != 0x5001405b00000002 {
		t.Errorf("SAS address %#x, want 0x5001405b00000002", got)
	}
}

func TestRegParam(t *testing.T) {
	p := regParam(0x1122, 0x3344, 0x08, sasTID(1), sasTID(2))
	if len(p) != 24+4+48 {
		t.Fatalf("len %d, want %d", len(p), 24+4+48)
	}
	if binary.BigEndian.Uint64(p[0:8]) != 0x1122 || binary.BigEndian.Uint64(p[8:16]) != 0x3344 {
		t.Errorf("keys wrong: % x", p[:16])
	}
	if p[20] != 0x08 {
		t.Errorf("flags byte 20 = %#x, want 0x08", p[20])
	}
	if n := binary.BigEndian.Uint32(p[24:28]); n != 48 {
		t.Errorf("TransportID list length %d, want 48", n)
	}
	if len(regParam(1, 2, 0)) != 24 {
		t.Errorf("basic parameter list is not 24 bytes")
	}
}

func TestMoveParam(t *testing.T) {
	p := moveParam(0xa, 0xb, true, 2, sasTID(2))
	if len(p) != 48 {
		t.Fatalf("len %d, want 48", len(p))
	}
	if p[17] != 0x02 {
		t.Errorf("UNREG bit: byte 17 = %#x", p[17])
	}
	if binary.BigEndian.Uint16(p[18:20]) != 2 || binary.BigEndian.Uint32(p[20:24]) != 24 {
		t.Errorf("rtpi/tid length wrong: % x", p[16:24])
	}
}

// TestScript checks that the sequence keeps what the brief asks of it.
func TestScript(t *testing.T) {
	s := script()
	if len(s) < 40 {
		t.Fatalf("%d steps, want at least 40", len(s))
	}
	in, out := map[byte]bool{}, map[byte]bool{}
	paths := map[int]bool{}
	ro := false
	for _, st := range s {
		paths[st.path] = true
		sa := scsi.ServiceAction(st.cdb[:])
		if st.cdb[0] == scsi.OpPersistentReserveIn {
			in[sa] = true
		} else {
			out[sa] = true
			if sa == scsi.SAPreemptAndAbort {
				t.Errorf("%q: PREEMPT AND ABORT can hang over tcm_loop", st.desc)
			}
			if scsi.TransferLength(st.cdb[:]) != len(st.param) {
				t.Errorf("%q: framing length %d, parameter list %d bytes", st.desc, scsi.TransferLength(st.cdb[:]), len(st.param))
			}
			ro = ro || st.ro
		}
		if st.want == scsi.StatusCheckCondition && st.sense == nil {
			t.Errorf("%q: CHECK CONDITION expected without a sense code", st.desc)
		}
	}
	for _, sa := range []byte{scsi.SAReadKeys, scsi.SAReadReservation, scsi.SAReportCapabilities, scsi.SAReadFullStatus} {
		if !in[sa] {
			t.Errorf("PR IN service action %#x not exercised", sa)
		}
	}
	for _, sa := range []byte{scsi.SARegister, scsi.SAReserve, scsi.SARelease, scsi.SAClear, scsi.SAPreempt, scsi.SARegisterAndIgnoreExisting, scsi.SARegisterAndMove} {
		if !out[sa] {
			t.Errorf("PR OUT service action %#x not exercised", sa)
		}
	}
	if !paths[pathA] || !paths[pathB] || !ro {
		t.Errorf("paths %v, read-only PR OUT %v: want both paths and a read-only PR OUT", paths, ro)
	}
}

func TestCompare(t *testing.T) {
	good := wire.Reply{Status: 0, Data: []byte{1, 2}}
	cc := wire.Reply{Status: 2}
	cc.SetSense(scsi.SenseInvalidOpcode.Fixed())
	garbage := cc
	garbage.Sense[64] = 0x7f
	roOut := step{ro: true, cdb: scsi.PROutCDB(scsi.SARegister, 0, 0, 24)}
	rwOut := step{cdb: scsi.PROutCDB(scsi.SARegister, 0, 0, 24)}
	tests := []struct {
		name      string
		st        step
		ref, test wire.Reply
		same      bool
	}{
		{"identical", rwOut, good, good, true},
		{"status", rwOut, good, cc, false},
		{"data", rwOut, good, wire.Reply{Data: []byte{1, 3}}, false},
		{"size", rwOut, good, wire.Reply{Data: []byte{1}}, false},
		{"sense tail differs", rwOut, cc, garbage, false},
		{"read-only: reference garbage tolerated", roOut, garbage, cc, true},
		{"read-only: test garbage not tolerated", roOut, cc, garbage, false},
	}
	for _, tt := range tests {
		ref, test := tt.ref, tt.test
		if got := compare(tt.st, &ref, &test) == ""; got != tt.same {
			t.Errorf("%s: compare says same=%v, want %v", tt.name, got, tt.same)
		}
	}
}

// TestLinuxprExpect checks the built-in expectation set against the script:
// every entry names a step by its description, says why, and starts with one of
// the root causes the file's header defines.
func TestLinuxprExpect(t *testing.T) {
	exp, err := loadExpect("linuxpr", script())
	if err != nil {
		t.Fatal(err)
	}
	if len(exp) == 0 {
		t.Fatal("no entries")
	}
	for n, e := range exp {
		cause := false
		for _, c := range []string{"[no-ioctl]", "[own-check]", "[sense-lost]", "[state]"} {
			cause = cause || strings.HasPrefix(e.Why, c)
		}
		if !cause {
			t.Errorf("step %d: why %q does not start with a root cause", n, e.Why)
		}
		if e.Status == scsi.StatusCheckCondition && e.Sense == nil {
			t.Errorf("step %d: CHECK CONDITION without a sense code", n)
		}
	}
}

func TestParseExpect(t *testing.T) {
	steps := []step{{desc: "A READ KEYS"}, {desc: "B CLEAR"}}
	tests := []struct {
		name, text string
		ok         bool
		want       expected
	}{
		{"check", "step 1: A READ KEYS\ntest: check 5/24/00\nwhy: no\n  ioctl\n", true,
			expected{Step: 1, Desc: "A READ KEYS", Status: scsi.StatusCheckCondition, Sense: &scsi.Sense{Key: 5, ASC: 0x24}, Why: "no ioctl"}},
		{"good with data", "# c\n\nstep 1: A READ KEYS\ntest: good data 00 00 00 05\nwhy: w\n", true,
			expected{Step: 1, Desc: "A READ KEYS", Status: scsi.StatusGood, Data: []byte{0, 0, 0, 5}, Why: "w"}},
		{"conflict", "step 2: B CLEAR\ntest: conflict\nwhy: w\n", true,
			expected{Step: 2, Desc: "B CLEAR", Status: scsi.StatusReservationConflict, Why: "w"}},
		{"description differs", "step 1: B CLEAR\ntest: conflict\nwhy: w\n", false, expected{}},
		{"step out of range", "step 3: A READ KEYS\ntest: conflict\nwhy: w\n", false, expected{}},
		{"no why", "step 1: A READ KEYS\ntest: conflict\n", false, expected{}},
		{"no test", "step 1: A READ KEYS\nwhy: w\n", false, expected{}},
		{"twice", "step 1: A READ KEYS\ntest: good\nwhy: w\nstep 1: A READ KEYS\ntest: good\nwhy: w\n", false, expected{}},
		{"bad reply", "step 1: A READ KEYS\ntest: busy\nwhy: w\n", false, expected{}},
		{"bad sense", "step 1: A READ KEYS\ntest: check 5-24-00\nwhy: w\n", false, expected{}},
		{"bad data", "step 1: A READ KEYS\ntest: good data zz\nwhy: w\n", false, expected{}},
		{"key before step", "test: good\n", false, expected{}},
		{"stray continuation", "step 1: A READ KEYS\n  more\n", false, expected{}},
		{"unknown key", "step 1: A READ KEYS\nhow: w\n", false, expected{}},
	}
	for _, tt := range tests {
		got, err := parseExpect(tt.text, steps)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok=%v", tt.name, err, tt.ok)
			continue
		}
		if !tt.ok {
			continue
		}
		e, found := got[tt.want.Step]
		if !found || len(got) != 1 || e.String() != tt.want.String() || e.Why != tt.want.Why || e.Desc != tt.want.Desc {
			t.Errorf("%s: got %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestMatchExpected(t *testing.T) {
	cc := wire.Reply{Status: scsi.StatusCheckCondition}
	cc.SetSense(scsi.SenseInvalidField.Fixed())
	tail := cc
	tail.Sense[40] = 1
	data := wire.Reply{Data: []byte{0, 8, 1, 0x81}}
	wantCC := expected{Status: scsi.StatusCheckCondition, Sense: &scsi.SenseInvalidField}
	wantData := expected{Status: scsi.StatusGood, Data: []byte{0, 8, 1, 0x81}}
	tests := []struct {
		name string
		e    expected
		r    wire.Reply
		ok   bool
	}{
		{"check matches", wantCC, cc, true},
		{"sense tail not zero", wantCC, tail, false},
		{"other sense", expected{Status: scsi.StatusCheckCondition, Sense: &scsi.SenseInvalidParam}, cc, false},
		{"data matches", wantData, data, true},
		{"data differs", wantData, wire.Reply{Data: []byte{0, 8, 1, 0x80}}, false},
		{"data missing", wantData, wire.Reply{}, false},
		{"status differs", expected{Status: scsi.StatusReservationConflict}, wire.Reply{}, false},
	}
	for _, tt := range tests {
		r := tt.r
		if got := matchExpected(tt.e, &r) == ""; got != tt.ok {
			t.Errorf("%s: match=%v, want %v", tt.name, got, tt.ok)
		}
	}
}

func FuzzParseExpect(f *testing.F) {
	f.Add("step 1: A READ KEYS\ntest: check 5/24/00\nwhy: w\n  more\n")
	f.Add("step 2: B CLEAR\ntest: good data 00 01\nwhy: w\n")
	f.Add(linuxprExpect)
	steps := []step{{desc: "A READ KEYS"}, {desc: "B CLEAR"}}
	f.Fuzz(func(t *testing.T, text string) {
		exp, err := parseExpect(text, steps)
		if err != nil {
			return
		}
		for n, e := range exp {
			if n < 1 || n > len(steps) || e.Why == "" || e.Desc != steps[n-1].desc {
				t.Fatalf("accepted a bad entry %d: %+v", n, e)
			}
			_ = e.String()
		}
	})
}
