package device

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/prhelper/prhelper/internal/kernel/dm"
)

// PathName returns the kernel name of the block device d ("sdb", "nvme0n1"):
// the last element of the target of the link <sysfs>/dev/block/<major>:<minor>,
// which the block layer points at the disk's directory under /sys/devices.
// The link is read, not followed, so a name is found even where the device's
// directory is being torn down.
func PathName(sys Sysfs, d dm.Dev) (string, error) {
	link := filepath.Join(sys.root(), "dev", "block", d.String())
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("name of block device %s: %w", d, err)
	}
	name := filepath.Base(target)
	if !validName(name) {
		return "", fmt.Errorf("name of block device %s: link %s points at %q", d, link, target)
	}
	return name, nil
}

// maxStateLen bounds the read of a state attribute (a sysfs page at most;
// the longest SCSI state, "transport-offline", is 17 bytes).
const maxStateLen = 4096

// PathState returns the state of the device under the block device name:
// <sysfs>/block/<name>/device/state, without its newline. For a SCSI disk
// that is the SCSI device state of drivers/scsi/scsi_sysfs.c ("running",
// "offline", "transport-offline", "blocked", "quiesce", "created",
// "cancel", "deleted", "created-blocked"); for an NVMe namespace it is the
// controller's state ("live", "connecting", ...). A device without the
// attribute gives an error wrapping fs.ErrNotExist.
func PathState(sys Sysfs, name string) (string, error) {
	if !validName(name) {
		return "", fmt.Errorf("state of block device %q: not a device name", name)
	}
	p := filepath.Join(sys.root(), "block", name, "device", "state")
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("state of %s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateLen))
	if err != nil {
		return "", fmt.Errorf("state of %s: read %s: %w", name, p, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// validName reports whether name can be one element of a sysfs path.
func validName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\x00")
}
