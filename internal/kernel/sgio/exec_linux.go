package sgio

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/prhelper/prhelper/scsi"
)

// IoctlFunc issues SG_IO for hdr on fd and returns the ioctl's errno (a
// unix.Errno) or nil. The real one is a raw ioctl(2); tests inject a scripted
// device that, like the kernel, fills hdr's output fields and writes sense and
// data through hdr.Sbp and hdr.Dxferp. It must not keep hdr or its buffers after
// it returns.
type IoctlFunc func(fd int, hdr *Hdr) error

// Result is what the kernel reported for one SG_IO that it accepted (the ioctl
// returned 0). The fields carry the sg_io_hdr output fields unchanged, except
// where noted.
type Result struct {
	Status       byte   // SCSI status byte from the device (sg_io_hdr.status)
	MaskedStatus byte   // sg_io_hdr.masked_status
	MsgStatus    byte   // sg_io_hdr.msg_status
	HostStatus   uint16 // DID_* (sg_io_hdr.host_status)
	DriverStatus uint16 // DRIVER_* (sg_io_hdr.driver_status)
	Resid        int32  // sg_io_hdr.resid, as the kernel wrote it (may be odd)
	// Transferred is len(buf) - Resid clamped to 0..len(buf): the bytes of buf the
	// device filled (data-in) or consumed (data-out). The clamp means a bogus
	// resid never indexes outside buf.
	Transferred int
	// SenseWritten is sg_io_hdr.sb_len_wr clamped to SenseLen: the sense bytes the
	// kernel wrote.
	SenseWritten int
	// SenseBuf is the whole sense buffer after the call. It is zeroed before the
	// ioctl, so bytes past SenseWritten are zero unless the driver wrote more than it
	// reported; qemu-pr-helper passes all 96 bytes on, so Backend does too.
	SenseBuf [SenseLen]byte
	Duration time.Duration // sg_io_hdr.duration (kernel-measured, millisecond resolution)
	Info     uint32        // sg_io_hdr.info (SG_INFO_*)
}

// Sense returns the sense data the kernel reported as written (sb_len_wr bytes).
func (r *Result) Sense() []byte { return r.SenseBuf[:r.SenseWritten] }

// driverStatusMask is the DRIVER_* code part of sg_io_hdr.driver_status (the
// high nibble holds the SUGGEST_* bits and DRIVER_SENSE 0x08).
const driverStatusMask = 0x07

// Err describes, for logs, why the command did not complete with GOOD status: a
// host adapter error, a mid-layer driver error, or a non-GOOD device status with
// its sense key/ASC/ASCQ. It returns nil when the device answered GOOD and
// neither the host nor the driver reported an error.
func (r *Result) Err() error {
	switch {
	case r.HostStatus != 0:
		return fmt.Errorf("host status %s", HostStatusName(r.HostStatus))
	case r.DriverStatus&driverStatusMask != 0:
		return fmt.Errorf("driver status 0x%02x", r.DriverStatus)
	case r.Status != scsi.StatusGood:
		return errors.New(describeStatus(r.Status, r.Sense()))
	}
	return nil
}

// describeStatus renders a device status for a log line, e.g. "reservation
// conflict" or "check condition, sense 5/24/00".
func describeStatus(status byte, sense []byte) string {
	s := strings.ToLower(scsi.StatusName(status))
	if status == scsi.StatusCheckCondition {
		if k, ok := scsi.ParseSense(sense); ok {
			s += ", sense " + k.String()
		} else {
			s += ", no valid sense"
		}
	}
	return s
}

// hostStatusNames are the Linux DID_* names (include/scsi/scsi_status.h).
var hostStatusNames = [...]string{
	0x00: "DID_OK", 0x01: "DID_NO_CONNECT", 0x02: "DID_BUS_BUSY", 0x03: "DID_TIME_OUT",
	0x04: "DID_BAD_TARGET", 0x05: "DID_ABORT", 0x06: "DID_PARITY", 0x07: "DID_ERROR",
	0x08: "DID_RESET", 0x09: "DID_BAD_INTR", 0x0a: "DID_PASSTHROUGH", 0x0b: "DID_SOFT_ERROR",
	0x0c: "DID_IMM_RETRY", 0x0d: "DID_REQUEUE", 0x0e: "DID_TRANSPORT_DISRUPTED",
	0x0f: "DID_TRANSPORT_FAILFAST", 0x10: "DID_TARGET_FAILURE", 0x11: "DID_NEXUS_FAILURE",
	0x12: "DID_ALLOC_FAILURE", 0x13: "DID_MEDIUM_ERROR", 0x14: "DID_TRANSPORT_MARGINAL",
}

// HostStatusName returns the Linux DID_* name of a host status with its value,
// e.g. "DID_TIME_OUT (0x03)", for logs.
func HostStatusName(h uint16) string {
	if int(h) < len(hostStatusNames) {
		return fmt.Sprintf("%s (0x%02x)", hostStatusNames[h], h)
	}
	return fmt.Sprintf("0x%02x", h)
}

// Exec issues one SCSI command with SG_IO on fd and waits for it: cdb is sent
// with cmd_len = len(cdb), buf is the data buffer for direction dir (its whole
// length is the dxfer_len), and timeout is rounded up to whole milliseconds
// (0 lets the kernel use the device's default). The sense buffer is SenseLen
// bytes, zeroed first.
//
// The error is non-nil only when the command could not be issued: bad arguments,
// or the ioctl failed, in which case it wraps the unix.Errno (for
// scsi.FromErrno). A command the device rejected is not an error here: inspect
// Result.Status/HostStatus/DriverStatus, or Result.Err.
//
// Exec runs in the calling goroutine and blocks its thread for the command's
// duration; it cannot be cancelled, only bounded by timeout. It is safe for
// concurrent use; the kernel serialises per device as it needs.
func Exec(fd int, cdb []byte, dir Direction, buf []byte, timeout time.Duration) (Result, error) {
	return ExecWith(nil, fd, cdb, dir, buf, timeout)
}

// ExecWith is Exec with the ioctl supplied by the caller (nil means the real
// SG_IO ioctl), so code built on it can be tested against a scripted device.
func ExecWith(ioctl IoctlFunc, fd int, cdb []byte, dir Direction, buf []byte, timeout time.Duration) (Result, error) {
	return new(call).exec(ioctl, fd, cdb, dir, buf, timeout)
}

// call is the memory the kernel reads and writes during one SG_IO besides
// the data buffer: the header, the sense buffer and a copy of the CDB, which
// the header points to. One object, pinned whole for the ioctl; Passthrough
// reuses them (a fresh one per request was a fifth of a request's garbage,
// docs/performance.md §3.7).
type call struct {
	hdr   Hdr
	sense [SenseLen]byte
	cdb   [math.MaxUint8]byte
}

// exec runs one SG_IO with c's memory (see Exec for the arguments). The
// sense buffer is cleared first: the kernel writes only sb_len_wr bytes of
// it, and the rest is returned too (Result.SenseBuf).
func (c *call) exec(ioctl IoctlFunc, fd int, cdb []byte, dir Direction, buf []byte, timeout time.Duration) (Result, error) {
	if ioctl == nil {
		ioctl = ioctlSGIO
	}
	if len(cdb) == 0 || len(cdb) > len(c.cdb) {
		return Result{}, fmt.Errorf("SG_IO on fd %d: CDB length %d outside 1..255", fd, len(cdb))
	}
	if uint64(len(buf)) > math.MaxUint32 {
		return Result{}, fmt.Errorf("SG_IO on fd %d: data buffer of %d bytes too large", fd, len(buf))
	}
	ms, err := timeoutMillis(timeout)
	if err != nil {
		return Result{}, fmt.Errorf("SG_IO on fd %d: %w", fd, err)
	}

	copy(c.cdb[:], cdb)
	clear(c.sense[:])
	hdr := &c.hdr
	*hdr = Hdr{
		InterfaceID:    InterfaceID,
		DxferDirection: dir,
		CmdLen:         uint8(len(cdb)),
		MxSbLen:        SenseLen,
		DxferLen:       uint32(len(buf)),
		Cmdp:           unsafe.Pointer(&c.cdb[0]),
		Sbp:            unsafe.Pointer(&c.sense[0]),
		Timeout:        ms,
	}
	if len(buf) > 0 {
		hdr.Dxferp = unsafe.Pointer(&buf[0])
	}

	// The kernel dereferences the pointers stored inside hdr, which the Go
	// runtime cannot see as syscall arguments: pin every referenced object (c,
	// which holds hdr, the CDB and the sense buffer, and the data buffer) so
	// none of them moves or is freed until the ioctl returns.
	var pin runtime.Pinner
	pin.Pin(c)
	if hdr.Dxferp != nil {
		pin.Pin(hdr.Dxferp)
	}
	err = ioctl(fd, hdr)
	pin.Unpin()
	if err != nil {
		return Result{}, &ioctlErr{fd: fd, err: err}
	}

	r := Result{
		Status:       hdr.Status,
		MaskedStatus: hdr.MaskedStatus,
		MsgStatus:    hdr.MsgStatus,
		HostStatus:   hdr.HostStatus,
		DriverStatus: hdr.DriverStatus,
		Resid:        hdr.Resid,
		Transferred:  transferred(len(buf), hdr.Resid),
		SenseWritten: min(int(hdr.SbLenWr), SenseLen),
		SenseBuf:     c.sense,
		Duration:     time.Duration(hdr.Duration) * time.Millisecond,
		Info:         hdr.Info,
	}
	return r, nil
}

// ioctlErr is the ioctl's failure, "SG_IO on fd N: ERR", formatted only when
// read: a helper refusing a regular file gets ENOTTY for every request and
// mostly only counts the error (docs/performance.md §3.2).
type ioctlErr struct {
	fd  int
	err error
}

func (e *ioctlErr) Error() string { return "SG_IO on fd " + strconv.Itoa(e.fd) + ": " + e.err.Error() }

func (e *ioctlErr) Unwrap() error { return e.err }

// transferred is n - resid clamped to 0..n, so that a negative or oversized
// resid (a driver bug, or a fake) cannot produce an out-of-range slice.
func transferred(n int, resid int32) int {
	t := int64(n) - int64(resid)
	return int(max(0, min(t, int64(n))))
}

// timeoutMillis converts a timeout to sg_io_hdr.timeout: whole milliseconds,
// rounded up so a positive timeout never becomes 0 ("device default"), and
// capped at the u32 maximum (which the sg driver treats as "no timeout").
func timeoutMillis(d time.Duration) (uint32, error) {
	if d < 0 {
		return 0, fmt.Errorf("negative timeout %v", d)
	}
	ms := int64(d / time.Millisecond)
	if d%time.Millisecond != 0 {
		ms++
	}
	return uint32(min(ms, math.MaxUint32)), nil
}
