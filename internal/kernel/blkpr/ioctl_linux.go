package blkpr

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ArgSize is the argument size encoded in an ioctl request number (_IOC_SIZE).
func ArgSize(req uint) uintptr { return uintptr(req>>16) & (1<<iocSizeBits - 1) }

// Registration is struct pr_registration of include/uapi/linux/pr.h (24 bytes:
// old_key@0, new_key@8, flags@16, 4 bytes of padding), the argument of
// IOC_PR_REGISTER. Keys are in host byte order.
type Registration struct {
	OldKey uint64
	NewKey uint64
	Flags  uint32
	_      uint32
}

// Reservation is struct pr_reservation (16 bytes: key@0, type@8, flags@12), the
// argument of IOC_PR_RESERVE and IOC_PR_RELEASE. Type is an enum pr_type value.
type Reservation struct {
	Key   uint64
	Type  uint32
	Flags uint32
}

// Preempt is struct pr_preempt (24 bytes: old_key@0, new_key@8, type@16,
// flags@20), the argument of IOC_PR_PREEMPT and IOC_PR_PREEMPT_ABORT. OldKey is
// the caller's RESERVATION KEY, NewKey the SERVICE ACTION RESERVATION KEY of the
// registrations to preempt (drivers/scsi/sd.c sd_pr_preempt).
type Preempt struct {
	OldKey uint64
	NewKey uint64
	Type   uint32
	Flags  uint32
}

// Clear is struct pr_clear (16 bytes: key@0, flags@8, 4 bytes of padding), the
// argument of IOC_PR_CLEAR.
type Clear struct {
	Key   uint64
	Flags uint32
	_     uint32
}

// ReadKeys is struct pr_read_keys (16 bytes: generation@0, num_keys@4,
// keys_ptr@8), the argument of IOC_PR_READ_KEYS (Linux 6.19). On entry NumKeys is
// the capacity of the host-endian u64 array at KeysPtr; on return it is the
// total number of registered keys, which may exceed the capacity, and
// min(capacity, total) keys have been copied.
type ReadKeys struct {
	Generation uint32
	NumKeys    uint32
	KeysPtr    uint64
}

// ReadReservation is struct pr_read_reservation (16 bytes: key@0,
// generation@8, type@12), the argument of IOC_PR_READ_RESERVATION (Linux 6.19).
// Type is an enum pr_type value, 0 when no reservation is held or the device
// reported a type the kernel cannot name.
type ReadReservation struct {
	Key        uint64
	Generation uint32
	Type       uint32
}

// The <linux/pr.h> ioctl numbers, written as the _IOW/_IOR/_IOWR expansions of
// include/uapi/linux/pr.h (_IOC: direction, size<<16, type<<8, number) so they
// are right on every architecture's encoding; docs/linux-pr.md §1 lists the
// x86/arm64 values, which the tests check.
const (
	IOC_PR_REGISTER         = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Registration{}))<<16 | 'p'<<8 | 200
	IOC_PR_RESERVE          = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Reservation{}))<<16 | 'p'<<8 | 201
	IOC_PR_RELEASE          = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Reservation{}))<<16 | 'p'<<8 | 202
	IOC_PR_PREEMPT          = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Preempt{}))<<16 | 'p'<<8 | 203
	IOC_PR_PREEMPT_ABORT    = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Preempt{}))<<16 | 'p'<<8 | 204
	IOC_PR_CLEAR            = iocWrite<<iocDirShift | uint(unsafe.Sizeof(Clear{}))<<16 | 'p'<<8 | 205
	IOC_PR_READ_KEYS        = (iocRead|iocWrite)<<iocDirShift | uint(unsafe.Sizeof(ReadKeys{}))<<16 | 'p'<<8 | 206
	IOC_PR_READ_RESERVATION = iocRead<<iocDirShift | uint(unsafe.Sizeof(ReadReservation{}))<<16 | 'p'<<8 | 207
)

// PR_FL_IGNORE_KEY is the only flag of <linux/pr.h>: REGISTER AND IGNORE
// EXISTING KEY when set on IOC_PR_REGISTER.
const PR_FL_IGNORE_KEY = 1 << 0

// PR_KEYS_MAX bounds ReadKeys.NumKeys on entry; the kernel answers EINVAL above it.
const PR_KEYS_MAX = 1 << 16

// The enum pr_status values: positive ioctl return values (not errnos) that say
// how the device or the path answered (include/uapi/linux/pr.h, Linux 6.4+).
const (
	PR_STS_SUCCESS              = 0x0
	PR_STS_IOERR                = 0x2
	PR_STS_RESERVATION_CONFLICT = 0x18
	PR_STS_RETRY_PATH_FAILURE   = 0xe0000
	PR_STS_PATH_FAST_FAILED     = 0xf0000
	PR_STS_PATH_FAILED          = 0x10000
)

// NVMePassthru is struct nvme_passthru_cmd of include/uapi/linux/nvme_ioctl.h
// (72 bytes), the argument of NVME_IOCTL_IO_CMD. Addr is the user address of the
// data buffer; the caller pins it for the call.
type NVMePassthru struct {
	Opcode      uint8
	Flags       uint8
	Rsvd1       uint16
	NSID        uint32
	CDW2        uint32
	CDW3        uint32
	Metadata    uint64
	Addr        uint64
	MetadataLen uint32
	DataLen     uint32
	CDW10       uint32
	CDW11       uint32
	CDW12       uint32
	CDW13       uint32
	CDW14       uint32
	CDW15       uint32
	TimeoutMs   uint32
	Result      uint32
}

// The NVMe ioctls of include/uapi/linux/nvme_ioctl.h this package uses:
// NVME_IOCTL_ID returns the namespace ID of a namespace device as the ioctl's
// return value; NVME_IOCTL_IO_CMD submits an I/O command and returns 0, the
// positive NVMe status, or a negative errno.
const (
	NVME_IOCTL_ID     = iocNone<<iocDirShift | 'N'<<8 | 0x40
	NVME_IOCTL_IO_CMD = (iocRead|iocWrite)<<iocDirShift | uint(unsafe.Sizeof(NVMePassthru{}))<<16 | 'N'<<8 | 0x43
)

// IoctlFunc issues ioctl(fd, req, arg) and returns the ioctl's non-negative
// return value, or the errno (a unix.Errno) when it failed. The <linux/pr.h>
// ioctls return positive PR_STS_* codes this way, NVME_IOCTL_ID the namespace ID,
// NVME_IOCTL_IO_CMD the NVMe status. arg points to the struct the request number
// names (ArgSize(req) bytes); ReadKeys.KeysPtr and NVMePassthru.Addr point to
// buffers the caller has pinned. Tests inject a scripted kernel that reads the
// struct's bytes and writes its answers back, as the kernel would; it must not
// keep arg or the buffers after it returns.
type IoctlFunc func(fd int, req uint, arg unsafe.Pointer) (int, error)

// Ioctl is the real IoctlFunc: a raw ioctl(2). unix.Syscall tells the Go
// scheduler the thread may block (a PR command waits for the device), so the
// goroutine's processor goes to another thread meanwhile. No cgo.
func Ioctl(fd int, req uint, arg unsafe.Pointer) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}
