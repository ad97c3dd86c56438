package dm

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device mapper's control node (DM_DIR "/" DM_CONTROL_NODE
// under /dev).
const ControlPath = "/dev/mapper/control"

// IoctlFunc issues ioctl(fd, req, &arg[0]) and returns the errno as an
// error (nil on success). Tests replace it to play the kernel: they read the
// request from arg and write the reply into it.
type IoctlFunc func(fd int, req uint, arg []byte) error

// Control is an open device-mapper control node. Version, TableStatus and
// MultipathPaths may be called from several goroutines at once (every call
// has its own buffer); Close must come after the last of them.
type Control struct {
	fd    int
	ioctl IoctlFunc
}

// Open opens the control node at path (normally ControlPath) read-write, as
// the dm ioctls require, close-on-exec.
func Open(path string) (*Control, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Control{fd: fd, ioctl: sysIoctl}, nil
}

// NewControl wraps an already open control fd, which Close will close. A nil
// ioctl means the real ioctl(2); tests pass a fake and fd -1.
func NewControl(fd int, ioctl IoctlFunc) *Control {
	if ioctl == nil {
		ioctl = sysIoctl
	}
	return &Control{fd: fd, ioctl: ioctl}
}

// Close closes the control node.
func (c *Control) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	if err != nil {
		return fmt.Errorf("close %s: %w", ControlPath, err)
	}
	return nil
}

// sysIoctl is the real ioctl(2), retried on EINTR.
func sysIoctl(fd int, req uint, arg []byte) error {
	if len(arg) == 0 {
		return unix.EINVAL
	}
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&arg[0])))
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// Version returns the kernel's dm ioctl interface version (DM_VERSION). It is
// a cheap way to learn whether the process may use the control node at all:
// without CAP_SYS_ADMIN it fails with EACCES.
func (c *Control) Version() ([3]uint32, error) {
	buf, err := encodeRequest(headerSize, 0, 0)
	if err != nil {
		return [3]uint32{}, err
	}
	if err := c.ioctl(c.fd, ioctlVersion, buf); err != nil {
		return [3]uint32{}, fmt.Errorf("DM_VERSION: %w", err)
	}
	h, err := decodeHeader(buf)
	if err != nil {
		return [3]uint32{}, fmt.Errorf("DM_VERSION: %w", err)
	}
	return h.Version, nil
}

// TableStatus issues DM_TABLE_STATUS for the dm device dev and returns the
// targets of its active table: with table true each Target's Params is the
// table line (DM_STATUS_TABLE_FLAG), else the status line. The device is
// named by number only, as qemu-pr-helper does, with DM_NOFLUSH_FLAG. When
// the kernel sets DM_BUFFER_FULL_FLAG the call is repeated with a buffer twice
// as large, up to 4 MiB. A device that is not a dm device fails with ENXIO
// (errors.Is(err, unix.ENXIO)); a device without an active table gives no
// targets and no error.
func (c *Control) TableStatus(dev Dev, table bool) ([]Target, error) {
	if dev.Major > 0xfff || dev.Minor > 0xfffff {
		return nil, fmt.Errorf("DM_TABLE_STATUS %s: device number out of the kernel's 12:20 bit range", dev)
	}
	flags := uint32(flagNoFlush)
	what := "status"
	if table {
		flags |= flagStatusTable
		what = "table"
	}
	for size := initialBufSize; ; size *= 2 {
		buf, err := encodeRequest(size, dev.Encode(), flags)
		if err != nil {
			return nil, fmt.Errorf("DM_TABLE_STATUS %s (%s): %w", dev, what, err)
		}
		if err := c.ioctl(c.fd, ioctlTableStatus, buf); err != nil {
			return nil, fmt.Errorf("DM_TABLE_STATUS %s (%s): %w", dev, what, err)
		}
		h, err := decodeHeader(buf)
		if err != nil {
			return nil, fmt.Errorf("DM_TABLE_STATUS %s (%s): %w", dev, what, err)
		}
		if h.Flags&flagBufferFull != 0 {
			if size*2 > maxBufSize {
				return nil, fmt.Errorf("DM_TABLE_STATUS %s (%s): reply does not fit in %d bytes", dev, what, size)
			}
			continue
		}
		targets, err := decodeTargets(buf, h)
		if err != nil {
			return nil, fmt.Errorf("DM_TABLE_STATUS %s (%s): %w", dev, what, err)
		}
		return targets, nil
	}
}

// ErrNotMultipath is returned by MultipathPaths for a dm device whose table is
// not a multipath map.
var ErrNotMultipath = errors.New("not a dm-multipath map")

// mpathAttempts bounds how often MultipathPaths re-reads a map whose table and
// status disagree, which happens when multipathd reloads the map between the
// two ioctls.
const mpathAttempts = 3

// MultipathPaths returns every path of the dm-multipath map dev, failed ones
// included, in table order, with the kernel's view of each (MergePaths). It
// reads the table and then the status; when they do not describe the same
// paths (the map was reloaded in between) it reads both again, up to three
// times. A dm device that is not a multipath map gives ErrNotMultipath.
func (c *Control) MultipathPaths(dev Dev) ([]Path, error) {
	var last error
	for range mpathAttempts {
		tt, err := c.TableStatus(dev, true)
		if err != nil {
			return nil, err
		}
		tbl, err := multipathParams(dev, tt)
		if err != nil {
			return nil, err
		}
		st, err := c.TableStatus(dev, false)
		if err != nil {
			return nil, err
		}
		sts, err := multipathParams(dev, st)
		if err != nil {
			return nil, err
		}
		t, err := ParseMultipathTable(tbl)
		if err != nil {
			return nil, fmt.Errorf("map %s: table: %w", dev, err)
		}
		s, err := ParseMultipathStatus(sts)
		if err != nil {
			return nil, fmt.Errorf("map %s: status: %w", dev, err)
		}
		paths, err := MergePaths(t, s)
		if err == nil {
			return paths, nil
		}
		last = err
		if !errors.Is(err, ErrMismatch) {
			break
		}
	}
	return nil, fmt.Errorf("map %s: %w", dev, last)
}

// multipathParams returns the parameters of a multipath map's only target.
func multipathParams(dev Dev, targets []Target) (string, error) {
	if !IsMultipath(targets) {
		if len(targets) == 0 {
			return "", fmt.Errorf("dm device %s has no active table: %w", dev, ErrNotMultipath)
		}
		return "", fmt.Errorf("dm device %s has a %q target: %w", dev, targets[0].Type, ErrNotMultipath)
	}
	if len(targets) != 1 {
		return "", fmt.Errorf("%w: multipath map %s has %d targets, the target is a singleton", ErrMalformed, dev, len(targets))
	}
	return targets[0].Params, nil
}
