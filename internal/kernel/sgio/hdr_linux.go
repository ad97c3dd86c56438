package sgio

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SG_IO is the ioctl request number of the SCSI generic v3 synchronous
// pass-through (include/scsi/sg.h). Both the sg driver (/dev/sgN) and SCSI block
// devices (sd, dm-multipath via its path) accept it.
const SG_IO = 0x2285

// Direction is the dxfer_direction of an sg_io_hdr (include/scsi/sg.h).
type Direction int32

// Data transfer directions (include/scsi/sg.h SG_DXFER_*).
const (
	DirNone       Direction = -1 // SG_DXFER_NONE: no data phase
	DirToDevice   Direction = -2 // SG_DXFER_TO_DEV: data-out, e.g. a PR OUT parameter list
	DirFromDevice Direction = -3 // SG_DXFER_FROM_DEV: data-in, e.g. a PR IN payload
)

func (d Direction) String() string {
	switch d {
	case DirNone:
		return "none"
	case DirToDevice:
		return "to-device"
	case DirFromDevice:
		return "from-device"
	}
	return fmt.Sprintf("direction(%d)", int32(d))
}

// InterfaceID is the value the kernel requires in Hdr.InterfaceID: 'S' selects
// the sg v3 interface.
const InterfaceID = 'S'

// SenseLen is the size of the sense buffer prhelper hands the kernel: 96 bytes,
// the helper protocol's PR_HELPER_SENSE_SIZE, as qemu-pr-helper's mx_sb_len.
const SenseLen = 96

// Hdr is struct sg_io_hdr of include/scsi/sg.h. Field order and types mirror the C
// struct, so Go's alignment rules reproduce the C layout: on amd64 and arm64 it is
// 88 bytes with 4 bytes of implicit padding after PackID (hdr_linux_test.go checks
// every offset). The pointer fields are unsafe.Pointer so the garbage collector
// keeps the buffers they reference alive; Exec pins them for the ioctl.
type Hdr struct {
	InterfaceID    int32          // [i] 'S'
	DxferDirection Direction      // [i] SG_DXFER_*
	CmdLen         uint8          // [i] bytes at Cmdp
	MxSbLen        uint8          // [i] room at Sbp
	IovecCount     uint16         // [i] 0: Dxferp is a flat buffer
	DxferLen       uint32         // [i] bytes at Dxferp
	Dxferp         unsafe.Pointer // [i] data buffer
	Cmdp           unsafe.Pointer // [i] CDB
	Sbp            unsafe.Pointer // [i] sense buffer, [o] written by the kernel
	Timeout        uint32         // [i] milliseconds; 0 means the device default
	Flags          uint32         // [i] SG_FLAG_*
	PackID         int32          // [i->o] unused by SG_IO
	UsrPtr         unsafe.Pointer // [i->o] unused by SG_IO
	Status         uint8          // [o] SCSI status byte
	MaskedStatus   uint8          // [o] (status >> 1) & 0x7f, historic
	MsgStatus      uint8          // [o]
	SbLenWr        uint8          // [o] sense bytes actually written
	HostStatus     uint16         // [o] DID_* of the host adapter
	DriverStatus   uint16         // [o] DRIVER_* of the mid layer
	Resid          int32          // [o] DxferLen minus bytes actually transferred
	Duration       uint32         // [o] milliseconds the command took
	Info           uint32         // [o] SG_INFO_*
}

// ioctlSGIO issues SG_IO on fd with the kernel. It blocks the calling goroutine's
// thread until the command completes or times out; unix.Syscall tells the Go
// scheduler so, which hands the P to another thread meanwhile. No cgo.
func ioctlSGIO(fd int, hdr *Hdr) error {
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), SG_IO, uintptr(unsafe.Pointer(hdr)))
	if e != 0 {
		return e
	}
	return nil
}
