package device

import (
	"errors"
	"fmt"
)

// ErrNoIdentity is returned by Info.Key when the device reports no identifier
// that is stable across hosts.
var ErrNoIdentity = errors.New("no stable logical-unit identity")

// Info is what Classify found out about one descriptor.
type Info struct {
	Kind Kind
	// Char is true for character devices (sg, ng), false for block devices.
	Char bool
	// Major and Minor are the device number of the node (st_rdev) for devices,
	// and of the filesystem holding the file (st_dev) for regular files.
	Major, Minor uint32
	// Inode is the inode number of a regular file, 0 otherwise.
	Inode uint64
	// SysPath is the device's directory under <sysfs>/devices, symlinks
	// resolved; empty for regular files and for devices sysfs does not list.
	SysPath string
	// Name is the kernel name of the node: sda, sg0, dm-0, nvme0n1, ng0n1, sda1.
	Name string
	// Disk is the whole-disk block device of the same LU: for sg the sd bound to
	// the same SCSI device ("" if none, e.g. a tape), for ng the nvmeXnY, for a
	// partition its parent disk, otherwise Name.
	Disk string
	// DMName and DMUUID are dm/name and dm/uuid of a device-mapper device.
	DMName, DMUUID string
	// Slaves lists the block devices under a dm device (/sys/block/dm-N/slaves):
	// the paths of a multipath map.
	Slaves []string
	// ID is the identity the device itself reports, the same on every host that
	// sees the LU through the same kind of node:
	//   - SCSI (sd, sg): the kernel's wwid attribute ("naa.6001405…",
	//     "eui.…", "t10.LIO-ORG …", or a SCSI name string), or the same string
	//     built from vpd_pg83 when wwid is absent (LunID);
	//   - dm: dm/uuid ("mpath-36001405…", "LVM-…", "part1-mpath-…");
	//   - NVMe: the wwid attribute ("eui.…", "uuid.…", "nvme.…");
	//   - regular file: FileID ("file:<maj>:<min>:<inode>"), host-local.
	// Empty when the device reports nothing usable.
	ID string
	// LUID is the logical-unit identity in the kernel's wwid form, equal for
	// every view of one LU (sd, sg, the multipath map over them): ID for SCSI,
	// NVMe and files, MultipathLUID(DMUUID) for multipath maps, empty for other
	// dm devices and partitions, and whenever the form cannot be derived.
	LUID string
}

// Key returns the identifier emulated reservation state should be kept under:
// LUID when known, else ID. It fails with ErrNoIdentity rather than return an
// empty key, which would merge the state of unrelated LUs.
func (i Info) Key() (string, error) {
	if i.LUID != "" {
		return i.LUID, nil
	}
	if i.ID != "" {
		return i.ID, nil
	}
	return "", fmt.Errorf("%s %s (%d:%d): %w", i.Kind, i.describe(), i.Major, i.Minor, ErrNoIdentity)
}

func (i Info) describe() string {
	if i.Name != "" {
		return i.Name
	}
	if i.Kind == RegularFile {
		return fmt.Sprintf("inode %d", i.Inode)
	}
	return "device"
}

// String summarises the Info for logs.
func (i Info) String() string {
	s := fmt.Sprintf("%s %d:%d", i.Kind, i.Major, i.Minor)
	if i.Name != "" {
		s += " " + i.Name
	}
	if i.Disk != "" && i.Disk != i.Name {
		s += " disk=" + i.Disk
	}
	if i.ID != "" {
		s += " id=" + i.ID
	}
	if i.LUID != "" && i.LUID != i.ID {
		s += " lu=" + i.LUID
	}
	return s
}

// FileID builds the fallback identity of a regular file from the device number
// of its filesystem, its inode and its birth time (nanoseconds since the epoch):
// "file:<major>:<minor>:<inode>:<seconds>.<nanoseconds>". The birth time tells
// apart a new file that got a deleted one's inode number (issue 12: it
// inherited the old image's reservations); birth 0 (a filesystem without
// statx btime) leaves it out: "file:<major>:<minor>:<inode>". It names the
// file on this host only (another host mounting the same share sees another
// st_dev), so a daemon that shares emulated state between hosts must take the
// id of an image from its configuration instead.
func FileID(major, minor uint32, inode uint64, birth int64) string {
	if birth == 0 {
		return fmt.Sprintf("file:%d:%d:%d", major, minor, inode)
	}
	return fmt.Sprintf("file:%d:%d:%d:%d.%09d", major, minor, inode, birth/1e9, birth%1e9)
}
