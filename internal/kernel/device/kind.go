package device

import "strconv"

// Kind says what sort of file a descriptor refers to, as far as persistent
// reservations care.
type Kind int

// The kinds Classify distinguishes.
const (
	// Other is anything below: a character device that is not sg or ng, a pipe,
	// a socket, a directory, a block device no PR path can serve (loop, sr,
	// virtio-blk, rbd …).
	Other Kind = iota
	// RegularFile is a disk image; only the software emulation can serve it.
	RegularFile
	// SCSIDisk is an sd block device (sysfs: a scsi_disk class device under its
	// SCSI device).
	SCSIDisk
	// SCSIGeneric is an sg character device: /sys/dev/char/M:m resolves to
	// .../<H:C:T:L>/scsi_generic/sgN.
	SCSIGeneric
	// DMMultipath is a device-mapper device whose dm/uuid starts with "mpath-",
	// the prefix multipathd gives its maps.
	DMMultipath
	// DM is any other device-mapper device (linear, crypt, kpartx partitions of
	// a map, LVM).
	DM
	// NVMeNamespace is an NVMe namespace: the block device nvmeXnY or its
	// nvme-generic character device ngXnY (Info.Char tells which).
	NVMeNamespace
	// Partition is a block device with a "partition" attribute in sysfs. The
	// kernel refuses IOC_PR_* on partitions even for root (blkdev_pr_allowed),
	// and a reservation on part of a LU has no meaning in SPC-4.
	Partition
)

// String returns the short name used in logs and configuration.
func (k Kind) String() string {
	switch k {
	case Other:
		return "other"
	case RegularFile:
		return "file"
	case SCSIDisk:
		return "scsi-disk"
	case SCSIGeneric:
		return "scsi-generic"
	case DMMultipath:
		return "dm-multipath"
	case DM:
		return "dm"
	case NVMeNamespace:
		return "nvme"
	case Partition:
		return "partition"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}
