package main

import (
	"encoding/binary"
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
