package scsi

import (
	"bytes"
	"testing"

	"golang.org/x/sys/unix"
)

// TestResultConstructors checks the answers every backend builds through these
// constructors: the status byte, the exact fixed-format sense bytes (SPC-4
// §4.5.3) where there is sense, none where there is not.
func TestResultConstructors(t *testing.T) {
	invalidField := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0, 0, 0, 0, 0}
	ioError := []byte{0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x00, 0x06, 0, 0, 0, 0}
	for _, tc := range []struct {
		name   string
		got    Result
		status byte
		sense  []byte
		str    string
	}{
		{"Good", Good([]byte{1}), StatusGood, nil, "GOOD"},
		{"CheckCondition", CheckCondition(SenseInvalidField), StatusCheckCondition, invalidField, "CHECK CONDITION 5/24/00"},
		{"Conflict", Conflict(), StatusReservationConflict, nil, "RESERVATION CONFLICT"},
		{"Errno EINVAL", Errno(unix.EINVAL), StatusCheckCondition, invalidField, "CHECK CONDITION 5/24/00"},
		{"Errno EBADE", Errno(unix.EBADE), StatusReservationConflict, nil, "RESERVATION CONFLICT"},
		{"Errno EPERM (default)", Errno(unix.EPERM), StatusCheckCondition, ioError, "CHECK CONDITION b/00/06"},
		{"HostStatus DID_BUS_BUSY", HostStatus(HostBusy), StatusBusy, nil, "BUSY"},
		{"HostStatus unknown", HostStatus(0x7f), StatusGood, nil, "GOOD"},
	} {
		if tc.got.Status != tc.status || !bytes.Equal(tc.got.Sense, tc.sense) || tc.got.String() != tc.str {
			t.Errorf("%s = %#x % x %q, want %#x % x %q", tc.name, tc.got.Status, tc.got.Sense, tc.got.String(), tc.status, tc.sense, tc.str)
		}
	}
	if s, ok := CheckCondition(SenseReset).ParseSense(); !ok || s != SenseReset {
		t.Errorf("ParseSense of CheckCondition(SenseReset) = %v, %v", s, ok)
	}
	if _, ok := Good(nil).ParseSense(); ok {
		t.Error("ParseSense of GOOD without sense: ok")
	}
}
