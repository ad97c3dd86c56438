package scsi

import (
	"encoding/hex"
	"fmt"
	"strconv"
)

// SAM-5 status codes (SAM-5 §5.3.1), as used in the helper protocol's status field.
const (
	StatusGood                = 0x00
	StatusCheckCondition      = 0x02
	StatusConditionMet        = 0x04
	StatusBusy                = 0x08
	StatusReservationConflict = 0x18
	StatusTaskSetFull         = 0x28
	StatusACAActive           = 0x30
	StatusTaskAborted         = 0x40
)

// StatusName returns the SAM name of a status byte, for logs and the CLI.
func StatusName(s byte) string {
	switch s {
	case StatusGood:
		return "GOOD"
	case StatusCheckCondition:
		return "CHECK CONDITION"
	case StatusConditionMet:
		return "CONDITION MET"
	case StatusBusy:
		return "BUSY"
	case StatusReservationConflict:
		return "RESERVATION CONFLICT"
	case StatusTaskSetFull:
		return "TASK SET FULL"
	case StatusACAActive:
		return "ACA ACTIVE"
	case StatusTaskAborted:
		return "TASK ABORTED"
	}
	return fmt.Sprintf("status 0x%02x", s)
}

// Sense keys (SPC-4 §4.5.6, table 48).
const (
	KeyNoSense        = 0x0
	KeyRecoveredError = 0x1
	KeyNotReady       = 0x2
	KeyMediumError    = 0x3
	KeyHardwareError  = 0x4
	KeyIllegalRequest = 0x5
	KeyUnitAttention  = 0x6
	KeyDataProtect    = 0x7
	KeyBlankCheck     = 0x8
	KeyCopyAborted    = 0xA
	KeyAbortedCommand = 0xB
	KeyVolumeOverflow = 0xD
	KeyMiscompare     = 0xE
)

// Sense is a sense key with its additional sense code and qualifier: the part of
// sense data that tells what went wrong.
type Sense struct {
	Key  byte
	ASC  byte
	ASCQ byte
}

// The sense codes prhelper itself produces. Names follow QEMU's include/scsi/utils.h
// so that the errno and host-status tables read like the reference.
var (
	SenseNoSense           = Sense{KeyNoSense, 0x00, 0x00}
	SenseNotReady          = Sense{KeyNotReady, 0x04, 0x00}
	SenseNoMedium          = Sense{KeyNotReady, 0x3a, 0x00}
	SenseReadError         = Sense{KeyMediumError, 0x11, 0x00}
	SenseTargetFailure     = Sense{KeyHardwareError, 0x44, 0x00}
	SenseInvalidOpcode     = Sense{KeyIllegalRequest, 0x20, 0x00}
	SenseInvalidField      = Sense{KeyIllegalRequest, 0x24, 0x00}
	SenseInvalidParam      = Sense{KeyIllegalRequest, 0x26, 0x00}
	SenseInvalidParamLen   = Sense{KeyIllegalRequest, 0x1a, 0x00}
	SenseSpaceAllocFailed  = Sense{KeyDataProtect, 0x27, 0x07}
	SenseIOError           = Sense{KeyAbortedCommand, 0x00, 0x06}
	SenseLUNNotResponding  = Sense{KeyAbortedCommand, 0x05, 0x00}
	SenseCommandTimeout    = Sense{KeyAbortedCommand, 0x2e, 0x02}
	SenseLUNCommFailure    = Sense{KeyAbortedCommand, 0x08, 0x00}
	SenseCommandAborted    = Sense{KeyAbortedCommand, 0x2f, 0x02}
	SenseITNexusLoss       = Sense{KeyAbortedCommand, 0x29, 0x07}
	SenseReset             = Sense{KeyUnitAttention, 0x29, 0x00}
	SenseSCSIBusReset      = Sense{KeyUnitAttention, 0x29, 0x02}
	SenseRegsPreempted     = Sense{KeyUnitAttention, 0x2a, 0x05}
	SenseReservationsFreed = Sense{KeyUnitAttention, 0x2a, 0x04}
)

// FixedSenseLen is the length of the fixed-format sense data prhelper builds:
// response code, key, additional length 10, ASC/ASCQ (SPC-4 §4.5.3).
const FixedSenseLen = 18

// Fixed encodes s as 18 bytes of current, fixed-format sense data
// (SPC-4 §4.5.3): byte 0 = 70h, byte 2 = key, byte 7 = 10, bytes 12-13 = ASC/ASCQ.
// These are exactly the bytes QEMU's scsi_build_sense writes.
func (s Sense) Fixed() []byte {
	b := make([]byte, FixedSenseLen)
	b[0] = 0x70
	b[2] = s.Key & 0x0f
	b[7] = FixedSenseLen - 8
	b[12] = s.ASC
	b[13] = s.ASCQ
	return b
}

func (s Sense) String() string { return string(s.Append(make([]byte, 0, 8))) }

// Append appends s as String writes it, "key/ASC/ASCQ" in hexadecimal
// (5/24/00), to b: fmt's "%x/%02x/%02x" without fmt, and without a string
// for a caller that only builds a key (the server names the sense of every
// failed request, and formatting was a measurable share of its work:
// docs/performance.md §2.2).
func (s Sense) Append(b []byte) []byte {
	b = strconv.AppendUint(b, uint64(s.Key), 16)
	b = hex.AppendEncode(append(b, '/'), []byte{s.ASC})
	return hex.AppendEncode(append(b, '/'), []byte{s.ASCQ})
}

// ParseSense extracts key, ASC and ASCQ from fixed (70h/71h) or descriptor
// (72h/73h) format sense data (SPC-4 §4.5.2, §4.5.3). ok is false when b is too
// short or has an unknown response code.
func ParseSense(b []byte) (s Sense, ok bool) {
	if len(b) < 1 {
		return Sense{}, false
	}
	switch b[0] & 0x7f {
	case 0x70, 0x71:
		if len(b) < 3 {
			return Sense{}, false
		}
		s.Key = b[2] & 0x0f
		if len(b) >= 14 {
			s.ASC, s.ASCQ = b[12], b[13]
		}
		return s, true
	case 0x72, 0x73:
		if len(b) < 4 {
			return Sense{}, false
		}
		return Sense{Key: b[1] & 0x0f, ASC: b[2], ASCQ: b[3]}, true
	}
	return Sense{}, false
}
