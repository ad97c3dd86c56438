package linuxpr

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/blkpr"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// fakeCall is what the fake kernel saw of one ioctl.
type fakeCall struct {
	fd  int
	req uint
	in  []byte // the argument struct's bytes on entry
}

// fakeKernel is a scripted kernel: it records the bytes of every ioctl
// argument and answers like the block layer and the nvme driver would,
// writing results into the struct and through the pointers in it.
type fakeKernel struct {
	mu sync.Mutex

	// script
	errno   map[uint]unix.Errno // per request
	ret     map[uint]int        // positive return per request (PR_STS_*)
	gen     uint32
	keys    []uint64
	grow    int // READ_KEYS: keys added after each call (registrations racing)
	resKey  uint64
	resType uint32
	nsid    int
	// NVMe: the report the controller returns for EDS=1 and EDS=0, and the
	// statuses of successive NVME_IOCTL_IO_CMD calls (0 when exhausted).
	nvmeExt, nvmeStd []byte
	nvmeStatus       []int

	// record
	calls []fakeCall
	nvme  []blkpr.NVMePassthru // the commands submitted
	caps  []uint32             // NumKeys on entry of each READ_KEYS
}

// ptrOf reads a user pointer stored in a u64 struct field (64-bit only).
func ptrOf(u *uint64) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(u)) }

func (k *fakeKernel) ioctl(fd int, req uint, arg unsafe.Pointer) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var in []byte
	if arg != nil {
		in = bytes.Clone(unsafe.Slice((*byte)(arg), blkpr.ArgSize(req)))
	}
	k.calls = append(k.calls, fakeCall{fd, req, in})
	if e := k.errno[req]; e != 0 {
		return -1, e
	}
	switch req {
	case blkpr.IOC_PR_READ_KEYS:
		rk := (*blkpr.ReadKeys)(arg)
		k.caps = append(k.caps, rk.NumKeys)
		copy(unsafe.Slice((*uint64)(ptrOf(&rk.KeysPtr)), rk.NumKeys), k.keys)
		rk.NumKeys = uint32(len(k.keys))
		rk.Generation = k.gen
		for range k.grow {
			k.keys = append(k.keys, uint64(len(k.keys)+1))
		}
	case blkpr.IOC_PR_READ_RESERVATION:
		rr := (*blkpr.ReadReservation)(arg)
		rr.Key, rr.Generation, rr.Type = k.resKey, k.gen, k.resType
	case blkpr.NVME_IOCTL_ID:
		return k.nsid, nil
	case blkpr.NVME_IOCTL_IO_CMD:
		c := (*blkpr.NVMePassthru)(arg)
		k.nvme = append(k.nvme, *c)
		if len(k.nvmeStatus) > 0 {
			st := k.nvmeStatus[0]
			k.nvmeStatus = k.nvmeStatus[1:]
			if st != 0 {
				return st, nil
			}
		}
		src := k.nvmeStd
		if c.CDW11&1 != 0 {
			src = k.nvmeExt
		}
		copy(unsafe.Slice((*byte)(ptrOf(&c.Addr)), c.DataLen), src)
	}
	return k.ret[req], nil
}

func (k *fakeKernel) reqs() []uint {
	var r []uint
	for _, c := range k.calls {
		r = append(r, c.req)
	}
	return r
}

// fakeSG is a scripted SG_IO device for the SCSI fallback.
type fakeSG struct {
	calls int
	cdb   []byte
	data  []byte
	errno unix.Errno
}

func (f *fakeSG) ioctl(fd int, h *sgio.Hdr) error {
	f.calls++
	f.cdb = bytes.Clone(unsafe.Slice((*byte)(h.Cmdp), h.CmdLen))
	if f.errno != 0 {
		return f.errno
	}
	n := copy(unsafe.Slice((*byte)(h.Dxferp), h.DxferLen), f.data)
	h.Resid = int32(h.DxferLen) - int32(n)
	return nil
}

func newBackend(t *testing.T, k *fakeKernel, sg *fakeSG, kind DeviceKind) *Backend {
	t.Helper()
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the fake kernel reads u64 user pointers")
	}
	opts := Options{Ioctl: k.ioctl, Kind: func(int) DeviceKind { return kind }}
	if sg != nil {
		opts.SGIO = sg.ioctl
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixed is 18 bytes of fixed-format sense zero padded to 96, written out here
// rather than taken from scsi.Sense.Fixed so the tests check the bytes.
// senseField is the 96-byte sense field of the helper reply that carries r, as the
// server fills it: r.Sense, zero filled.
func senseField(r scsi.Result) (f [wire.SenseSize]byte) {
	copy(f[:], r.Sense)
	return f
}

func fixed(key, asc, ascq byte) [wire.SenseSize]byte {
	var b [wire.SenseSize]byte
	b[0], b[2], b[7], b[12], b[13] = 0x70, key, 10, asc, ascq
	return b
}

// Host-endian struct images, built field by field from the offsets of
// include/uapi/linux/pr.h.
func regBytes(old, new uint64, flags uint32) []byte {
	b := make([]byte, 24)
	binary.NativeEndian.PutUint64(b[0:], old)
	binary.NativeEndian.PutUint64(b[8:], new)
	binary.NativeEndian.PutUint32(b[16:], flags)
	return b
}

func resBytes(key uint64, typ uint32) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint64(b[0:], key)
	binary.NativeEndian.PutUint32(b[8:], typ)
	return b
}

func preBytes(old, new uint64, typ uint32) []byte {
	b := make([]byte, 24)
	binary.NativeEndian.PutUint64(b[0:], old)
	binary.NativeEndian.PutUint64(b[8:], new)
	binary.NativeEndian.PutUint32(b[16:], typ)
	return b
}

func clrBytes(key uint64) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint64(b[0:], key)
	return b
}

const (
	rk   = uint64(0x1122334455667788)
	sark = uint64(0x99aabbccddeeff00)
)

// param is a basic PR OUT parameter list (SPC-4 §6.16.3) with byte 20 = flags.
func param(key, saKey uint64, flags byte) []byte {
	b := make([]byte, 24)
	binary.BigEndian.PutUint64(b[0:], key)
	binary.BigEndian.PutUint64(b[8:], saKey)
	b[20] = flags
	return b
}

func outReq(sa, scope, typ byte, listLen uint32, p []byte) *backend.Request {
	return &backend.Request{CDB: scsi.PROutCDB(sa, scope, typ, listLen), Param: p, FD: 9}
}

// TestPROutTranslation checks, per service action, the one ioctl the kernel
// receives and the bytes of its argument.
func TestPROutTranslation(t *testing.T) {
	for _, tc := range []struct {
		name string
		req  *backend.Request
		ioc  uint
		arg  []byte
	}{
		{"register", outReq(scsi.SARegister, 0, 0, 24, param(rk, sark, 0)), blkpr.IOC_PR_REGISTER, regBytes(rk, sark, 0)},
		// APTPL is not passed (sd forces it); scope/type are ignored by REGISTER.
		{"register-aptpl", outReq(scsi.SARegister, 1, 5, 24, param(rk, sark, scsi.ParamAPTPL)), blkpr.IOC_PR_REGISTER, regBytes(rk, sark, 0)},
		{"register-unregister", outReq(scsi.SARegister, 0, 0, 24, param(rk, 0, 0)), blkpr.IOC_PR_REGISTER, regBytes(rk, 0, 0)},
		{"register-ignore", outReq(scsi.SARegisterAndIgnoreExisting, 0, 0, 24, param(rk, sark, 0)), blkpr.IOC_PR_REGISTER, regBytes(rk, sark, blkpr.PR_FL_IGNORE_KEY)},
		{"reserve-WE", outReq(scsi.SAReserve, 0, 0x1, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 1)},
		{"reserve-EA", outReq(scsi.SAReserve, 0, 0x3, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 2)},
		{"reserve-WE-RO", outReq(scsi.SAReserve, 0, 0x5, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 3)},
		{"reserve-EA-RO", outReq(scsi.SAReserve, 0, 0x6, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 4)},
		{"reserve-WE-AR", outReq(scsi.SAReserve, 0, 0x7, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 5)},
		{"reserve-EA-AR", outReq(scsi.SAReserve, 0, 0x8, 24, param(rk, 0, 0)), blkpr.IOC_PR_RESERVE, resBytes(rk, 6)},
		// ALL_TG_PT and APTPL are ignored outside REGISTER (SPC-4 §6.16.3).
		{"reserve-all-tg-pt", outReq(scsi.SAReserve, 0, 0x3, 24, param(rk, sark, scsi.ParamAllTgPt|scsi.ParamAPTPL)), blkpr.IOC_PR_RESERVE, resBytes(rk, 2)},
		{"release", outReq(scsi.SARelease, 0, 0x5, 24, param(rk, 0, 0)), blkpr.IOC_PR_RELEASE, resBytes(rk, 3)},
		{"clear", outReq(scsi.SAClear, 0xf, 0xf, 24, param(rk, sark, 0)), blkpr.IOC_PR_CLEAR, clrBytes(rk)},
		{"preempt", outReq(scsi.SAPreempt, 0, 0x8, 24, param(rk, sark, 0)), blkpr.IOC_PR_PREEMPT, preBytes(rk, sark, 6)},
		{"preempt-abort", outReq(scsi.SAPreemptAndAbort, 0, 0x1, 24, param(rk, sark, 0)), blkpr.IOC_PR_PREEMPT_ABORT, preBytes(rk, sark, 1)},
		// A short Param with a 24-byte CDB length reads as zero padded.
		{"short-param", outReq(scsi.SARegister, 0, 0, 24, param(rk, sark, 0)[:12]), blkpr.IOC_PR_REGISTER, regBytes(rk, 0x99aabbcc00000000, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{}
			rep, err := newBackend(t, k, nil, KindSCSI).Execute(context.Background(), tc.req)
			if err != nil || rep.Status != scsi.StatusGood || rep.Data != nil || senseField(rep) != ([wire.SenseSize]byte{}) {
				t.Errorf("reply %#x data %d err %v, want GOOD", rep.Status, len(rep.Data), err)
			}
			if len(k.calls) != 1 {
				t.Fatalf("%d ioctls, want 1", len(k.calls))
			}
			c := k.calls[0]
			if c.fd != 9 || c.req != tc.ioc {
				t.Errorf("ioctl(fd %d, %#x), want (9, %#x)", c.fd, c.req, tc.ioc)
			}
			if !bytes.Equal(c.in, tc.arg) {
				t.Errorf("argument = % x\nwant       % x", c.in, tc.arg)
			}
		})
	}
}

// TestPROutRefused checks the commands answered without calling the kernel.
func TestPROutRefused(t *testing.T) {
	invalidCDB := fixed(0x05, 0x24, 0x00)
	invalidParam := fixed(0x05, 0x26, 0x00)
	paramLen := fixed(0x05, 0x1a, 0x00)
	long := append(param(rk, sark, scsi.ParamSpecIPT), 0, 0, 0, 24)
	long = append(long, make([]byte, 24)...)
	for _, tc := range []struct {
		name  string
		req   *backend.Request
		sense [wire.SenseSize]byte
		why   string
	}{
		{"register-and-move", outReq(scsi.SARegisterAndMove, 0, 0, 48, make([]byte, 48)), invalidCDB, "REGISTER AND MOVE"},
		{"replace-lost", outReq(scsi.SAReplaceLostReservation, 0, 1, 24, param(rk, 0, 0)), invalidCDB, "REPLACE LOST RESERVATION"},
		{"reserved-sa", outReq(0x1f, 0, 0, 24, param(rk, 0, 0)), invalidCDB, "reserved"},
		{"len-0", outReq(scsi.SARegister, 0, 0, 0, nil), paramLen, "length 0"},
		{"len-23", outReq(scsi.SARegister, 0, 0, 23, param(rk, sark, 0)[:23]), paramLen, "length 23"},
		{"len-25", outReq(scsi.SAReserve, 0, 1, 25, append(param(rk, 0, 0), 0)), paramLen, "length 25"},
		// Bytes 5-6 of the 32-bit length count even though QEMU frames on 7-8.
		{"len-hi-bytes", outReq(scsi.SARegister, 0, 0, 0x10018, param(rk, sark, 0)), paramLen, "length 65560"},
		{"spec-i-pt-24", outReq(scsi.SARegister, 0, 0, 24, param(rk, sark, scsi.ParamSpecIPT)), invalidParam, "SPEC_I_PT"},
		{"spec-i-pt-tids", outReq(scsi.SARegister, 0, 0, uint32(len(long)), long), invalidParam, "SPEC_I_PT"},
		{"spec-i-pt-reserve", outReq(scsi.SAReserve, 0, 1, 24, param(rk, 0, scsi.ParamSpecIPT)), invalidParam, "SPEC_I_PT"},
		// SPEC_I_PT is checked after a length below 24 (LIO's order).
		{"spec-i-pt-short", outReq(scsi.SARegister, 0, 0, 22, param(rk, sark, scsi.ParamSpecIPT)[:22]), paramLen, "length 22"},
		{"all-tg-pt-register", outReq(scsi.SARegister, 0, 0, 24, param(rk, sark, scsi.ParamAllTgPt)), invalidParam, "ALL_TG_PT"},
		{"all-tg-pt-ignore", outReq(scsi.SARegisterAndIgnoreExisting, 0, 0, 24, param(rk, sark, scsi.ParamAllTgPt)), invalidParam, "ALL_TG_PT"},
		{"scope-reserve", outReq(scsi.SAReserve, 1, 1, 24, param(rk, 0, 0)), invalidCDB, "scope"},
		{"scope-release", outReq(scsi.SARelease, 2, 3, 24, param(rk, 0, 0)), invalidCDB, "scope"},
		{"scope-preempt", outReq(scsi.SAPreempt, 0xf, 3, 24, param(rk, sark, 0)), invalidCDB, "scope"},
		{"type0-reserve", outReq(scsi.SAReserve, 0, 0, 24, param(rk, 0, 0)), invalidCDB, "type 0x0"},
		{"type2-reserve", outReq(scsi.SAReserve, 0, 2, 24, param(rk, 0, 0)), invalidCDB, "type 0x2"},
		{"type4-release", outReq(scsi.SARelease, 0, 4, 24, param(rk, 0, 0)), invalidCDB, "type 0x4"},
		{"type9-preempt", outReq(scsi.SAPreempt, 0, 9, 24, param(rk, sark, 0)), invalidCDB, "type 0x9"},
		{"typeF-preempt-abort", outReq(scsi.SAPreemptAndAbort, 0, 0xf, 24, param(rk, sark, 0)), invalidCDB, "type 0xf"},
		{"type0-preempt", outReq(scsi.SAPreempt, 0, 0, 24, param(rk, sark, 0)), invalidCDB, "type 0x0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{}
			rep, err := newBackend(t, k, nil, KindSCSI).Execute(context.Background(), tc.req)
			if len(k.calls) != 0 {
				t.Errorf("kernel called: %x", k.reqs())
			}
			if rep.Status != scsi.StatusCheckCondition || senseField(rep) != tc.sense || rep.Data != nil {
				t.Errorf("reply %#x sense % x, want CHECK CONDITION % x", rep.Status, rep.Sense, tc.sense[:14])
			}
			if err == nil || !strings.Contains(err.Error(), tc.why) || !strings.Contains(err.Error(), "fd 9") {
				t.Errorf("err = %v, want it to mention %q and the fd", err, tc.why)
			}
		})
	}
}

// TestResultMapping covers every ioctl outcome: PR_STS_* return values and
// errnos, on PR OUT and on the PR IN read ioctls.
func TestResultMapping(t *testing.T) {
	none := [wire.SenseSize]byte{}
	for _, tc := range []struct {
		name   string
		ret    int
		errno  unix.Errno
		status byte
		sense  [wire.SenseSize]byte
		errHas string
	}{
		{"success", blkpr.PR_STS_SUCCESS, 0, 0x00, none, ""},
		{"conflict", blkpr.PR_STS_RESERVATION_CONFLICT, 0, 0x18, none, "reservation conflict"},
		{"ioerr", blkpr.PR_STS_IOERR, 0, 0x02, fixed(0x0b, 0x00, 0x06), "PR_STS_IOERR (the device's sense is not available"},
		{"retry-path", blkpr.PR_STS_RETRY_PATH_FAILURE, 0, 0x02, fixed(0x0b, 0x29, 0x07), "PR_STS_RETRY_PATH_FAILURE"},
		{"path-failed", blkpr.PR_STS_PATH_FAILED, 0, 0x02, fixed(0x0b, 0x29, 0x07), "PR_STS_PATH_FAILED"},
		{"path-fast-failed", blkpr.PR_STS_PATH_FAST_FAILED, 0, 0x02, fixed(0x0b, 0x29, 0x07), "PR_STS_PATH_FAST_FAILED"},
		// Raw SCSI results of kernels before 6.4 (Linux 6.1 in the lab).
		{"raw-conflict-6.1", 0x118, 0, 0x18, none, "raw SCSI result 0x118 (status 0x18, host byte 0x00; kernel before 6.4), reported as RESERVATION CONFLICT"},
		{"raw-busy", 0x08, 0, 0x08, none, "reported as BUSY"},
		{"raw-task-set-full", 0x28, 0, 0x28, none, "reported as TASK SET FULL"},
		{"raw-cc-driver-sense", 0x08000002, 0, 0x02, fixed(0x0b, 0x00, 0x06), "sense is not available"},
		{"raw-ml-byte", 0x0345, 0, 0x02, fixed(0x0b, 0x00, 0x06), "raw SCSI result 0x345"},
		{"raw-did-time-out", 0x30000, 0, 0x02, fixed(0x0b, 0x2e, 0x02), "host byte 0x03"},
		{"raw-did-error", 0x70002, 0, 0x02, fixed(0x0b, 0x00, 0x06), "host byte 0x07"},
		{"raw-did-reset", 0x80000, 0, 0x02, fixed(0x06, 0x29, 0x00), "host byte 0x08"},
		{"raw-did-nexus-failure", 0x110000, 0, 0x18, none, "RESERVATION CONFLICT"},
		{"raw-did-no-connect", 0x10002, 0, 0x02, fixed(0x0b, 0x29, 0x07), "host byte 0x01"},
		{"raw-did-failfast", 0xf0018, 0, 0x02, fixed(0x0b, 0x29, 0x07), "host byte 0x0f"},
		{"eopnotsupp", 0, unix.EOPNOTSUPP, 0x02, fixed(0x05, 0x20, 0x00), "no support"},
		{"eperm", 0, unix.EPERM, 0x02, fixed(0x0b, 0x00, 0x06), "CAP_SYS_ADMIN before Linux 6.5"},
		{"eacces", 0, unix.EACCES, 0x02, fixed(0x0b, 0x00, 0x06), "writable fd"},
		{"einval", 0, unix.EINVAL, 0x02, fixed(0x05, 0x24, 0x00), "invalid argument"},
		{"enotty", 0, unix.ENOTTY, 0x02, fixed(0x0b, 0x00, 0x06), "inappropriate ioctl"},
		{"eagain", 0, unix.EAGAIN, 0x02, fixed(0x0b, 0x00, 0x06), "resource temporarily unavailable"},
		{"enodev", 0, unix.ENODEV, 0x02, fixed(0x04, 0x44, 0x00), "no such device"},
		{"ebade", 0, unix.EBADE, 0x18, none, "invalid exchange"},
		{"enomem", 0, unix.ENOMEM, 0x02, fixed(0x04, 0x44, 0x00), "cannot allocate memory"},
	} {
		for _, op := range []struct {
			req  *backend.Request
			ioc  uint
			name string
		}{
			{outReq(scsi.SARegister, 0, 0, 24, param(0, sark, 0)), blkpr.IOC_PR_REGISTER, "IOC_PR_REGISTER"},
			{outReq(scsi.SAPreempt, 0, 1, 24, param(rk, sark, 0)), blkpr.IOC_PR_PREEMPT, "IOC_PR_PREEMPT"},
			{&backend.Request{CDB: scsi.PRInCDB(scsi.SAReadKeys, 100), FD: 9}, blkpr.IOC_PR_READ_KEYS, "IOC_PR_READ_KEYS"},
			{&backend.Request{CDB: scsi.PRInCDB(scsi.SAReadReservation, 100), FD: 9}, blkpr.IOC_PR_READ_RESERVATION, "IOC_PR_READ_RESERVATION"},
		} {
			t.Run(tc.name+"/"+op.name, func(t *testing.T) {
				k := &fakeKernel{ret: map[uint]int{op.ioc: tc.ret}, errno: map[uint]unix.Errno{op.ioc: tc.errno}}
				// KindNotBlock: no probe, so the scripted answer is the one served.
				rep, err := newBackend(t, k, nil, KindNotBlock).Execute(context.Background(), op.req)
				if rep.Status != tc.status || senseField(rep) != tc.sense {
					t.Errorf("reply %#x sense % x, want %#x % x", rep.Status, rep.Sense, tc.status, tc.sense[:14])
				}
				if tc.status != scsi.StatusGood && rep.Data != nil {
					t.Errorf("data %d bytes with status %#x", len(rep.Data), rep.Status)
				}
				if tc.errHas == "" {
					if err != nil {
						t.Errorf("err = %v, want nil", err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.HasPrefix(err.Error(), op.name+" on fd 9") {
					t.Errorf("err = %v, want %q prefix and %q", err, op.name+" on fd 9", tc.errHas)
				}
				if tc.errno != 0 && !errors.Is(err, tc.errno) {
					t.Errorf("err = %v, does not wrap %v", err, tc.errno)
				}
			})
		}
	}
}

func inReq(sa byte, alloc uint16) *backend.Request {
	return &backend.Request{CDB: scsi.PRInCDB(sa, alloc), FD: 9}
}

// TestProbe checks that the read ioctls are probed once per backend, that
// ENOTTY and EINVAL mean absent (SG_IO fallback for SCSI) and that any other
// answer means present.
func TestProbe(t *testing.T) {
	sgData := []byte{0, 0, 0, 7, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name    string
		probe   unix.Errno
		present bool
	}{
		{"enotty", unix.ENOTTY, false},
		{"einval-6.1", unix.EINVAL, false},
		{"ok", 0, true},
		{"eperm", unix.EPERM, true},
		{"eopnotsupp", unix.EOPNOTSUPP, true},
	} {
		for _, kind := range []DeviceKind{KindSCSI, KindUnknown} {
			t.Run(tc.name+"/"+kind.String(), func(t *testing.T) {
				k := &fakeKernel{gen: 3, keys: []uint64{0x0102030405060708}, errno: map[uint]unix.Errno{blkpr.IOC_PR_READ_RESERVATION: tc.probe}}
				sg := &fakeSG{data: sgData}
				b := newBackend(t, k, sg, kind)
				for i := range 3 {
					rep, err := b.Execute(context.Background(), inReq(scsi.SAReadKeys, 64))
					if tc.present {
						want := []byte{0, 0, 0, 3, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}
						if err != nil || rep.Status != scsi.StatusGood || !bytes.Equal(rep.Data, want) {
							t.Errorf("call %d: %#x % x %v, want GOOD % x", i, rep.Status, rep.Data, err, want)
						}
					} else if err != nil || rep.Status != scsi.StatusGood || !bytes.Equal(rep.Data, sgData) {
						t.Errorf("call %d: %#x % x %v, want the device's bytes via SG_IO", i, rep.Status, rep.Data, err)
					}
				}
				probes, reads := 0, 0
				for _, r := range k.reqs() {
					switch r {
					case blkpr.IOC_PR_READ_RESERVATION:
						probes++
					case blkpr.IOC_PR_READ_KEYS:
						reads++
					}
				}
				if probes != 1 {
					t.Errorf("%d probes, want 1", probes)
				}
				if tc.present && (reads != 3 || sg.calls != 0) {
					t.Errorf("present: %d READ_KEYS, %d SG_IO; want 3, 0", reads, sg.calls)
				}
				if !tc.present {
					want := inReq(scsi.SAReadKeys, 64).CDB
					if reads != 0 || sg.calls != 3 || !bytes.Equal(sg.cdb, want[:]) {
						t.Errorf("absent: %d READ_KEYS, %d SG_IO (cdb % x); want 0, 3, % x", reads, sg.calls, sg.cdb, want)
					}
				}
			})
		}
	}

	// KindNotBlock never probes nor falls back: the kernel's answer is served.
	k := &fakeKernel{errno: map[uint]unix.Errno{blkpr.IOC_PR_READ_KEYS: unix.ENOTTY, blkpr.IOC_PR_READ_RESERVATION: unix.ENOTTY}}
	sg := &fakeSG{}
	rep, err := newBackend(t, k, sg, KindNotBlock).Execute(context.Background(), inReq(scsi.SAReadKeys, 64))
	if len(k.calls) != 1 || k.calls[0].req != blkpr.IOC_PR_READ_KEYS || sg.calls != 0 ||
		rep.Status != scsi.StatusCheckCondition || senseField(rep) != fixed(0x0b, 0, 6) || !errors.Is(err, unix.ENOTTY) {
		t.Errorf("not-block: calls %x sg %d reply %#x err %v", k.reqs(), sg.calls, rep.Status, err)
	}

	// The SG_IO fallback's errors are wrapped with what happened.
	k = &fakeKernel{errno: map[uint]unix.Errno{blkpr.IOC_PR_READ_RESERVATION: unix.EINVAL}}
	sg = &fakeSG{errno: unix.EPERM}
	rep, err = newBackend(t, k, sg, KindSCSI).Execute(context.Background(), inReq(scsi.SAReadReservation, 64))
	if rep.Status != scsi.StatusCheckCondition || senseField(rep) != fixed(0x0b, 0, 6) || err == nil ||
		!strings.Contains(err.Error(), "SG_IO fallback") || !strings.Contains(err.Error(), "CAP_SYS_RAWIO") || !errors.Is(err, unix.EPERM) {
		t.Errorf("SG_IO fallback failure: %#x % x %v", rep.Status, rep.Sense, err)
	}
}

// TestProbeConcurrent runs the first requests concurrently: one probe only
// (run with -race).
func TestProbeConcurrent(t *testing.T) {
	k := &fakeKernel{gen: 1, keys: []uint64{1, 2}}
	b := newBackend(t, k, nil, KindSCSI)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if rep, err := b.Execute(context.Background(), inReq(scsi.SAReadKeys, 100)); err != nil || rep.Status != 0 {
				t.Errorf("%#x %v", rep.Status, err)
			}
		})
	}
	wg.Wait()
	n := 0
	for _, r := range k.reqs() {
		if r == blkpr.IOC_PR_READ_RESERVATION {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d probes, want 1", n)
	}
}

func keysData(gen uint32, addLen uint32, keys ...uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, gen)
	b = binary.BigEndian.AppendUint32(b, addLen)
	for _, k := range keys {
		b = binary.BigEndian.AppendUint64(b, k)
	}
	return b
}

func seq(n int) []uint64 {
	k := make([]uint64, n)
	for i := range k {
		k[i] = 0xabc0000000000000 | uint64(i+1)
	}
	return k
}

// TestReadKeys checks IOC_PR_READ_KEYS capacities (16 first, then the
// announced count, bounded by the allocation length) and the re-encoded data.
func TestReadKeys(t *testing.T) {
	for _, tc := range []struct {
		name  string
		keys  int
		grow  int
		alloc uint16
		caps  []uint32
		want  []byte
	}{
		{"none", 0, 0, 8192, []uint32{16}, keysData(9, 0)},
		{"two", 2, 0, 8192, []uint32{16}, keysData(9, 16, seq(2)...)},
		{"sixteen", 16, 0, 8192, []uint32{16}, keysData(9, 128, seq(16)...)},
		{"grow-20", 20, 0, 8192, []uint32{16, 20}, keysData(9, 160, seq(20)...)},
		{"grow-1000", 1000, 0, 8192, []uint32{16, 1000}, keysData(9, 8000, seq(1000)...)},
		// 8192 bytes hold 1023 keys: ask for no more; ADDITIONAL LENGTH counts all.
		{"grow-capped", 2000, 0, 8192, []uint32{16, 1023}, keysData(9, 16000, seq(1023)...)},
		// Allocation length 40 holds 4 keys: no retry, full count announced.
		{"alloc-40", 20, 0, 40, []uint32{4}, keysData(9, 160, seq(4)...)},
		{"alloc-100", 20, 0, 100, []uint32{11}, keysData(9, 160, seq(11)...)},
		{"alloc-8", 3, 0, 8, []uint32{1}, keysData(9, 24)},
		{"alloc-0", 3, 0, 0, []uint32{1}, keysData(9, 24)},
		// Registrations racing with the read: the retries stop after 4.
		{"racing", 20, 5, 8192, []uint32{16, 20, 25, 30}, keysData(9, 280, append(seq(20), 21, 22, 23, 24, 25, 26, 27, 28, 29, 30)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{gen: 9, keys: seq(tc.keys), grow: tc.grow}
			b := newBackend(t, k, nil, KindSCSI)
			rep, err := b.Execute(context.Background(), inReq(scsi.SAReadKeys, tc.alloc))
			if err != nil || rep.Status != scsi.StatusGood {
				t.Fatalf("%#x %v", rep.Status, err)
			}
			if !equalU32(k.caps, tc.caps) {
				t.Errorf("capacities = %v, want %v", k.caps, tc.caps)
			}
			if !bytes.Equal(rep.Data, tc.want) {
				t.Errorf("data (%d bytes) = % x…\nwant (%d bytes)  % x…", len(rep.Data), head(rep.Data), len(tc.want), head(tc.want))
			}
			if kd, err := scsi.DecodeKeys(rep.Data); err != nil || kd.Generation != 9 {
				t.Errorf("data does not decode: %+v %v", kd, err)
			}
		})
	}
}

func head(b []byte) []byte { return b[:min(len(b), 40)] }

func equalU32(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestReadReservation checks IOC_PR_READ_RESERVATION re-encoded as SCSI data.
func TestReadReservation(t *testing.T) {
	resv := func(gen uint32, key uint64, typ byte) []byte {
		b := keysData(gen, 16, key)
		return append(b, 0, 0, 0, 0, 0, typ, 0, 0)
	}
	for _, tc := range []struct {
		name string
		key  uint64
		typ  uint32
		want []byte
	}{
		{"none", 0, 0, keysData(4, 0)},
		{"WE", rk, 1, resv(4, rk, 0x01)},
		{"EA", rk, 2, resv(4, rk, 0x03)},
		{"WE-RO", rk, 3, resv(4, rk, 0x05)},
		{"EA-RO", rk, 4, resv(4, rk, 0x06)},
		{"WE-AR", 0, 5, resv(4, 0, 0x07)},
		{"EA-AR-key", rk, 6, resv(4, 0, 0x08)},
		// sd reports type 0 for a SCSI type it cannot name: still held.
		{"unnamed-type", rk, 0, resv(4, rk, 0)},
		{"out-of-range-type", rk, 77, resv(4, rk, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &fakeKernel{gen: 4, resKey: tc.key, resType: tc.typ}
			rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadReservation, 8192))
			if err != nil || rep.Status != 0 || !bytes.Equal(rep.Data, tc.want) {
				t.Errorf("%#x % x %v, want GOOD % x", rep.Status, rep.Data, err, tc.want)
			}
		})
	}
}

// TestPRInOthers covers REPORT CAPABILITIES (no kernel call), READ FULL STATUS
// and reserved service actions, other opcodes and a nil request.
func TestPRInOthers(t *testing.T) {
	k := &fakeKernel{}
	b := newBackend(t, k, nil, KindSCSI)
	rep, err := b.Execute(context.Background(), inReq(scsi.SAReportCapabilities, 8))
	if err != nil || rep.Status != 0 || !bytes.Equal(rep.Data, []byte{0, 8, 0x01, 0x81, 0xea, 0x01, 0, 0}) {
		t.Errorf("REPORT CAPABILITIES: %#x % x %v", rep.Status, rep.Data, err)
	}
	for _, sa := range []byte{scsi.SAReadFullStatus, 0x04, 0x1f} {
		rep, err = b.Execute(context.Background(), inReq(sa, 8192))
		if rep.Status != 2 || senseField(rep) != fixed(5, 0x24, 0) || err == nil || rep.Data != nil {
			t.Errorf("PR IN SA %#x: %#x % x %v", sa, rep.Status, rep.Sense, err)
		}
	}
	for _, op := range []byte{0x00, 0x12, 0x5d} {
		rep, err = b.Execute(context.Background(), &backend.Request{CDB: [16]byte{op}, FD: 9})
		if rep.Status != 2 || senseField(rep) != fixed(5, 0x20, 0) || err == nil {
			t.Errorf("opcode %#x: %#x % x %v", op, rep.Status, rep.Sense, err)
		}
	}
	rep, err = b.Execute(context.Background(), nil)
	if rep.Status != 2 || err == nil {
		t.Errorf("nil request: %#x %v", rep.Status, err)
	}
	if len(k.calls) != 0 {
		t.Errorf("kernel called: %x", k.reqs())
	}
	if b.Name() != "linuxpr" {
		t.Errorf("Name = %q", b.Name())
	}
}

// TestNVMeFallback checks the NVMe Reservation Report path on a kernel without
// IOC_PR_READ_*: the command submitted and the SCSI data served.
func TestNVMeFallback(t *testing.T) {
	k1, k2 := uint64(0x1111111111111111), uint64(0x2222222222222222)
	two := []nvmeEntry{{cntlid: 1, key: k1, hostID: hostA}, {cntlid: 2, rcsts: 1, key: k2, hostID: hostB}}
	absent := map[uint]unix.Errno{blkpr.IOC_PR_READ_RESERVATION: unix.ENOTTY}

	t.Run("read-keys", func(t *testing.T) {
		k := &fakeKernel{errno: absent, nsid: 3, nvmeExt: nvmeReportBytes(true, 12, 2, 2, 1, two)}
		rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadKeys, 8192))
		if err != nil || rep.Status != 0 || !bytes.Equal(rep.Data, keysData(12, 16, k1, k2)) {
			t.Errorf("%#x % x %v", rep.Status, rep.Data, err)
		}
		if len(k.nvme) != 1 {
			t.Fatalf("%d NVMe commands, want 1", len(k.nvme))
		}
		c := k.nvme[0]
		n := uint32(64 + 64*16)
		if c.Opcode != 0x0e || c.NSID != 3 || c.DataLen != n || c.CDW10 != n/4-1 || c.CDW11 != 1 || c.Addr == 0 ||
			c.Flags != 0 || c.CDW12 != 0 || c.CDW13 != 0 || c.Metadata != 0 || c.MetadataLen != 0 {
			t.Errorf("command = %+v", c)
		}
		want := []uint{blkpr.IOC_PR_READ_RESERVATION, blkpr.NVME_IOCTL_ID, blkpr.NVME_IOCTL_IO_CMD}
		if got := k.reqs(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("ioctls = %x, want %x", got, want)
		}
	})

	t.Run("read-reservation", func(t *testing.T) {
		k := &fakeKernel{errno: absent, nsid: 1, nvmeExt: nvmeReportBytes(true, 12, 2, 2, 0, two)}
		rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadReservation, 8192))
		want := append(keysData(12, 16, k2), 0, 0, 0, 0, 0, 0x03, 0, 0)
		if err != nil || rep.Status != 0 || !bytes.Equal(rep.Data, want) {
			t.Errorf("%#x % x %v, want % x", rep.Status, rep.Data, err, want)
		}
	})

	t.Run("growth", func(t *testing.T) {
		var many []nvmeEntry
		for i := range 20 {
			many = append(many, nvmeEntry{cntlid: uint16(i), key: uint64(i + 1)})
		}
		k := &fakeKernel{errno: absent, nsid: 1, nvmeExt: nvmeReportBytes(true, 2, 0, 20, 0, many)}
		rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadKeys, 8192))
		var keys []uint64
		for i := range 20 {
			keys = append(keys, uint64(i+1))
		}
		if err != nil || rep.Status != 0 || !bytes.Equal(rep.Data, keysData(2, 160, keys...)) {
			t.Errorf("%#x % x %v", rep.Status, head(rep.Data), err)
		}
		if len(k.nvme) != 2 || k.nvme[0].DataLen != 64+64*16 || k.nvme[1].DataLen != 64+64*20 || k.nvme[1].CDW10 != (64+64*20)/4-1 {
			t.Errorf("commands: %d, lengths %v", len(k.nvme), lens(k.nvme))
		}
		// An allocation length for 2 keys: one small report, no growth.
		k = &fakeKernel{errno: absent, nsid: 1, nvmeExt: nvmeReportBytes(true, 2, 0, 20, 0, many)}
		rep, err = newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadKeys, 24))
		if err != nil || !bytes.Equal(rep.Data, keysData(2, 160, 1, 2)) || len(k.nvme) != 1 || k.nvme[0].DataLen != 64+64*2 {
			t.Errorf("alloc 24: % x %v, lengths %v", rep.Data, err, lens(k.nvme))
		}
	})

	t.Run("host-id-inconsistent", func(t *testing.T) {
		std := []nvmeEntry{{cntlid: 1, rcsts: 1, key: k1, hostID: hostA[:8]}}
		// 0x4018: Host Identifier Inconsistent with DNR set.
		k := &fakeKernel{errno: absent, nsid: 1, nvmeStatus: []int{0x4018}, nvmeStd: nvmeReportBytes(false, 5, 1, 1, 0, std)}
		rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadReservation, 8192))
		want := append(keysData(5, 16, k1), 0, 0, 0, 0, 0, 0x01, 0, 0)
		if err != nil || !bytes.Equal(rep.Data, want) {
			t.Errorf("% x %v, want % x", rep.Data, err, want)
		}
		if len(k.nvme) != 2 || k.nvme[0].CDW11 != 1 || k.nvme[1].CDW11 != 0 || k.nvme[1].DataLen != 24+24*16 {
			t.Errorf("commands = %+v", k.nvme)
		}
	})

	for _, tc := range []struct {
		name   string
		status int
		idErr  unix.Errno
		ioErr  unix.Errno
		rstat  byte
		sense  [wire.SenseSize]byte
		errHas string
	}{
		{"conflict", 0x4083, 0, 0, 0x18, [wire.SenseSize]byte{}, "reservation conflict"},
		{"invalid-opcode", 0x4001, 0, 0, 0x02, fixed(5, 0x20, 0), "status 0x4001"},
		{"invalid-field", 0x0002, 0, 0, 0x02, fixed(5, 0x24, 0), "invalid argument"},
		{"path", 0x0371, 0, 0, 0x02, fixed(0x0b, 0x29, 0x07), "PR_STS_PATH_FAILED"},
		{"internal", 0x0006, 0, 0, 0x02, fixed(0x0b, 0, 6), "PR_STS_IOERR"},
		{"id-eperm", 0, unix.EPERM, 0, 0x02, fixed(0x0b, 0, 6), "NVMe passthrough: it needs CAP_SYS_ADMIN"},
		{"io-eacces", 0, 0, unix.EACCES, 0x02, fixed(0x0b, 0, 6), "NVMe passthrough"},
		{"io-enotty", 0, 0, unix.ENOTTY, 0x02, fixed(0x0b, 0, 6), "inappropriate ioctl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := map[uint]unix.Errno{blkpr.IOC_PR_READ_RESERVATION: unix.EINVAL, blkpr.NVME_IOCTL_ID: tc.idErr, blkpr.NVME_IOCTL_IO_CMD: tc.ioErr}
			k := &fakeKernel{errno: errs, nsid: 1, nvmeStatus: []int{tc.status}, nvmeExt: nvmeReportBytes(true, 1, 0, 0, 0, nil)}
			rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadKeys, 8192))
			if rep.Status != tc.rstat || senseField(rep) != tc.sense || rep.Data != nil {
				t.Errorf("%#x % x data %d, want %#x % x", rep.Status, rep.Sense, len(rep.Data), tc.rstat, tc.sense[:14])
			}
			if err == nil || !strings.Contains(err.Error(), tc.errHas) || !strings.Contains(err.Error(), "NVMe fallback") {
				t.Errorf("err = %v, want %q", err, tc.errHas)
			}
		})
	}

	// A namespace ID of 0 is not one.
	k := &fakeKernel{errno: absent}
	rep, err := newBackend(t, k, nil, KindNVMe).Execute(context.Background(), inReq(scsi.SAReadKeys, 8192))
	if rep.Status != 2 || err == nil || !strings.Contains(err.Error(), "namespace ID 0") {
		t.Errorf("nsid 0: %#x %v", rep.Status, err)
	}
}

func lens(cs []blkpr.NVMePassthru) []uint32 {
	var l []uint32
	for _, c := range cs {
		l = append(l, c.DataLen)
	}
	return l
}
