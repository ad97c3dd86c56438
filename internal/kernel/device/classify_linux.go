package device

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Classify tells what fd refers to and which logical unit it reaches, from
// fstat(2) and the sysfs tree sys (the zero Sysfs is /sys). It issues no SCSI
// command and no ioctl: unlike qemu-pr-helper's DM_TABLE_STATUS probe
// (docs/pr-helper-protocol.md §4.11), it needs no CAP_SYS_ADMIN, and an fstat failure is
// an error for this request, not the end of the process.
func Classify(fd int, sys Sysfs) (Info, error) {
	st, err := statFD(fd)
	if err != nil {
		return Info{}, err
	}
	info, err := classify(st, sys)
	if err != nil {
		return info, fmt.Errorf("classify fd %d: %w", fd, err)
	}
	return info, nil
}

// statFD is statx(2) of fd (AT_EMPTY_PATH, any kind of descriptor, O_PATH
// included) with the birth time when the filesystem reports it.
func statFD(fd int) (fileStat, error) {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_SYNC_AS_STAT,
		unix.STATX_BASIC_STATS|unix.STATX_BTIME, &stx); err != nil {
		return fileStat{}, fmt.Errorf("statx fd %d: %w", fd, err)
	}
	st := fileStat{
		mode: uint32(stx.Mode),
		dev:  unix.Mkdev(stx.Dev_major, stx.Dev_minor),
		rdev: unix.Mkdev(stx.Rdev_major, stx.Rdev_minor),
		ino:  stx.Ino,
	}
	if stx.Mask&unix.STATX_BTIME != 0 {
		st.birth = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	return st, nil
}
