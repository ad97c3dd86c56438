package main

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const (
	sasTID1 = "06 00 00 00 50 01 40 5b 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00"
	sasTID2 = "06 00 00 00 50 01 40 5b 00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00"
)

// The golden strings are sg_persist's output in the lab transcripts
// (test/lab/transcripts, testdata/lab-compare.txt), and the bytes are what LIO sent for them.
func TestHumanOutput(t *testing.T) {
	tests := []struct {
		name string
		sa   byte
		data string
		want string
	}{
		{"pr-two-paths: one key", scsi.SAReadKeys, "00000001 00000008 0000000000000001",
			"  PR generation=0x1, 1 registered reservation key follows:\n    0x1\n"},
		{"pr-two-paths: two keys", scsi.SAReadKeys, "00000002 00000010 0000000000000001 0000000000000002",
			"  PR generation=0x2, 2 registered reservation keys follow:\n    0x1\n    0x2\n"},
		{"nested-qemu: no keys", scsi.SAReadKeys, "00000000 00000000",
			"  PR generation=0x0, there are NO registered reservation keys\n"},
		{"nested-qemu: reservation", scsi.SAReadReservation, "00000001 00000010 0000000000000005 00000000 0001 0000",
			"  PR generation=0x1, Reservation follows:\n    Key=0x5\n    scope: LU_SCOPE,  type: Write Exclusive\n"},
		{"multipath: registrants only", scsi.SAReadReservation, "00000007 00000010 0000000000000077 00000000 0005 0000",
			"  PR generation=0x7, Reservation follows:\n    Key=0x77\n    scope: LU_SCOPE,  type: Write Exclusive, registrants only\n"},
		{"pr-two-paths: no reservation", scsi.SAReadReservation, "00000003 00000000",
			"  PR generation=0x3, there is NO reservation held\n"},
		{"obsolete type and a scope", scsi.SAReadReservation, "00000001 00000010 0000000000000005 00000000 0012 0000",
			"  PR generation=0x1, Reservation follows:\n    Key=0x5\n    scope: 1  type: obsolete [2]\n"},
		{"pr-two-paths: capabilities", scsi.SAReportCapabilities, "0008 1d90 ea01 0000", `Report capabilities response:
  Replace Lost Reservation Capable(RLR_C): 0
  Compatible Reservation Handling(CRH): 1
  Specify Initiator Ports Capable(SIP_C): 1
  All Target Ports Capable(ATP_C): 1
  Persist Through Power Loss Capable(PTPL_C): 1
  Type Mask Valid(TMV): 1
  Allow Commands: 1
  Persist Through Power Loss Active(PTPL_A): 0
    Support indicated in Type mask:
      Write Exclusive, all registrants: 1
      Exclusive Access, registrants only: 1
      Write Exclusive, registrants only: 1
      Exclusive Access: 1
      Write Exclusive: 1
      Exclusive Access, all registrants: 1
`},
		{"tgt capabilities without TMV", scsi.SAReportCapabilities, "0008 0000 0000 0000", `Report capabilities response:
  Replace Lost Reservation Capable(RLR_C): 0
  Compatible Reservation Handling(CRH): 0
  Specify Initiator Ports Capable(SIP_C): 0
  All Target Ports Capable(ATP_C): 0
  Persist Through Power Loss Capable(PTPL_C): 0
  Type Mask Valid(TMV): 0
  Allow Commands: 0
  Persist Through Power Loss Active(PTPL_A): 0
`},
		{"pr-two-paths: full status under WEAR", scsi.SAReadFullStatus,
			"00000006 00000060 0000000000000abc 00000000 0107 00000000 0001 00000018 " + sasTID1 +
				"0000000000000def 00000000 0107 00000000 0002 00000018 " + sasTID2, `  PR generation=0x6
    Key=0xabc
      All target ports bit clear
      Relative port address: 0x1
      << Reservation holder >>
      scope: LU_SCOPE,  type: Write Exclusive, all registrants
      Transport Id of initiator:
        SAS address: 0x5001405b00000001
    Key=0xdef
      All target ports bit clear
      Relative port address: 0x2
      << Reservation holder >>
      scope: LU_SCOPE,  type: Write Exclusive, all registrants
      Transport Id of initiator:
        SAS address: 0x5001405b00000002
`},
		{"qemu-pr-helper: not holder", scsi.SAReadFullStatus, "00000005 00000030 0000000000000333 00000000 0000 00000000 0001 00000018 " + sasTID1,
			`  PR generation=0x5
    Key=0x333
      All target ports bit clear
      Relative port address: 0x1
      not reservation holder
      Transport Id of initiator:
        SAS address: 0x5001405b00000001
`},
		{"ALL_TG_PT and iSCSI port", scsi.SAReadFullStatus, "00000001 00000048 1111111111111111 00000000 0301 00000000 0000 00000030 " +
			"4500002c" + hex.EncodeToString([]byte("iqn.1994-05.com.example:i1,i,0x00023d000001")) + "00", `  PR generation=0x1
    Key=0x1111111111111111
      All target ports bit set
      << Reservation holder >>
      scope: LU_SCOPE,  type: Write Exclusive
      Transport Id of initiator:
        iSCSI name and session id: iqn.1994-05.com.example:i1,i,0x00023d000001
`},
		{"lab: READ FULL STATUS cut at 40 bytes (sg_persist 1.46 aborts here)", scsi.SAReadFullStatus,
			"00000006 00000060 0000000000000abc 00000000 0107 00000000 0001 00000018 " + sasTID1[:24], `  PR generation=0x6
    Key=0xabc
      All target ports bit clear
      Relative port address: 0x1
      << Reservation holder >>
      scope: LU_SCOPE,  type: Write Exclusive, all registrants
      Transport Id of initiator: cannot decode (bad TransportID: needs 24 bytes, have 8)
        06 00 00 00 50 01 40 5b
`},
		{"no descriptors", scsi.SAReadFullStatus, "00000002 00000000", "  PR generation=0x2\n  No full status descriptors\n"},
		{"FC TransportID", scsi.SAReadFullStatus, "00000001 00000030 0000000000000001 00000000 0000 00000000 0001 00000018 " +
			"00000000 00000000 21000024ff3a8b2c 0000000000000000", `  PR generation=0x1
    Key=0x1
      All target ports bit clear
      Relative port address: 0x1
      not reservation holder
      Transport Id of initiator:
        FCP-2 World Wide Name:
          21000024ff3a8b2c
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errw strings.Builder
			o := Options{In: true, SA: tc.sa, AllocLen: 8192}
			r := decodeForTest(t, tc.sa, unhex(t, tc.data))
			printPayload(o, r, &out, &errw)
			if out.String() != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s", out.String(), tc.want)
			}
			if wantNote := truncated(r.payload); wantNote != strings.Contains(errw.String(), "response truncated") {
				t.Fatalf("stderr %q, truncation note expected: %v", errw.String(), wantNote)
			}
		})
	}
}

func decodeForTest(t *testing.T, sa byte, data []byte) *result {
	t.Helper()
	r := &result{reply: &wire.Reply{Data: data}}
	var err error
	switch sa {
	case scsi.SAReadKeys:
		var v scsi.Keys
		v, err = scsi.DecodeKeys(data)
		r.payload = &v
	case scsi.SAReadReservation:
		var v scsi.Reservation
		v, err = scsi.DecodeReservation(data)
		r.payload = &v
	case scsi.SAReportCapabilities:
		var v scsi.Capabilities
		v, err = scsi.DecodeCapabilities(data)
		r.payload = &v
	case scsi.SAReadFullStatus:
		var v scsi.FullStatus
		v, err = scsi.DecodeFullStatus(data)
		r.payload = &v
	}
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHexOutput(t *testing.T) {
	keys := unhex(t, "00000002 00000010 0000000000000001 0000000000000002")
	tests := []struct {
		name  string
		sa    byte
		data  []byte
		level int
		want  string
	}{
		{"-H: header line and body", scsi.SAReadKeys, keys, 1,
			"  PR generation=0x2, Additional length=16\n 00     00 00 00 00 00 00 00 01  00 00 00 00 00 00 00 02\n"},
		{"-HH: whole response", scsi.SAReadKeys, keys, 2,
			" 00     00 00 00 02 00 00 00 10  00 00 00 00 00 00 00 01\n 10     00 00 00 00 00 00 00 02\n"},
		{"-HHH: no addresses", scsi.SAReadKeys, keys, 3,
			"00 00 00 02 00 00 00 10  00 00 00 00 00 00 00 01\n00 00 00 00 00 00 00 02\n"},
		{"-H truncated", scsi.SAReadKeys, keys[:12], 1,
			"  PR generation=0x2, Additional length too large=16, truncate\n 00     00 00 00 00\n"},
		{"-H capabilities", scsi.SAReportCapabilities, unhex(t, "0008 1d90 ea01 0000"), 1,
			" 00     00 08 1d 90 ea 01 00 00\n"},
	}
	for _, tc := range tests {
		var out strings.Builder
		printHex(&out, tc.sa, tc.data, tc.level)
		if out.String() != tc.want {
			t.Errorf("%s: got\n%q\nwant\n%q", tc.name, out.String(), tc.want)
		}
	}
}

// TestErrorReport checks the stderr lines for failed commands against the
// transcripts (with prpersist for sg_persist in the last line).
func TestErrorReport(t *testing.T) {
	withSense := func(status byte, s scsi.Sense) *wire.Reply {
		rep := &wire.Reply{Status: status}
		rep.SetSense(s.Fixed())
		return rep
	}
	tests := []struct {
		name string
		o    Options
		rep  *wire.Reply
		exit int
		want string
	}{
		{"pr-two-paths: reserve conflict", Options{SA: scsi.SAReserve}, &wire.Reply{Status: scsi.StatusReservationConflict}, 24,
			"PR out (Reserve): Reservation conflict\nprpersist failed: Reservation conflict\n"},
		{"pr-two-paths: UA on read reservation", Options{In: true, SA: scsi.SAReadReservation},
			withSense(scsi.StatusCheckCondition, scsi.SenseRegsPreempted), 6,
			"Persistent reservation in:\nFixed format, current; Sense key: Unit Attention\nAdditional sense: Registrations preempted\n" +
				"PR in (Read reservation): Unit attention\nprpersist failed: Unit attention\n"},
		{"illegal request: sense not shown without -v", Options{SA: scsi.SARegisterAndMove}, withSense(scsi.StatusCheckCondition, scsi.SenseInvalidParam), 5,
			"PR out (register and move): bad field in cdb or parameter list (perhaps unsupported service action)\nprpersist failed: Illegal request\n"},
		{"lab: LIO 02/08/00", Options{SA: scsi.SARegisterAndMove}, withSense(scsi.StatusCheckCondition, scsi.Sense{Key: 2, ASC: 8}), 2,
			"PR out (register and move): Device not ready\nprpersist failed: Device not ready\n"},
		{"invalid opcode, verbose: sense shown", Options{In: true, SA: scsi.SAReadKeys, Verbose: 1}, withSense(scsi.StatusCheckCondition, scsi.SenseInvalidOpcode), 9,
			"Persistent reservation in:\nFixed format, current; Sense key: Illegal Request\nAdditional sense: Invalid command operation code\n" +
				"PR in (Read keys): command not supported\n"},
		{"conflict, verbose", Options{SA: scsi.SAReserve, Verbose: 1}, &wire.Reply{Status: scsi.StatusReservationConflict}, 24,
			"PR out (Reserve): Reservation conflict, type: SCSI status\n"},
		{"busy", Options{In: true, SA: scsi.SAReadFullStatus}, &wire.Reply{Status: scsi.StatusBusy}, 26,
			"PR in (Read full status): Busy\nprpersist failed: Busy\n"},
		{"check condition without sense", Options{SA: scsi.SAClear}, &wire.Reply{Status: scsi.StatusCheckCondition}, 99,
			"Persistent reservation out: scsi status: Check Condition\nPR out (Clear): Some other error\nprpersist failed: Some other error\n"},
		{"unknown status", Options{SA: scsi.SAClear}, &wire.Reply{Status: 0x22}, 99,
			"Persistent reservation out: scsi status: Unknown status [0x22]\nPR out (Clear): Some other error\nprpersist failed: Some other error\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &result{reply: tc.rep}
			r.exit, r.sense, r.hasSense = replyCategory(tc.rep)
			if r.exit != tc.exit {
				t.Fatalf("exit %d, want %d", r.exit, tc.exit)
			}
			var out, errw strings.Builder
			report(tc.o, r, &out, &errw)
			if errw.String() != tc.want || out.Len() != 0 {
				t.Fatalf("stderr:\n%s\nwant:\n%s\nstdout %q", errw.String(), tc.want, out.String())
			}
		})
	}
}

func TestJSONPayloadReservation(t *testing.T) {
	for _, tc := range []struct {
		r    scsi.Reservation
		want string
	}{
		{scsi.Reservation{Generation: 1, AdditionalLength: 16, Held: true, Key: 0xfedcba9876543211, Type: 1},
			`{"generation":1,"additional_length":16,"held":true,"key":"0xfedcba9876543211","scope":0,"type":1,"type_name":"Write Exclusive"}`},
		{scsi.Reservation{Generation: 3}, `{"generation":3,"additional_length":0,"held":false,"scope":0,"type":0}`},
	} {
		b, err := json.Marshal(jsonPayload(&tc.r))
		if err != nil || string(b) != tc.want {
			t.Errorf("JSON %s, %v; want %s", b, err, tc.want)
		}
	}
	if jsonPayload(nil) != nil {
		t.Error("nil payload is not nil")
	}
}
