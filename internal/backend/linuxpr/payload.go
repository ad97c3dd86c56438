package linuxpr

import (
	"encoding/binary"
	"math"

	"github.com/prhelper/prhelper/scsi"
)

// readKeysData encodes SCSI READ KEYS parameter data (SPC-4 §6.15.2) for keys,
// the registered keys that fit, when the device has total registrations in all.
// The ADDITIONAL LENGTH counts every registration (8 × total), as a device
// answers whatever the allocation length, so an initiator learns the full count
// from truncated data (libiscsi PrinReadKeys.Truncate checks this); it saturates
// at the largest multiple of 8 a u32 holds.
func readKeysData(generation uint32, keys []uint64, total uint64) []byte {
	b := scsi.Keys{Generation: generation, Keys: keys}.Encode()
	total = max(total, uint64(len(keys)))
	binary.BigEndian.PutUint32(b[4:8], uint32(min(8*total, math.MaxUint32&^7)))
	return b
}

// readReservationData encodes SCSI READ RESERVATION parameter data (SPC-4
// §6.15.3): 8 bytes when !held, else 24 bytes with key, scope LU (the only
// scope the ioctls and NVMe know) and scsiType. For the all-registrants types
// the key is 0 whatever the device said (SPC-4 §5.7.10; LIO, SCST and libiscsi
// agree). A reservation whose type the kernel could not name is reported with
// type 0 rather than hidden.
func readReservationData(generation uint32, held bool, key uint64, scsiType byte) []byte {
	if scsiType == scsi.TypeWriteExclusiveAllRegs || scsiType == scsi.TypeExclusiveAccessAllRegs {
		key = 0
	}
	return scsi.Reservation{Generation: generation, Held: held, Key: key, Type: scsiType}.Encode()
}

// capabilitiesData is the REPORT CAPABILITIES parameter data (SPC-4 §6.15.4)
// this backend answers for every device, since no ioctl asks the device. Each
// bit states what the ioctl path can do, not what the device could do through
// SG_IO (doc.go explains each):
//
//   - RLR_C 0: REPLACE LOST RESERVATION has no ioctl.
//   - CRH 0: the path says nothing about SPC-2 RESERVE/RELEASE; the helper
//     never sees those commands.
//   - SIP_C 0, ATP_C 0: struct pr_registration has no SPEC_I_PT or ALL_TG_PT.
//   - PTPL_C 1, PTPL_A 1: sd sets APTPL on every REGISTER and nvme sets CPTPL
//     to persist, so every registration made through this path persists.
//   - TMV 1 with the six types enum pr_type can carry.
//   - ALLOW COMMANDS 000b: no information.
func capabilitiesData() []byte {
	return scsi.Capabilities{
		PTPLC: true,
		PTPLA: true,
		TMV:   true,
		TypeMask: scsi.MaskWriteExclusive | scsi.MaskExclusiveAccess |
			scsi.MaskWriteExclusiveRegOnly | scsi.MaskExclusiveAccessRegOnly |
			scsi.MaskWriteExclusiveAllRegs | scsi.MaskExclusiveAccessAllRegs,
	}.Encode()
}
