package sgio

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// hdrIn is what the fake device saw of the sg_io_hdr inputs.
type hdrIn struct {
	interfaceID int32
	dir         Direction
	cmdLen      uint8
	mxSbLen     uint8
	iovecCount  uint16
	dxferLen    uint32
	dxferpNil   bool
	timeout     uint32
	flags       uint32
}

// fakeDevice is a scripted SG_IO device: it answers like the kernel, filling the
// hdr's output fields and writing sense and data through the pointers in the hdr.
type fakeDevice struct {
	// script
	errno        unix.Errno
	status       byte
	hostStatus   uint16
	driverStatus uint16
	resid        int32
	sense        []byte // written at Sbp, at most MxSbLen bytes
	sbLenWr      int    // reported sb_len_wr; -1 means len(sense)
	data         []byte // written at Dxferp for data-in, at most DxferLen bytes

	// record
	calls       int
	fd          int
	in          hdrIn
	cdb         []byte
	out         []byte // data-out bytes
	senseZeroed bool   // the sense buffer was all zero on entry
}

func (f *fakeDevice) ioctl(fd int, h *Hdr) error {
	f.calls++
	f.fd = fd
	f.in = hdrIn{h.InterfaceID, h.DxferDirection, h.CmdLen, h.MxSbLen, h.IovecCount, h.DxferLen, h.Dxferp == nil, h.Timeout, h.Flags}
	f.cdb = bytes.Clone(unsafe.Slice((*byte)(h.Cmdp), h.CmdLen))
	sense := unsafe.Slice((*byte)(h.Sbp), h.MxSbLen)
	f.senseZeroed = bytes.Count(sense, []byte{0}) == len(sense)
	var data []byte
	if h.Dxferp != nil {
		data = unsafe.Slice((*byte)(h.Dxferp), h.DxferLen)
	}
	if h.DxferDirection == DirToDevice {
		f.out = bytes.Clone(data)
	}
	if f.errno != 0 {
		return f.errno
	}
	n := copy(sense, f.sense)
	if f.sbLenWr >= 0 {
		n = f.sbLenWr
	}
	h.SbLenWr = uint8(n)
	if h.DxferDirection == DirFromDevice {
		copy(data, f.data)
	}
	h.Status = f.status
	h.MaskedStatus = (f.status >> 1) & 0x7f
	h.HostStatus = f.hostStatus
	h.DriverStatus = f.driverStatus
	h.Resid = f.resid
	h.Duration = 5
	return nil
}

// fixed is 18 bytes of fixed-format sense (SPC-4 §4.5.3) zero padded to 96, as
// qemu-pr-helper's scsi_build_sense leaves its memset buffer. Written out here
// rather than taken from scsi.Sense.Fixed so this test checks the bytes.
// senseField is the 96-byte sense field of the helper reply that carries r, as the
// server fills it: r.Sense, zero filled. A result's sense never exceeds it.
func senseField(r scsi.Result) (f [SenseLen]byte) {
	if len(r.Sense) > SenseLen {
		panic(fmt.Sprintf("sense of %d bytes", len(r.Sense)))
	}
	copy(f[:], r.Sense)
	return f
}

func fixed(key, asc, ascq byte) [SenseLen]byte {
	var b [SenseLen]byte
	b[0], b[2], b[7], b[12], b[13] = 0x70, key, 10, asc, ascq
	return b
}

// request is a command as a backend passes it on.
type request struct {
	CDB   [cdbLen]byte
	Param []byte
	FD    int
}

// run is Do on a request, returning the result and the log error.
func run(p *Passthrough, r *request) (scsi.Result, error) {
	o := p.Do(r.FD, r.CDB, r.Param)
	return o.Reply, o.Err
}

func newPassthrough(t *testing.T, f *fakeDevice) *Passthrough {
	t.Helper()
	b, err := New(Options{Ioctl: f.ioctl})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// prIn and prOut are requests as the server would pass them: READ KEYS with an
// allocation length of 40, REGISTER with a 24-byte parameter list.
func prIn() *request {
	return &request{CDB: scsi.PRInCDB(scsi.SAReadKeys, 40), FD: 7}
}

func prOut(param []byte) *request {
	return &request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, uint32(len(param))), Param: param, FD: 7}
}

func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// TestExecuteErrno covers every row of scsi_sense_from_errno (docs/pr-helper-protocol.md §4.9)
// for both PR IN and PR OUT: the status and the 96 sense bytes on the wire.
func TestExecuteErrno(t *testing.T) {
	none := [SenseLen]byte{}
	ioErr := fixed(0x0b, 0x00, 0x06)
	for _, tc := range []struct {
		errno  unix.Errno
		status byte
		sense  [SenseLen]byte
	}{
		{unix.EDOM, 0x28, none},
		{unix.EBADE, 0x18, none},
		{unix.ENODEV, 0x02, fixed(0x04, 0x44, 0x00)},
		{unix.EREMOTEIO, 0x02, fixed(0x04, 0x44, 0x00)},
		{unix.ENOMEM, 0x02, fixed(0x04, 0x44, 0x00)},
		{unix.ENODATA, 0x02, fixed(0x03, 0x11, 0x00)},
		{unix.ENOMEDIUM, 0x02, fixed(0x02, 0x3a, 0x00)},
		{unix.EINVAL, 0x02, fixed(0x05, 0x24, 0x00)},
		{unix.ENOSPC, 0x02, fixed(0x07, 0x27, 0x07)},
		{unix.EIO, 0x02, ioErr},
		{unix.ENOTTY, 0x02, ioErr},
		{unix.EPERM, 0x02, ioErr},
		{unix.EACCES, 0x02, ioErr},
		{unix.EAGAIN, 0x02, ioErr},
		{unix.EBADF, 0x02, ioErr},
		{unix.EFAULT, 0x02, ioErr},
	} {
		for _, req := range []*request{prIn(), prOut(pattern(24, 1))} {
			name := tc.errno.Error() + "/PR-OUT"
			if req.CDB[0] == scsi.OpPersistentReserveIn {
				name = tc.errno.Error() + "/PR-IN"
			}
			t.Run(name, func(t *testing.T) {
				f := &fakeDevice{errno: tc.errno, sbLenWr: -1, data: pattern(64, 3)}
				rep, err := run(newPassthrough(t, f), req)
				if rep.Status != tc.status {
					t.Errorf("status = %#x, want %#x", rep.Status, tc.status)
				}
				if senseField(rep) != tc.sense {
					t.Errorf("sense = % x, want % x", rep.Sense, tc.sense[:20])
				}
				if len(rep.Data) != 0 {
					t.Errorf("data = %d bytes, want none", len(rep.Data))
				}
				if !errors.Is(err, tc.errno) {
					t.Errorf("err = %v, want it to wrap %v", err, tc.errno)
				}
				if want := "SG_IO on fd 7: " + tc.errno.Error(); err == nil || err.Error() != want {
					t.Errorf("err = %v, want %q", err, want)
				}
			})
		}
	}
}

// TestExecuteHostStatus covers every row of scsi_sense_from_host_status
// (docs/pr-helper-protocol.md §4.9), including QEMU's quirk that an unknown non-zero host status
// is reported as GOOD, with the PR IN data that goes with GOOD.
func TestExecuteHostStatus(t *testing.T) {
	none := [SenseLen]byte{}
	payload := pattern(dataLen, 9)
	const resid = dataLen - 40
	for _, tc := range []struct {
		host   uint16
		status byte
		sense  [SenseLen]byte
	}{
		{0x01, 0x02, fixed(0x0b, 0x05, 0x00)},
		{0x02, 0x08, none},
		{0x03, 0x02, fixed(0x0b, 0x2e, 0x02)},
		{0x04, 0x02, fixed(0x0b, 0x08, 0x00)},
		{0x05, 0x02, fixed(0x0b, 0x2f, 0x02)},
		{0x08, 0x02, fixed(0x06, 0x29, 0x00)},
		{0x0e, 0x02, fixed(0x0b, 0x29, 0x07)},
		{0x10, 0x02, fixed(0x04, 0x44, 0x00)},
		{0x11, 0x18, none},
		{0x12, 0x02, fixed(0x07, 0x27, 0x07)},
		{0x13, 0x02, fixed(0x03, 0x11, 0x00)},
		// Unknown to QEMU's table: GOOD, no sense.
		{0x06, 0x00, none},
		{0x07, 0x00, none},
		{0x0b, 0x00, none},
		{0x0f, 0x00, none},
		{0x14, 0x00, none},
		{0xffff, 0x00, none},
	} {
		t.Run(HostStatusName(tc.host), func(t *testing.T) {
			// The device status says CHECK CONDITION; host status must win.
			f := &fakeDevice{hostStatus: tc.host, status: 0x02, resid: resid, sbLenWr: -1, data: payload}
			rep, err := run(newPassthrough(t, f), prIn())
			if rep.Status != tc.status {
				t.Errorf("status = %#x, want %#x", rep.Status, tc.status)
			}
			if senseField(rep) != tc.sense {
				t.Errorf("sense = % x, want % x", rep.Sense, tc.sense[:20])
			}
			if tc.status == scsi.StatusGood {
				if !bytes.Equal(rep.Data, payload[:40]) {
					t.Errorf("data = %d bytes, want the first 40 the device wrote", len(rep.Data))
				}
			} else if len(rep.Data) != 0 {
				t.Errorf("data = %d bytes, want none", len(rep.Data))
			}
			if err == nil || !strings.Contains(err.Error(), "host status") || !strings.Contains(err.Error(), "SG_IO on fd 7") {
				t.Errorf("err = %v, want a host status error naming the fd", err)
			}
		})
	}
}

// TestHostStatusSenseOverlay checks that a CHECK CONDITION built from the host
// status replaces only the first 18 bytes of the sense buffer, like QEMU's
// scsi_build_sense on the buffer the kernel may have written, while BUSY and
// RESERVATION CONFLICT leave the kernel's bytes alone.
func TestHostStatusSenseOverlay(t *testing.T) {
	devSense := pattern(SenseLen, 0x40)
	for _, tc := range []struct {
		host uint16
		want [SenseLen]byte
	}{
		{0x03, func() [SenseLen]byte {
			b := fixed(0x0b, 0x2e, 0x02)
			copy(b[18:], devSense[18:])
			return b
		}()},
		{0x02, [SenseLen]byte(devSense)},
		{0x11, [SenseLen]byte(devSense)},
	} {
		f := &fakeDevice{hostStatus: tc.host, sense: devSense, sbLenWr: -1}
		rep, _ := run(newPassthrough(t, f), prOut(nil))
		if senseField(rep) != tc.want {
			t.Errorf("host %#x: sense = % x, want % x", tc.host, senseField(rep), tc.want)
		}
	}
}

// TestExecuteDriverStatus covers qemu-pr-helper's "driver_status &
// SG_ERR_DRIVER_TIMEOUT" bit test: any DRIVER_* code sharing a bit with 0x06
// gives BUSY with the sense left as the kernel wrote it; DRIVER_BUSY (0x01) and
// DRIVER_SENSE (0x08) fall through to the device status.
func TestExecuteDriverStatus(t *testing.T) {
	ccSense := fixed(0x05, 0x24, 0x00)
	for _, tc := range []struct {
		driver    uint16
		devStatus byte
		status    byte
		wantErr   string
	}{
		{0x06, 0x00, 0x08, "driver status 0x06, reported as BUSY"},
		{0x02, 0x00, 0x08, "driver status 0x02, reported as BUSY"},
		{0x03, 0x00, 0x08, "driver status 0x03, reported as BUSY"},
		{0x04, 0x02, 0x08, "driver status 0x04, reported as BUSY"},
		{0x05, 0x00, 0x08, "driver status 0x05, reported as BUSY"},
		{0x07, 0x00, 0x08, "driver status 0x07, reported as BUSY"},
		{0x26, 0x00, 0x08, "driver status 0x26, reported as BUSY"},
		{0x01, 0x00, 0x00, ""},
		{0x08, 0x02, 0x02, "check condition, sense 5/24/00"},
		{0x10, 0x00, 0x00, ""},
	} {
		f := &fakeDevice{driverStatus: tc.driver, status: tc.devStatus, sense: ccSense[:18], sbLenWr: -1, data: pattern(16, 1), resid: dataLen - 16}
		rep, err := run(newPassthrough(t, f), prIn())
		if rep.Status != tc.status {
			t.Errorf("driver %#x: status = %#x, want %#x", tc.driver, rep.Status, tc.status)
		}
		if senseField(rep) != ccSense {
			t.Errorf("driver %#x: sense = % x, want the device's bytes", tc.driver, rep.Sense)
		}
		if tc.wantErr == "" {
			if err != nil || len(rep.Data) != 16 {
				t.Errorf("driver %#x: err = %v, data %d bytes; want nil, 16", tc.driver, err, len(rep.Data))
			}
		} else if err == nil || !strings.HasSuffix(err.Error(), tc.wantErr) {
			t.Errorf("driver %#x: err = %v, want suffix %q", tc.driver, err, tc.wantErr)
		}
	}
}

// TestExecutePRInGood checks the PR IN reply data: the bytes the device wrote,
// 8192 - resid of them, whatever the resid.
func TestExecutePRInGood(t *testing.T) {
	payload := pattern(dataLen, 0x11)
	for _, tc := range []struct {
		resid int32
		want  int
	}{
		{dataLen - 8, 8},
		{dataLen - 40, 40},
		{0, dataLen},
		{dataLen, 0},
		{-5, dataLen},
		{dataLen + 1, 0},
		{math.MaxInt32, 0},
		{math.MinInt32, dataLen},
	} {
		f := &fakeDevice{resid: tc.resid, sbLenWr: -1, data: payload}
		rep, err := run(newPassthrough(t, f), prIn())
		if err != nil || rep.Status != scsi.StatusGood {
			t.Errorf("resid %d: status %#x err %v, want GOOD nil", tc.resid, rep.Status, err)
		}
		if !bytes.Equal(rep.Data, payload[:tc.want]) {
			t.Errorf("resid %d: data = %d bytes, want the first %d of the payload", tc.resid, len(rep.Data), tc.want)
		}
		if senseField(rep) != ([SenseLen]byte{}) {
			t.Errorf("resid %d: sense not zero: % x", tc.resid, rep.Sense)
		}
	}
}

// TestExecutePRInFraming checks what the device receives for PR IN: the full 16
// CDB bytes as received (padding too), data-in of the whole 8192-byte buffer
// regardless of the allocation length, 96 bytes of zeroed sense, the timeout.
func TestExecutePRInFraming(t *testing.T) {
	req := prIn()
	copy(req.CDB[10:], []byte{0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6})
	f := &fakeDevice{sbLenWr: -1}
	if _, err := run(newPassthrough(t, f), req); err != nil {
		t.Fatal(err)
	}
	want := hdrIn{interfaceID: 'S', dir: DirFromDevice, cmdLen: 16, mxSbLen: 96, dxferLen: dataLen, timeout: 30000}
	if f.in != want {
		t.Errorf("hdr = %+v, want %+v", f.in, want)
	}
	if !bytes.Equal(f.cdb, req.CDB[:]) {
		t.Errorf("cdb = % x, want % x", f.cdb, req.CDB)
	}
	if !f.senseZeroed {
		t.Error("sense buffer not zeroed before the ioctl")
	}
	if f.fd != 7 || f.calls != 1 {
		t.Errorf("fd %d calls %d, want 7 and 1", f.fd, f.calls)
	}
}

// TestExecutePROut checks that PR OUT sends the parameter list of the framing
// length (CDB bytes 7-8) as data-out with cmd_len 16, and returns no data.
func TestExecutePROut(t *testing.T) {
	param := pattern(24, 0x31)
	for _, tc := range []struct {
		name    string
		req     *request
		wantOut []byte
		wantLen uint32
		nilPtr  bool
	}{
		{"register", prOut(param), param, 24, false},
		{"empty", prOut(nil), nil, 0, true},
		// Param shorter than the framing length: zero padded, as the buffer is.
		{"short", &request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 24), Param: param[:10]},
			append(bytes.Clone(param[:10]), make([]byte, 14)...), 24, false},
		// Param longer: only the framing length goes out.
		{"long", &request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 8), Param: param}, param[:8], 8, false},
		// Bytes 5-6 of the parameter list length are ignored, like QEMU's framing.
		{"hi-bytes", &request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 0x10018), Param: param}, param, 24, false},
		// A length over 8192 (the server refuses it) is capped, never overruns.
		{"oversized", &request{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 0xffff), Param: param},
			append(bytes.Clone(param), make([]byte, dataLen-24)...), dataLen, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDevice{sbLenWr: -1, data: pattern(64, 1)}
			rep, err := run(newPassthrough(t, f), tc.req)
			if err != nil || rep.Status != scsi.StatusGood || rep.Data != nil {
				t.Errorf("status %#x data %d err %v, want GOOD, no data, nil", rep.Status, len(rep.Data), err)
			}
			want := hdrIn{interfaceID: 'S', dir: DirToDevice, cmdLen: 16, mxSbLen: 96, dxferLen: tc.wantLen, dxferpNil: tc.nilPtr, timeout: 30000}
			if f.in != want {
				t.Errorf("hdr = %+v, want %+v", f.in, want)
			}
			if !bytes.Equal(f.cdb, tc.req.CDB[:]) {
				t.Errorf("cdb = % x, want % x", f.cdb, tc.req.CDB)
			}
			if !bytes.Equal(f.out, tc.wantOut) {
				t.Errorf("data-out = % x, want % x", f.out, tc.wantOut)
			}
		})
	}
}

// TestExecuteDeviceSense checks that a device's CHECK CONDITION sense, fixed or
// descriptor format, reaches the reply byte for byte, and that other device
// statuses pass through with an error naming them.
func TestExecuteDeviceSense(t *testing.T) {
	fixedDev := []byte{0x70, 0, 0x05, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0x24, 0x00, 0, 0xc0, 0x00, 0x02}
	descDev := []byte{0x72, 0x0b, 0x47, 0x03, 0, 0, 0, 0x0c, 0x00, 0x0a, 0x80, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0}
	full := pattern(SenseLen, 0x70)
	full[0], full[2], full[12], full[13] = 0x70, 0x06, 0x2a, 0x03
	for _, tc := range []struct {
		name    string
		status  byte
		sense   []byte
		sbLen   int
		op      *request
		wantErr string
	}{
		{"fixed", 0x02, fixedDev, -1, prOut(pattern(24, 0)), "SG_IO on fd 7: check condition, sense 5/24/00"},
		{"descriptor", 0x02, descDev, -1, prIn(), "SG_IO on fd 7: check condition, sense b/47/03"},
		{"full-96", 0x02, full, -1, prIn(), "SG_IO on fd 7: check condition, sense 6/2a/03"},
		// sb_len_wr 0 but bytes in the buffer: QEMU sends the buffer as it is.
		{"unreported", 0x02, fixedDev, 0, prIn(), "SG_IO on fd 7: check condition, no valid sense"},
		{"conflict", 0x18, nil, -1, prOut(pattern(24, 0)), "SG_IO on fd 7: reservation conflict"},
		{"conflict-in", 0x18, nil, -1, prIn(), "SG_IO on fd 7: reservation conflict"},
		{"busy", 0x08, nil, -1, prIn(), "SG_IO on fd 7: busy"},
		{"task-set-full", 0x28, nil, -1, prIn(), "SG_IO on fd 7: task set full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeDevice{status: tc.status, sense: tc.sense, sbLenWr: tc.sbLen, data: pattern(64, 1), driverStatus: 0x08}
			rep, err := run(newPassthrough(t, f), tc.op)
			if rep.Status != tc.status {
				t.Errorf("status = %#x, want %#x", rep.Status, tc.status)
			}
			var want [SenseLen]byte
			copy(want[:], tc.sense)
			if senseField(rep) != want {
				t.Errorf("sense = % x, want % x", senseField(rep), want)
			}
			if rep.Data != nil {
				t.Errorf("data = %d bytes, want none", len(rep.Data))
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestExecuteOtherOpcode checks that a CDB that is not PR IN/OUT never reaches
// the device and gets INVALID COMMAND OPERATION CODE.
func TestExecuteOtherOpcode(t *testing.T) {
	for _, op := range []byte{0x00, 0x12, 0x28, 0x5d, 0xff} {
		f := &fakeDevice{sbLenWr: -1}
		req := &request{CDB: [16]byte{op}, FD: 7}
		rep, err := run(newPassthrough(t, f), req)
		if f.calls != 0 || rep.Status != 0x02 || senseField(rep) != fixed(0x05, 0x20, 0x00) || err == nil {
			t.Errorf("opcode %#x: calls %d status %#x sense % x err %v", op, f.calls, rep.Status, rep.Sense[:14], err)
		}
	}
}

// TestNewTimeout checks the timeout option and its conversion to milliseconds.
func TestNewTimeout(t *testing.T) {
	for _, tc := range []struct {
		in     time.Duration
		wantMs uint32
		ok     bool
	}{
		{0, 30000, true},
		{time.Millisecond, 1, true},
		{2500 * time.Microsecond, 3, true},
		{time.Nanosecond, 1, true},
		{90 * time.Second, 90000, true},
		{-time.Second, 0, false},
		{time.Duration(math.MaxInt64), 0, false},
	} {
		f := &fakeDevice{sbLenWr: -1}
		b, err := New(Options{Timeout: tc.in, Ioctl: f.ioctl})
		if (err == nil) != tc.ok {
			t.Errorf("New(%v): err = %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			continue
		}
		if _, err := run(b, prIn()); err != nil {
			t.Fatal(err)
		}
		if f.in.timeout != tc.wantMs {
			t.Errorf("New(%v): hdr timeout %d ms, want %d", tc.in, f.in.timeout, tc.wantMs)
		}
	}
	b, err := New(Options{})
	if err != nil || b.Timeout() != DefaultTimeout {
		t.Errorf("New(zero): %v, %v", b, err)
	}
}

// TestExecWith covers the low-level call: argument checks, Result fields, Err.
func TestExecWith(t *testing.T) {
	f := &fakeDevice{}
	if _, err := ExecWith(f.ioctl, 3, nil, DirNone, nil, time.Second); err == nil {
		t.Error("empty CDB accepted")
	}
	if _, err := ExecWith(f.ioctl, 3, make([]byte, 256), DirNone, nil, time.Second); err == nil {
		t.Error("256-byte CDB accepted")
	}
	if _, err := ExecWith(f.ioctl, 3, []byte{0}, DirNone, nil, -time.Second); err == nil {
		t.Error("negative timeout accepted")
	}
	if f.calls != 0 {
		t.Errorf("ioctl called %d times for rejected arguments", f.calls)
	}

	tur := []byte{0, 0, 0, 0, 0, 0}
	notReady := fixed(0x02, 0x04, 0x01)
	f = &fakeDevice{status: 0x02, sense: notReady[:18], sbLenWr: -1, driverStatus: 0x08, resid: 3}
	res, err := ExecWith(f.ioctl, 3, tur, DirNone, nil, 1500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if f.in.cmdLen != 6 || f.in.dir != DirNone || f.in.dxferLen != 0 || !f.in.dxferpNil || f.in.timeout != 1500 {
		t.Errorf("hdr = %+v", f.in)
	}
	if res.Status != 0x02 || res.MaskedStatus != 0x01 || res.DriverStatus != 0x08 || res.Resid != 3 ||
		res.Transferred != 0 || res.SenseWritten != 18 || res.Duration != 5*time.Millisecond {
		t.Errorf("result = %+v", res)
	}
	if s, ok := scsi.ParseSense(res.Sense()); !ok || s != (scsi.Sense{Key: 2, ASC: 4, ASCQ: 1}) || len(res.Sense()) != 18 {
		t.Errorf("Sense() = % x", res.Sense())
	}
	if err := res.Err(); err == nil || err.Error() != "check condition, sense 2/04/01" {
		t.Errorf("Err() = %v", err)
	}

	for _, tc := range []struct {
		r    Result
		want string
	}{
		{Result{}, ""},
		{Result{DriverStatus: 0x08}, ""},
		{Result{HostStatus: 3, Status: 2}, "host status DID_TIME_OUT (0x03)"},
		{Result{HostStatus: 0x99}, "host status 0x99"},
		{Result{DriverStatus: 0x06}, "driver status 0x06"},
		{Result{Status: 0x18}, "reservation conflict"},
		{Result{Status: 0x99}, "status 0x99"},
	} {
		err := tc.r.Err()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%+v.Err() = %q, want %q", tc.r, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%+v.Err() = nil, want %q", tc.r, tc.want)
		}
	}

	// sb_len_wr above mx_sb_len (a broken driver) is clamped.
	f = &fakeDevice{sbLenWr: 200}
	if res, _ := ExecWith(f.ioctl, 3, tur, DirNone, nil, 0); res.SenseWritten != SenseLen || f.in.timeout != 0 {
		t.Errorf("SenseWritten = %d timeout %d, want %d 0", res.SenseWritten, f.in.timeout, SenseLen)
	}
}

// FuzzExecute drives Passthrough.Do with arbitrary kernel answers and requests and
// checks the invariants the wire layer and QEMU's client rely on: no panic, data
// only for PR IN with GOOD and never more than 8192 bytes, and an error for the
// log whenever the reply is not GOOD.
func FuzzExecute(f *testing.F) {
	f.Add(byte(0x5e), uint16(40), []byte(nil), uint16(0), byte(0), uint16(0), uint16(0), int32(0), byte(0), []byte(nil))
	f.Add(byte(0x5f), uint16(24), pattern(24, 1), uint16(0), byte(0x18), uint16(0), uint16(0x08), int32(0), byte(0), []byte(nil))
	invalid := fixed(5, 0x24, 0)
	f.Add(byte(0x5e), uint16(8192), []byte(nil), uint16(0), byte(2), uint16(0), uint16(0x08), int32(-1), byte(18), invalid[:18])
	f.Add(byte(0x5e), uint16(16), []byte(nil), uint16(unix.ENOTTY), byte(0), uint16(0), uint16(0), int32(0), byte(0), []byte(nil))
	f.Add(byte(0x5e), uint16(16), []byte(nil), uint16(0), byte(0), uint16(7), uint16(0), int32(9000), byte(255), pattern(200, 0))
	f.Add(byte(0x5f), uint16(65535), pattern(3, 1), uint16(0), byte(0), uint16(0), uint16(6), int32(math.MinInt32), byte(0), []byte(nil))
	f.Add(byte(0x12), uint16(8), []byte(nil), uint16(0), byte(0), uint16(0), uint16(0), int32(0), byte(0), []byte(nil))
	f.Fuzz(func(t *testing.T, op byte, length uint16, param []byte, errno uint16, status byte, host, driver uint16, resid int32, sbLen byte, sense []byte) {
		var cdb [16]byte
		cdb[0] = op
		cdb[7], cdb[8] = byte(length>>8), byte(length)
		fd := &fakeDevice{errno: unix.Errno(errno), status: status, hostStatus: host, driverStatus: driver,
			resid: resid, sense: sense, sbLenWr: int(sbLen), data: pattern(dataLen, op)}
		rep, err := run(newPassthrough(t, fd), &request{CDB: cdb, Param: param, FD: 5})
		if len(rep.Data) > dataLen {
			t.Fatalf("data %d bytes", len(rep.Data))
		}
		if len(rep.Data) > 0 && (op != scsi.OpPersistentReserveIn || rep.Status != scsi.StatusGood) {
			t.Fatalf("data for op %#x status %#x", op, rep.Status)
		}
		if rep.Status != scsi.StatusGood && err == nil {
			t.Fatalf("status %#x without an error", rep.Status)
		}
		if fd.calls > 0 && fd.in.dxferLen > dataLen {
			t.Fatalf("dxfer_len %d", fd.in.dxferLen)
		}
	})
}

// TestPathFailed: only what happened on the way to the device is a path
// failure; every device answer, CHECK CONDITION and RESERVATION CONFLICT
// included, is not.
func TestPathFailed(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  fakeDevice
		want bool
	}{
		{"GOOD", fakeDevice{sbLenWr: -1}, false},
		{"RESERVATION CONFLICT", fakeDevice{status: scsi.StatusReservationConflict, sbLenWr: -1}, false},
		{"CHECK CONDITION", fakeDevice{status: scsi.StatusCheckCondition, sense: []byte{0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24}, sbLenWr: -1}, false},
		{"ENODEV", fakeDevice{errno: unix.ENODEV}, true},
		{"ENXIO", fakeDevice{errno: unix.ENXIO}, true},
		{"DID_NO_CONNECT", fakeDevice{hostStatus: 0x01, sbLenWr: -1}, true},
		{"DID_TRANSPORT_DISRUPTED", fakeDevice{hostStatus: 0x0e, sbLenWr: -1}, true},
		{"DRIVER_TIMEOUT", fakeDevice{driverStatus: 0x06, sbLenWr: -1}, true},
	} {
		b := newPassthrough(t, &tc.dev)
		o := b.Do(7, scsi.PRInCDB(scsi.SAReadKeys, 40), nil)
		if o.PathFailed() != tc.want {
			t.Errorf("%s: PathFailed %v, want %v (%+v)", tc.name, o.PathFailed(), tc.want, o)
		}
	}
}

// TestPRInBufferReuse checks the pooled PR IN buffer: every command finds it
// all zeros, whatever the previous one left in it, and a reply's data stays
// as it was when the buffer serves the next command.
func TestPRInBufferReuse(t *testing.T) {
	payload := pattern(dataLen, 0x5a)
	calls, dirty := 0, 0
	ioctl := func(fd int, h *Hdr) error {
		calls++
		data := unsafe.Slice((*byte)(h.Dxferp), h.DxferLen)
		if bytes.Count(data, []byte{0}) != len(data) {
			dirty++
		}
		copy(data, payload) // the device fills the whole buffer
		return nil
	}
	p, err := New(Options{Ioctl: ioctl})
	if err != nil {
		t.Fatal(err)
	}
	var first []byte
	for i := 0; i < 50; i++ {
		rep, err := run(p, prIn())
		if err != nil || !bytes.Equal(rep.Data, payload) {
			t.Fatalf("command %d: err %v, data %d bytes, want the payload", i, err, len(rep.Data))
		}
		if i == 0 {
			first = rep.Data
		}
		for j := range rep.Data {
			rep.Data[j] = 0xff // a caller scribbling on its reply
		}
	}
	if calls != 50 || dirty != 0 {
		t.Errorf("%d commands, %d found a buffer not zeroed", calls, dirty)
	}
	if !bytes.Equal(first, bytes.Repeat([]byte{0xff}, dataLen)) {
		t.Error("the first reply's data changed under later commands")
	}
}

// TestCallReuse alternates a device answer that fills the whole sense buffer
// with GOOD answers that write none, on one Passthrough (which reuses its SG_IO
// headers and sense buffers): every command must find the sense buffer zeroed
// and its own CDB, a GOOD reply must carry no sense, and a CHECK CONDITION's
// sense must not change under later commands.
func TestCallReuse(t *testing.T) {
	devSense := pattern(SenseLen, 0x21)
	f := &fakeDevice{}
	p := newPassthrough(t, f)
	var kept []scsi.Result
	for i := range 40 {
		r := prIn()
		r.CDB[8] = byte(i) // a CDB different from the previous command's
		if i%2 == 0 {
			f.status, f.sense, f.sbLenWr = scsi.StatusCheckCondition, devSense, -1
		} else {
			f.status, f.sense, f.sbLenWr = scsi.StatusGood, nil, 0
		}
		rep, _ := run(p, r)
		if !f.senseZeroed {
			t.Fatalf("command %d: the sense buffer was not zeroed on entry", i)
		}
		if !bytes.Equal(f.cdb, r.CDB[:]) {
			t.Fatalf("command %d: cdb = % x, want % x", i, f.cdb, r.CDB)
		}
		switch {
		case i%2 == 1 && senseField(rep) != [SenseLen]byte{}:
			t.Fatalf("command %d: GOOD with sense % x", i, rep.Sense)
		case i%2 == 0 && senseField(rep) != [SenseLen]byte(devSense):
			t.Fatalf("command %d: sense % x, want the device's", i, rep.Sense)
		}
		kept = append(kept, rep)
	}
	for i := 0; i < len(kept); i += 2 {
		if senseField(kept[i]) != [SenseLen]byte(devSense) {
			t.Fatalf("command %d's sense changed under later commands: % x", i, kept[i].Sense)
		}
	}
}

// TestStatusErrText checks that the lazily built error of a device status
// reads as the fmt.Errorf it replaced.
func TestStatusErrText(t *testing.T) {
	sense := make([]byte, 18)
	sense[0], sense[2], sense[7], sense[12] = 0x70, 0x05, 10, 0x24
	for _, c := range []struct {
		status byte
		sense  []byte
	}{{scsi.StatusReservationConflict, nil}, {scsi.StatusCheckCondition, sense}, {scsi.StatusCheckCondition, nil}, {scsi.StatusBusy, nil}} {
		want := fmt.Sprintf("SG_IO on fd %d: %s", 7, describeStatus(c.status, c.sense))
		if got := (&statusErr{fd: 7, status: c.status, sense: c.sense}).Error(); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	f := &fakeDevice{status: scsi.StatusReservationConflict, sbLenWr: -1}
	if _, err := run(newPassthrough(t, f), prIn()); err == nil || err.Error() != fmt.Sprintf("SG_IO on fd %d: reservation conflict", prIn().FD) {
		t.Errorf("RESERVATION CONFLICT: err %v", err)
	}
}
