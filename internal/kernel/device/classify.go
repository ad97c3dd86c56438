package device

import (
	"fmt"
	"path/filepath"
	"strings"
)

// fileStat is the part of a fstat(2) result classification needs; keeping it
// separate from unix.Stat_t keeps the classification pure and testable.
type fileStat struct {
	mode uint32 // st_mode: type bits S_IFMT and permissions
	dev  uint64 // st_dev, Linux dev_t encoding
	rdev uint64 // st_rdev
	ino  uint64
	// birth is the file's birth time (statx STATX_BTIME) in nanoseconds since
	// the epoch; 0 when the filesystem does not report it.
	birth int64
}

// File type bits of st_mode (<sys/stat.h>), spelled out so the pure code does
// not depend on a platform's syscall package.
const (
	modeType = 0o170000
	modeReg  = 0o100000
	modeBlk  = 0o060000
	modeChr  = 0o020000
)

// devMajor and devMinor decode a Linux dev_t as glibc's gnu_dev_major/minor do
// (the "huge" encoding: 12+20 bits in the low word, the rest above).
func devMajor(d uint64) uint32 { return uint32((d>>8)&0xfff | (d>>32)&^0xfff) }
func devMinor(d uint64) uint32 { return uint32(d&0xff | (d>>12)&^0xff) }

// classify is Classify after the fstat.
func classify(st fileStat, sys Sysfs) (Info, error) {
	switch st.mode & modeType {
	case modeReg:
		maj, min := devMajor(st.dev), devMinor(st.dev)
		id := FileID(maj, min, st.ino, st.birth)
		return Info{Kind: RegularFile, Major: maj, Minor: min, Inode: st.ino, ID: id, LUID: id}, nil
	case modeBlk:
		info := Info{Major: devMajor(st.rdev), Minor: devMinor(st.rdev)}
		p, err := sys.resolve("block", info.Major, info.Minor)
		if err != nil {
			return info, fmt.Errorf("block device %d:%d: %w", info.Major, info.Minor, err)
		}
		if err := classifyBlock(&info, p, sys); err != nil {
			return info, fmt.Errorf("block device %d:%d (%s): %w", info.Major, info.Minor, info.Name, err)
		}
		return info, nil
	case modeChr:
		info := Info{Char: true, Major: devMajor(st.rdev), Minor: devMinor(st.rdev)}
		p, err := sys.resolve("char", info.Major, info.Minor)
		if err != nil {
			return info, fmt.Errorf("character device %d:%d: %w", info.Major, info.Minor, err)
		}
		if err := classifyChar(&info, p, sys); err != nil {
			return info, fmt.Errorf("character device %d:%d (%s): %w", info.Major, info.Minor, info.Name, err)
		}
		return info, nil
	}
	return Info{Kind: Other}, nil
}

// classifyBlock fills info for the block device whose sysfs directory is p.
// The order matters: a partition of an sd or nvme disk is a Partition first.
func classifyBlock(info *Info, p string, sys Sysfs) error {
	info.SysPath = p
	info.Name = filepath.Base(p)
	info.Disk = info.Name
	switch {
	case exists(filepath.Join(p, "partition")):
		// block/partitions/core.c puts a partition's directory inside its
		// disk's: .../block/sda/sda1.
		info.Kind = Partition
		info.Disk = filepath.Base(filepath.Dir(p))
		return nil
	case exists(filepath.Join(p, "dm")):
		return fillDM(info, p)
	case isNVMeNamespaceName(info.Name):
		info.Kind = NVMeNamespace
		return fillNVMe(info, p)
	case exists(filepath.Join(p, "device", "scsi_disk")):
		// sd registers a scsi_disk class device under its SCSI device; sr, st
		// and friends do not, so this is sd and nothing else.
		info.Kind = SCSIDisk
		return fillSCSI(info, filepath.Join(p, "device"))
	}
	info.Kind = Other
	return nil
}

// classifyChar fills info for the character device whose sysfs directory is p.
func classifyChar(info *Info, p string, sys Sysfs) error {
	info.SysPath = p
	info.Name = filepath.Base(p)
	switch {
	case filepath.Base(filepath.Dir(p)) == "scsi_generic":
		// drivers/scsi/sg.c creates sgN as a class device of the SCSI device:
		// .../H:C:T:L/scsi_generic/sgN.
		info.Kind = SCSIGeneric
		dev := filepath.Dir(filepath.Dir(p))
		disks, err := listDir(filepath.Join(dev, "block"))
		if err != nil {
			return err
		}
		if len(disks) > 0 {
			info.Disk = disks[0]
		}
		return fillSCSI(info, dev)
	case isNVMeGenericName(info.Name):
		// The nvme-generic node ngXnY carries no identity attributes of its
		// own; the namespace's block device nvmeXnY (same X and Y, drivers/
		// nvme/host/core.c nvme_add_ns_cdev) has them.
		info.Kind = NVMeNamespace
		info.Disk = "nvme" + strings.TrimPrefix(info.Name, "ng")
		return fillNVMe(info, sys.path("block", info.Disk))
	}
	info.Kind = Other
	return nil
}
