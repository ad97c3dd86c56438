package blkpr

// The enum pr_type values. NVMe reservation types use the same numbers.
const (
	PR_WRITE_EXCLUSIVE           = 1
	PR_EXCLUSIVE_ACCESS          = 2
	PR_WRITE_EXCLUSIVE_REG_ONLY  = 3
	PR_EXCLUSIVE_ACCESS_REG_ONLY = 4
	PR_WRITE_EXCLUSIVE_ALL_REGS  = 5
	PR_EXCLUSIVE_ACCESS_ALL_REGS = 6
)

// scsiTypes is enum pr_type (index) → SCSI PERSISTENT RESERVATION TYPE, the
// mapping of the kernel's block_pr_type_to_scsi (include/scsi/scsi_block_pr.h).
var scsiTypes = [...]byte{0, 0x1, 0x3, 0x5, 0x6, 0x7, 0x8}

// ToSCSIType maps an enum pr_type value (also an NVMe RTYPE) to the SCSI type
// code; ok is false for 0 and unknown values.
func ToSCSIType(prType uint32) (scsiType byte, ok bool) {
	if prType == 0 || prType >= uint32(len(scsiTypes)) {
		return 0, false
	}
	return scsiTypes[prType], true
}

// FromSCSIType maps a SCSI type code to enum pr_type; ok is false for the
// obsolete and reserved codes, which the ioctls cannot carry.
func FromSCSIType(scsiType byte) (prType uint32, ok bool) {
	for i, s := range scsiTypes {
		if i > 0 && s == scsiType {
			return uint32(i), true
		}
	}
	return 0, false
}
