package scsi

import (
	"fmt"
	"testing"
)

// TestCommandName pins every name CommandName gives, the unknown cases
// included: the tables hold whole names since docs/performance.md §3, and the
// logs must read as before.
func TestCommandName(t *testing.T) {
	cases := []struct {
		op, sa byte
		want   string
	}{
		{OpPersistentReserveIn, SAReadKeys, "PR IN READ KEYS"},
		{OpPersistentReserveIn, SAReadReservation, "PR IN READ RESERVATION"},
		{OpPersistentReserveIn, SAReportCapabilities, "PR IN REPORT CAPABILITIES"},
		{OpPersistentReserveIn, SAReadFullStatus, "PR IN READ FULL STATUS"},
		{OpPersistentReserveIn, 0x04, "PR IN sa 0x04"},
		{OpPersistentReserveIn, 0x1f, "PR IN sa 0x1f"},
		{OpPersistentReserveOut, SARegister, "PR OUT REGISTER"},
		{OpPersistentReserveOut, SAReserve, "PR OUT RESERVE"},
		{OpPersistentReserveOut, SARelease, "PR OUT RELEASE"},
		{OpPersistentReserveOut, SAClear, "PR OUT CLEAR"},
		{OpPersistentReserveOut, SAPreempt, "PR OUT PREEMPT"},
		{OpPersistentReserveOut, SAPreemptAndAbort, "PR OUT PREEMPT AND ABORT"},
		{OpPersistentReserveOut, SARegisterAndIgnoreExisting, "PR OUT REGISTER AND IGNORE EXISTING KEY"},
		{OpPersistentReserveOut, SARegisterAndMove, "PR OUT REGISTER AND MOVE"},
		{OpPersistentReserveOut, SAReplaceLostReservation, "PR OUT REPLACE LOST RESERVATION"},
		{OpPersistentReserveOut, 0x09, "PR OUT sa 0x09"},
		{0x12, 0, "opcode 0x12"},
	}
	for _, c := range cases {
		if got := CommandName([]byte{c.op, c.sa}); got != c.want {
			t.Errorf("CommandName(%02x %02x) = %q, want %q", c.op, c.sa, got, c.want)
		}
	}
	if got := CommandName([]byte{OpPersistentReserveIn}); got != "short CDB" {
		t.Errorf("CommandName of 1 byte = %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { CommandName([]byte{OpPersistentReserveOut, SARegister}) }); n != 0 {
		t.Errorf("CommandName of a known command allocates %v times", n)
	}
}

// TestSenseString compares Sense.String (and Append after a prefix) with fmt's "%x/%02x/%02x" for every
// key and a spread of ASC/ASCQ values.
func TestSenseString(t *testing.T) {
	for key := 0; key < 256; key++ {
		for _, a := range []int{0, 1, 0x0f, 0x10, 0x24, 0x2a, 0xa0, 0xff} {
			s := Sense{Key: byte(key), ASC: byte(a), ASCQ: byte(255 - a)}
			want := fmt.Sprintf("%x/%02x/%02x", s.Key, s.ASC, s.ASCQ)
			if got := s.String(); got != want {
				t.Fatalf("Sense%+v.String() = %q, want %q", s, got, want)
			}
			if got := string(s.Append([]byte("x "))); got != "x "+want {
				t.Fatalf("Sense%+v.Append(\"x \") = %q, want %q", s, got, "x "+want)
			}
		}
	}
}
