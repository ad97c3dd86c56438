package scsi

import "encoding/binary"

// Operation codes of the two commands the helper protocol carries (SPC-4 §6.15, §6.16).
const (
	OpPersistentReserveIn  = 0x5e
	OpPersistentReserveOut = 0x5f
	OpTestUnitReady        = 0x00
)

// PERSISTENT RESERVE IN service actions (SPC-4 table 166).
const (
	SAReadKeys           = 0x00
	SAReadReservation    = 0x01
	SAReportCapabilities = 0x02
	SAReadFullStatus     = 0x03
)

// PERSISTENT RESERVE OUT service actions (SPC-4 table 177; 08h from SPC-5).
const (
	SARegister                  = 0x00
	SAReserve                   = 0x01
	SARelease                   = 0x02
	SAClear                     = 0x03
	SAPreempt                   = 0x04
	SAPreemptAndAbort           = 0x05
	SARegisterAndIgnoreExisting = 0x06
	SARegisterAndMove           = 0x07
	SAReplaceLostReservation    = 0x08
)

// Persistent reservation types (SPC-4 table 169).
const (
	TypeWriteExclusive         = 0x1
	TypeExclusiveAccess        = 0x3
	TypeWriteExclusiveRegOnly  = 0x5
	TypeExclusiveAccessRegOnly = 0x6
	TypeWriteExclusiveAllRegs  = 0x7
	TypeExclusiveAccessAllRegs = 0x8
)

// CDBLen is the size of the CDB field of a helper request: PR commands are 10-byte
// CDBs, zero padded to 16 by QEMU.
const CDBLen = 16

// TransferLength returns the byte count that frames a PR request on the helper
// socket: BE16 of CDB bytes 7-8, exactly what QEMU's scsi_cdb_xfer computes for
// group-2 (10-byte) opcodes. For PR IN this is the ALLOCATION LENGTH; for PR OUT it
// is the low 16 bits of the 32-bit PARAMETER LIST LENGTH (bytes 5-8), because QEMU
// frames on those two bytes only (docs/pr-helper-protocol.md §2.3).
func TransferLength(cdb []byte) int {
	if len(cdb) < 9 {
		return 0
	}
	return int(binary.BigEndian.Uint16(cdb[7:9]))
}

// ServiceAction returns the 5-bit service action of a PR IN/OUT CDB.
func ServiceAction(cdb []byte) byte {
	if len(cdb) < 2 {
		return 0
	}
	return cdb[1] & 0x1f
}

// PRInCDB builds a PERSISTENT RESERVE IN CDB (SPC-4 §6.15.1), padded to 16 bytes.
func PRInCDB(sa byte, allocLen uint16) [CDBLen]byte {
	var c [CDBLen]byte
	c[0] = OpPersistentReserveIn
	c[1] = sa & 0x1f
	binary.BigEndian.PutUint16(c[7:9], allocLen)
	return c
}

// PROutCDB builds a PERSISTENT RESERVE OUT CDB (SPC-4 §6.16.1), padded to 16 bytes.
// scope and typ share byte 2 (scope in the high nibble).
func PROutCDB(sa, scope, typ byte, paramLen uint32) [CDBLen]byte {
	var c [CDBLen]byte
	c[0] = OpPersistentReserveOut
	c[1] = sa & 0x1f
	c[2] = scope<<4 | typ&0x0f
	binary.BigEndian.PutUint32(c[5:9], paramLen)
	return c
}
