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
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Info{}, fmt.Errorf("fstat fd %d: %w", fd, err)
	}
	info, err := classify(fileStat{mode: st.Mode, dev: st.Dev, rdev: st.Rdev, ino: st.Ino}, sys)
	if err != nil {
		return info, fmt.Errorf("classify fd %d: %w", fd, err)
	}
	return info, nil
}
