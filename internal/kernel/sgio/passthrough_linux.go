package sgio

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// DefaultTimeout is the SG_IO timeout a Passthrough uses when Options.Timeout is 0. It
// is QEMU's scsi-block io_timeout default. qemu-pr-helper passes 1 ms instead
// (see doc.go for why that is not copied).
const DefaultTimeout = 30 * time.Second

// driverTimeoutBits is SG_ERR_DRIVER_TIMEOUT (0x06). qemu-pr-helper tests
// driver_status against it as a bit mask, so any DRIVER_* code with bit 1 or 2
// set (SOFT, MEDIA, ERROR, INVALID, TIMEOUT, HARD) becomes BUSY; Passthrough does the
// same so the guest gets the same status.
const driverTimeoutBits = 0x06

// Options configures a Passthrough.
type Options struct {
	// Timeout bounds each SG_IO; 0 means DefaultTimeout. It is rounded up to whole
	// milliseconds.
	Timeout time.Duration
	// Ioctl replaces the SG_IO ioctl, for tests; nil means the real one.
	Ioctl IoctlFunc
}

// Passthrough sends PR commands to a device with SG_IO and derives the SCSI
// result from the kernel's answer, byte-compatible with qemu-pr-helper's
// non-multipath path (do_sgio_worker). It keeps no state and is safe for
// concurrent use.
type Passthrough struct {
	timeout time.Duration
	ioctl   IoctlFunc
	// bufs holds the 8192-byte PR IN buffers of finished commands: a fresh
	// one per command was 8 KB of garbage each, three quarters of what a
	// request allocated and the main cause of collections under load
	// (docs/performance.md). A reused buffer is zeroed first.
	bufs sync.Pool
	// calls holds the SG_IO headers, CDB copies and sense buffers of finished
	// commands (call).
	calls sync.Pool
}

// dataLen is the data buffer of every PR IN: the helper protocol's
// PR_HELPER_DATA_SIZE (8192), which qemu-pr-helper reads into whatever the
// allocation length, and the largest PR OUT parameter list it forwards.
const dataLen = 8192

// cdbLen is the CDB length qemu-pr-helper sends: all 16 bytes it received
// (PR_HELPER_CDB_SIZE), whatever the opcode's own CDB length.
const cdbLen = 16

// New returns a Passthrough configured by opts. A negative or oversized
// timeout is an error rather than silently becoming the kernel default.
func New(opts Options) (*Passthrough, error) {
	t := opts.Timeout
	if t == 0 {
		t = DefaultTimeout
	}
	if t < 0 || t > time.Duration(1<<32-2)*time.Millisecond {
		return nil, fmt.Errorf("sgio: timeout %v outside 1ms..%v", opts.Timeout, time.Duration(1<<32-2)*time.Millisecond)
	}
	ioctl := opts.Ioctl
	if ioctl == nil {
		ioctl = ioctlSGIO
	}
	return &Passthrough{timeout: t, ioctl: ioctl}, nil
}

// Timeout returns the SG_IO timeout the passthrough uses.
func (p *Passthrough) Timeout() time.Duration { return p.timeout }

// Outcome is what one SG_IO of a PR command gave: the SCSI result for the
// client and the error for the log, plus what the kernel reported, so that a
// caller choosing between paths (a multipath backend) can tell a path that
// failed from a device that answered.
type Outcome struct {
	Reply scsi.Result // the SCSI result to answer the command with
	Err   error       // for the log; nil for a plain GOOD
	// IoctlErr is the SG_IO ioctl's own failure (wrapping a unix.Errno), nil
	// when the command reached the kernel's SCSI layer; Result is valid then.
	IoctlErr error
	Result   Result
}

// PathFailed reports whether the command failed on its way to the device
// rather than being answered by it: the ioctl failed (ENODEV, ENXIO, EIO on an
// offline or removed path), the host adapter reported a transport status
// (DID_NO_CONNECT, DID_TRANSPORT_*, …) or the mid layer a timeout or error.
// These are the outcomes dm-multipath itself fails a path on; a SCSI status
// with sense is the device's answer and is never a path failure.
func (o *Outcome) PathFailed() bool {
	return o.IoctlErr != nil || o.Result.HostStatus != 0 || o.Result.DriverStatus&driverTimeoutBits != 0
}

// Do sends cdb to fd with SG_IO exactly as qemu-pr-helper does: all 16 CDB
// bytes (cmd_len 16), a zeroed 96-byte sense buffer, for PR IN a data-in of the
// whole 8192-byte buffer (not the allocation length), for PR OUT a data-out of
// the framing length (CDB bytes 7-8) holding param. With a 0-byte parameter
// list it still says SG_DXFER_TO_DEV with dxfer_len 0, as QEMU does; the kernel
// maps no data for a zero length, so the direction is harmless.
//
// The status follows do_sgio_worker: a failed ioctl maps its errno with
// scsi.FromErrno; else a non-zero host_status maps with scsi.FromHostStatus
// (unknown values give GOOD, QEMU's quirk); else driver_status & 0x06 gives
// BUSY; else the device's status and sense pass through verbatim. A CHECK
// CONDITION prhelper builds overwrites the first 18 bytes of the sense buffer
// with fixed-format sense, and leaves the other 78 as the kernel left them, as
// QEMU's scsi_build_sense does. Data is returned only for PR IN with GOOD
// status: the transferred bytes (8192 - resid); the wire layer trims them to
// the allocation length.
//
// Outcome.Err says what failed whenever the result is not a plain GOOD. Do
// never panics; an opcode other than PERSISTENT RESERVE IN/OUT is refused with
// CHECK CONDITION 05/20/00 without reaching the device. It does not check the
// fd's access mode and cannot be interrupted, only bounded by the timeout.
func (p *Passthrough) Do(fd int, cdb [cdbLen]byte, param []byte) Outcome {
	var (
		dir Direction
		buf []byte
	)
	switch cdb[0] {
	case scsi.OpPersistentReserveIn:
		dir = DirFromDevice
		bp := p.inBuf()
		defer p.bufs.Put(bp)
		buf = *bp
	case scsi.OpPersistentReserveOut:
		dir = DirToDevice
		buf = param // the kernel only reads a data-out buffer
		if n := min(scsi.TransferLength(cdb[:]), dataLen); len(param) != n {
			buf = make([]byte, n) // the framing length's bytes: param's, zero filled
			copy(buf, param)
		}
	default:
		// The server only forwards PR IN/OUT; anything else is refused here rather
		// than passed to the device with a guessed data direction.
		return Outcome{Reply: scsi.CheckCondition(scsi.SenseInvalidOpcode),
			Err: fmt.Errorf("sgio: opcode 0x%02x is not PERSISTENT RESERVE IN/OUT", cdb[0])}
	}
	c, ok := p.calls.Get().(*call)
	if !ok {
		c = new(call)
	}
	res, err := c.exec(p.ioctl, fd, cdb[:], dir, buf, p.timeout)
	p.calls.Put(c)
	rep, logErr := reply(fd, dir == DirFromDevice, buf, &res, err)
	if rep.Data != nil {
		// The buffer goes back to the pool: the reply keeps a copy of the
		// transferred bytes only.
		rep.Data = append(make([]byte, 0, len(rep.Data)), rep.Data...)
	}
	return Outcome{Reply: rep, Err: logErr, IoctlErr: err, Result: res}
}

// inBuf returns a zeroed PR IN buffer of dataLen bytes, from the pool when
// one is there: every PR IN gets all zeros, whatever the previous command
// left (docs/pr-helper-protocol.md §4.8).
func (p *Passthrough) inBuf() *[]byte {
	if b, ok := p.bufs.Get().(*[]byte); ok && len(*b) == dataLen {
		clear(*b)
		return b
	}
	b := make([]byte, dataLen)
	return &b
}

// reply derives the SCSI result from the outcome of one SG_IO, in
// do_sgio_worker's order of precedence. buf is the data buffer the command used;
// prIn says whether its content is reply data. Unless the ioctl failed, the
// result's sense is the whole 96-byte sense buffer, as qemu-pr-helper sends it
// (nil when it is all zeros, which the wire sends the same: scsi.Result).
func reply(fd int, prIn bool, buf []byte, res *Result, ioErr error) (scsi.Result, error) {
	if ioErr != nil {
		var errno unix.Errno
		if !errors.As(ioErr, &errno) {
			errno = unix.EIO // not from the kernel: answer like an I/O error
		}
		return scsi.Errno(errno), ioErr
	}

	rep := scsi.Result{Sense: senseCopy(res)}
	var logErr error
	switch {
	case res.HostStatus != 0:
		var s scsi.Sense
		rep.Status, s = scsi.FromHostStatus(res.HostStatus)
		what := scsi.StatusName(rep.Status)
		if rep.Status == scsi.StatusCheckCondition {
			if rep.Sense == nil {
				rep.Sense = make([]byte, SenseLen)
			}
			copy(rep.Sense, s.Fixed())
			what += " " + s.String()
		}
		logErr = fmt.Errorf("SG_IO on fd %d: host status %s, reported as %s", fd, HostStatusName(res.HostStatus), what)
	case res.DriverStatus&driverTimeoutBits != 0:
		rep.Status = scsi.StatusBusy
		logErr = fmt.Errorf("SG_IO on fd %d: driver status 0x%02x, reported as BUSY", fd, res.DriverStatus)
	default:
		rep.Status = res.Status
		if rep.Status != scsi.StatusGood {
			logErr = &statusErr{fd: fd, status: rep.Status, sense: rep.Sense[:res.SenseWritten]}
		}
	}
	if prIn && rep.Status == scsi.StatusGood {
		rep.Data = buf[:transferred(len(buf), res.Resid)]
	}
	return rep, logErr
}

// senseCopy returns a copy of res's whole sense buffer, or nil when the
// kernel wrote none and all of it is zero: the common GOOD answer then
// allocates nothing (the buffer itself is reused, call).
func senseCopy(res *Result) []byte {
	if res.SenseWritten == 0 && res.SenseBuf == ([SenseLen]byte{}) {
		return nil
	}
	return bytes.Clone(res.SenseBuf[:])
}

// statusErr is a device's answer other than GOOD, for the log: "SG_IO on fd
// N: reservation conflict". The text is built only when read: a RESERVATION
// CONFLICT is an ordinary answer in a cluster, and most of these errors are
// only counted by the server's repeated-warning limit (docs/performance.md).
type statusErr struct {
	fd     int
	status byte
	sense  []byte
}

func (e *statusErr) Error() string {
	return "SG_IO on fd " + strconv.Itoa(e.fd) + ": " + describeStatus(e.status, e.sense)
}
