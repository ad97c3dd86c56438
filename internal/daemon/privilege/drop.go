package privilege

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Cap is a Linux capability number (linux/capability.h).
type Cap uint

// The capabilities the daemon keeps, as in qemu-pr-helper's drop_privileges.
const (
	// CapSysRawio lets SG_IO send PERSISTENT RESERVE IN/OUT, which are not on the
	// kernel's unprivileged SCSI command allow-list.
	CapSysRawio Cap = unix.CAP_SYS_RAWIO
	// CapSysAdmin is kept by multipath builds for /dev/mapper/control ioctls.
	CapSysAdmin Cap = unix.CAP_SYS_ADMIN
	// CapKill lets --fence=kill signal QEMU processes of other users.
	CapKill Cap = unix.CAP_KILL
	// CapSysPtrace lets the peer identity policy read /proc/PID/exe of a QEMU
	// process of another user (docs/security.md §3).
	CapSysPtrace Cap = unix.CAP_SYS_PTRACE
)

// String returns the kernel name of the well-known capabilities, else "cap_N".
func (c Cap) String() string {
	switch c {
	case CapSysRawio:
		return "cap_sys_rawio"
	case CapSysAdmin:
		return "cap_sys_admin"
	case CapKill:
		return "cap_kill"
	case CapSysPtrace:
		return "cap_sys_ptrace"
	}
	return "cap_" + strconv.Itoa(int(c))
}

// ErrNeedsNoCgo is returned (wrapped) by Drop in a binary that links cgo, where the
// Go runtime cannot change per-thread state on every thread. Test with errors.Is.
const ErrNeedsNoCgo = constError("privilege drop needs a CGO_ENABLED=0 build")

// constError is a string error so that sentinel errors can be constants.
type constError string

func (e constError) Error() string { return string(e) }

// Drop leaves the process with only the keep capabilities, as qemu-pr-helper's
// capng_clear + capng_update + capng_change_id(uid, gid, CAPNG_DROP_SUPP_GRP |
// CAPNG_CLEAR_BOUNDING) do. On every thread, in this order:
//
//  1. every capability not in keep (0..cap_last_cap) leaves the bounding set
//     (prctl PR_CAPBSET_DROP; needs CAP_SETPCAP, so before anything else);
//  2. the ambient set is cleared (PR_CAP_AMBIENT_CLEAR_ALL);
//  3. PR_SET_KEEPCAPS is set so the permitted set survives the uid change;
//  4. the supplementary groups are dropped, then setgid(gid) and setuid(uid) when
//     they are not -1 (syscall.Setgroups/Setgid/Setuid act on all threads);
//  5. capset: effective = permitted = keep, inheritable = 0;
//  6. PR_SET_KEEPCAPS is cleared again.
//
// Drop must run as root (or with CAP_SETPCAP, CAP_SETUID, CAP_SETGID and the keep
// capabilities). It fails with ErrNeedsNoCgo, before changing anything, in a
// binary that links cgo. A failure part way leaves the process partly dropped;
// the caller is expected to exit, as qemu-pr-helper does.
func Drop(keep []Cap, uid, gid int) error {
	if err := checkAllThreads(); err != nil {
		return err
	}
	last, err := readCapLastCap()
	if err != nil {
		return err
	}
	var mask uint64
	for _, c := range keep {
		if uint64(c) > uint64(last) {
			return fmt.Errorf("drop privileges: capability %d is beyond cap_last_cap %d", c, last)
		}
		mask |= 1 << c
	}

	for c := 0; c <= last; c++ {
		if mask&(1<<c) != 0 {
			continue
		}
		if err := allThreadsPrctl(unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return fmt.Errorf("drop privileges: drop %s from the bounding set: %w", Cap(c), err)
		}
	}
	// EINVAL: a kernel before 4.3 has no ambient set, so there is nothing to clear.
	if err := allThreadsPrctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("drop privileges: clear ambient capabilities: %w", err)
	}
	if err := allThreadsPrctl(unix.PR_SET_KEEPCAPS, 1, 0); err != nil {
		return fmt.Errorf("drop privileges: set keepcaps: %w", err)
	}
	if err := syscall.Setgroups(nil); err != nil {
		return fmt.Errorf("drop privileges: drop supplementary groups: %w", err)
	}
	if gid != -1 {
		if err := syscall.Setgid(gid); err != nil {
			return fmt.Errorf("drop privileges: setgid %d: %w", gid, err)
		}
	}
	if uid != -1 {
		if err := syscall.Setuid(uid); err != nil {
			return fmt.Errorf("drop privileges: setuid %d: %w", uid, err)
		}
	}
	if err := allThreadsCapset(mask); err != nil {
		return fmt.Errorf("drop privileges: capset keeping %s: %w", capList(keep), err)
	}
	if err := allThreadsPrctl(unix.PR_SET_KEEPCAPS, 0, 0); err != nil {
		return fmt.Errorf("drop privileges: clear keepcaps: %w", err)
	}
	return nil
}

// checkAllThreads probes syscall.AllThreadsSyscall with a read-only prctl so that
// Drop fails before changing anything when the binary links cgo.
func checkAllThreads() error {
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_PRCTL, unix.PR_GET_KEEPCAPS, 0, 0)
	if errno == syscall.ENOTSUP {
		return fmt.Errorf("drop privileges: %w (this binary links cgo, so Go cannot change capabilities on every thread)", ErrNeedsNoCgo)
	}
	if errno != 0 {
		return fmt.Errorf("drop privileges: prctl PR_GET_KEEPCAPS: %w", errno)
	}
	return nil
}

func allThreadsPrctl(option, arg2, arg3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, option, arg2, arg3, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// allThreadsCapset sets effective = permitted = mask and inheritable = 0 on every
// thread with capset(2), version 3 (two 32-bit data words, linux/capability.h).
// Header pid 0 means the calling thread, which is each thread in turn.
func allThreadsCapset(mask uint64) error {
	hdr := &unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := &[2]unix.CapUserData{
		{Effective: uint32(mask), Permitted: uint32(mask)},
		{Effective: uint32(mask >> 32), Permitted: uint32(mask >> 32)},
	}
	_, _, errno := syscall.AllThreadsSyscall(unix.SYS_CAPSET, uintptr(unsafe.Pointer(hdr)), uintptr(unsafe.Pointer(data)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// readCapLastCap reads the highest capability the running kernel knows, which may
// be above or below what x/sys/unix was generated with.
func readCapLastCap() (int, error) {
	const path = "/proc/sys/kernel/cap_last_cap"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("drop privileges: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("drop privileges: %s: bad value %q", path, strings.TrimSpace(string(b)))
	}
	return n, nil
}

func capList(keep []Cap) string {
	if len(keep) == 0 {
		return "no capabilities"
	}
	s := make([]string, len(keep))
	for i, c := range keep {
		s[i] = c.String()
	}
	return strings.Join(s, ",")
}
