package linuxpr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/blkpr"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// DeviceKind tells the backend what sort of device an fd is, which decides the
// fallback for READ KEYS and READ RESERVATION on kernels without
// IOC_PR_READ_KEYS / IOC_PR_READ_RESERVATION.
type DeviceKind int

const (
	// KindUnknown: no hint. The read ioctls are probed and, when absent, the
	// command goes out with SG_IO, which works on sd and on device-mapper
	// devices whose single target passes SG_IO to a SCSI path.
	KindUnknown DeviceKind = iota
	// KindSCSI: sd, or a device-mapper map over SCSI paths: SG_IO fallback.
	KindSCSI
	// KindNVMe: an NVMe namespace block device: NVMe Reservation Report fallback.
	KindNVMe
	// KindNotBlock: not a whole-disk block device (sg or ng character device,
	// partition, regular file, other): no probe, no fallback; the ioctl is
	// issued and the kernel's refusal (ENOTTY, EPERM for partitions) answered.
	KindNotBlock
)

// String returns the short name used in logs.
func (k DeviceKind) String() string {
	switch k {
	case KindUnknown:
		return "unknown"
	case KindSCSI:
		return "scsi"
	case KindNVMe:
		return "nvme"
	case KindNotBlock:
		return "not-block"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// KindOf maps what package device found out about an fd to the hint this
// backend needs; the daemon's Options.Kind calls it on device.Classify's
// answer. A dm-multipath map is taken to be over SCSI paths (its SG_IO goes to
// the current path; a map over NVMe paths would need the NVMe report, which
// dm does not pass on, so READ KEYS fails there on kernels before 6.19); other
// dm devices are KindUnknown; sg and ng nodes, partitions, files and other
// devices are KindNotBlock.
func KindOf(info device.Info) DeviceKind {
	switch info.Kind {
	case device.SCSIDisk, device.DMMultipath:
		return KindSCSI
	case device.NVMeNamespace:
		if info.Char {
			return KindNotBlock // ngXnY: the PR ioctls are block-device ioctls
		}
		return KindNVMe
	case device.DM:
		return KindUnknown
	}
	return KindNotBlock
}

// Options configures a Backend. The zero value is usable, but without Kind the
// first fd that needs READ KEYS or READ RESERVATION decides the probe, so a
// regular file or sg node arriving first would make the backend take the
// ioctls for absent; the daemon wires Kind to package device:
//
//	Kind: func(fd int) linuxpr.DeviceKind {
//		info, err := device.Classify(fd, sys)
//		if err != nil {
//			return linuxpr.KindNotBlock
//		}
//		return linuxpr.KindOf(info)
//	}
type Options struct {
	// Kind says what the fd of a request is; nil means KindUnknown for all.
	Kind func(fd int) DeviceKind
	// Logger receives the one-time probe result; nil discards it.
	Logger *slog.Logger
	// Ioctl replaces the PR and NVMe ioctls, for tests; nil means the real ones.
	Ioctl blkpr.IoctlFunc
	// SGIO replaces the SG_IO ioctl of the SCSI fallback, for tests; nil means
	// the real one.
	SGIO sgio.IoctlFunc
	// SGIOTimeout bounds the SG_IO fallback; 0 means sgio.DefaultTimeout.
	SGIOTimeout time.Duration
}

// initialKeys is the key capacity of the first IOC_PR_READ_KEYS (and the
// registrant capacity of the first NVMe report): enough for any cluster seen in
// practice, so the retry with the announced count is rare.
const initialKeys = 16

// maxReadAttempts bounds the growth retries while registrations keep being
// added between two reads.
const maxReadAttempts = 4

// Backend serves PR commands through the Linux block layer's
// persistent-reservation ioctls (<linux/pr.h>). It is safe for concurrent use.
type Backend struct {
	ioctl blkpr.IoctlFunc
	kind  func(int) DeviceKind
	log   *slog.Logger
	sg    *sgio.Passthrough

	probe    sync.Once
	haveRead bool // IOC_PR_READ_* exist in the running kernel; set by probe
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend configured by opts.
func New(opts Options) (*Backend, error) {
	sg, err := sgio.New(sgio.Options{Timeout: opts.SGIOTimeout, Ioctl: opts.SGIO})
	if err != nil {
		return nil, fmt.Errorf("linuxpr: SG_IO fallback: %w", err)
	}
	b := &Backend{ioctl: opts.Ioctl, kind: opts.Kind, log: opts.Logger, sg: sg}
	if b.ioctl == nil {
		b.ioctl = blkpr.Ioctl
	}
	if b.kind == nil {
		b.kind = func(int) DeviceKind { return KindUnknown }
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// Name returns "linuxpr".
func (b *Backend) Name() string { return "linuxpr" }

// Execute translates req into <linux/pr.h> ioctls on req.FD and the kernel's
// answer into a SCSI result (doc.go has the full table). It ignores ctx: the
// ioctls cannot be interrupted. The error is for the log and is non-nil
// whenever the result is not GOOD or a fallback was used and failed.
func (b *Backend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if req == nil {
		return scsi.CheckCondition(scsi.SenseInvalidField), errors.New("linuxpr: nil request")
	}
	cdb := req.CDB[:]
	switch cdb[0] {
	case scsi.OpPersistentReserveOut:
		call, ref := translateOut(cdb, req.Param)
		if ref != nil {
			return scsi.CheckCondition(ref.Sense), fmt.Errorf("linuxpr: PR OUT on fd %d: %w", req.FD, ref)
		}
		ret, err := b.outIoctl(req.FD, call)
		return resultReply(call.Name, req.FD, ret, err, permPR)
	case scsi.OpPersistentReserveIn:
		return b.prIn(ctx, req)
	}
	return scsi.CheckCondition(scsi.SenseInvalidOpcode),
		fmt.Errorf("linuxpr: opcode 0x%02x is not PERSISTENT RESERVE IN/OUT", cdb[0])
}

// prIn serves PERSISTENT RESERVE IN.
func (b *Backend) prIn(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	sa := scsi.ServiceAction(req.CDB[:])
	alloc := min(scsi.TransferLength(req.CDB[:]), wire.MaxData)
	// maxKeys is the number of whole keys the allocation length can hold.
	maxKeys := max(alloc-8, 0) / 8
	switch sa {
	case scsi.SAReadKeys, scsi.SAReadReservation:
	case scsi.SAReportCapabilities:
		return scsi.Good(capabilitiesData()), nil
	case scsi.SAReadFullStatus:
		return scsi.CheckCondition(scsi.SenseInvalidField),
			fmt.Errorf("linuxpr: READ FULL STATUS on fd %d has no <linux/pr.h> ioctl", req.FD)
	default:
		return scsi.CheckCondition(scsi.SenseInvalidField),
			fmt.Errorf("linuxpr: PR IN service action 0x%02x on fd %d is reserved", sa, req.FD)
	}

	kind := b.kind(req.FD)
	if kind != KindNotBlock && !b.readIoctls(req.FD) {
		switch kind {
		case KindNVMe:
			return b.nvmeIn(req.FD, sa, maxKeys)
		default:
			o := b.sg.Do(req.FD, req.CDB, req.Param)
			rep, err := o.Reply, o.Err
			switch {
			case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
				err = fmt.Errorf("linuxpr: SG_IO fallback (no IOC_PR_READ_*): %w: SG_IO with PR opcodes needs CAP_SYS_RAWIO", err)
			case err != nil:
				err = fmt.Errorf("linuxpr: SG_IO fallback (no IOC_PR_READ_*): %w", err)
			}
			return rep, err
		}
	}
	if sa == scsi.SAReadKeys {
		return b.readKeys(req.FD, maxKeys)
	}
	var rr blkpr.ReadReservation
	ret, err := b.ioctl(req.FD, blkpr.IOC_PR_READ_RESERVATION, unsafe.Pointer(&rr))
	if err != nil || ret != 0 {
		return resultReply("IOC_PR_READ_RESERVATION", req.FD, ret, err, permPR)
	}
	t, _ := blkpr.ToSCSIType(rr.Type)
	return scsi.Good(readReservationData(rr.Generation, rr.Key != 0 || rr.Type != 0, rr.Key, t)), nil
}

// readIoctls reports whether the running kernel has IOC_PR_READ_KEYS and
// IOC_PR_READ_RESERVATION (Linux 6.19+), asking once per Backend with an
// IOC_PR_READ_RESERVATION on the first fd that needs it. Kernels without them
// pass the unknown request to the driver, which answers ENOTTY (nvme, newer
// scsi_ioctl) or EINVAL (sd on 6.1); any other answer, errors included, comes
// from a kernel that knows the ioctl.
func (b *Backend) readIoctls(fd int) bool {
	b.probe.Do(func() {
		var rr blkpr.ReadReservation
		_, err := b.ioctl(fd, blkpr.IOC_PR_READ_RESERVATION, unsafe.Pointer(&rr))
		b.haveRead = !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL)
		if b.haveRead {
			b.log.Info("linuxpr: kernel has IOC_PR_READ_KEYS/IOC_PR_READ_RESERVATION", "fd", fd)
		} else {
			b.log.Info("linuxpr: kernel lacks IOC_PR_READ_KEYS/IOC_PR_READ_RESERVATION (Linux < 6.19); "+
				"READ KEYS and READ RESERVATION use SG_IO (SCSI, needs CAP_SYS_RAWIO) or NVMe Reservation Report",
				"fd", fd, "probe", err)
		}
	})
	return b.haveRead
}

// readKeys serves READ KEYS with IOC_PR_READ_KEYS. It asks for initialKeys keys
// first; when the kernel reports more registrations than fitted, it asks again
// with room for all of them, up to maxKeys (what the allocation length can
// hold), so the data is what the device would have sent.
func (b *Backend) readKeys(fd int, maxKeys int) (scsi.Result, error) {
	capacity := max(min(maxKeys, initialKeys), 1)
	for attempt := 1; ; attempt++ {
		keys := make([]uint64, capacity)
		rk := blkpr.ReadKeys{NumKeys: uint32(capacity), KeysPtr: uint64(uintptr(unsafe.Pointer(&keys[0])))}
		var pin runtime.Pinner
		pin.Pin(&keys[0])
		ret, err := b.ioctl(fd, blkpr.IOC_PR_READ_KEYS, unsafe.Pointer(&rk))
		pin.Unpin()
		if err != nil || ret != 0 {
			return resultReply("IOC_PR_READ_KEYS", fd, ret, err, permPR)
		}
		total := int(rk.NumKeys)
		if total > capacity && capacity < maxKeys && attempt < maxReadAttempts {
			capacity = min(total, maxKeys)
			continue
		}
		got := keys[:min(total, capacity, maxKeys)]
		return scsi.Good(readKeysData(rk.Generation, got, uint64(rk.NumKeys))), nil
	}
}

// nvmeIn serves READ KEYS or READ RESERVATION on an NVMe namespace from the
// Reservation Report, for kernels without IOC_PR_READ_*.
func (b *Backend) nvmeIn(fd int, sa byte, maxKeys int) (scsi.Result, error) {
	want := maxKeys
	if sa == scsi.SAReadReservation {
		want = 1<<16 - 1 // the holder may be any entry: read them all
	}
	r, rep, err := b.nvmeReport(fd, want)
	if err != nil {
		return rep, fmt.Errorf("linuxpr: NVMe fallback (no IOC_PR_READ_*): %w", err)
	}
	if sa == scsi.SAReadKeys {
		return scsi.Good(r.ReadKeysData(maxKeys)), nil
	}
	return scsi.Good(r.ReadReservationData()), nil
}

// NVMe Reservation Report command (NVM Express Base Specification 2.0).
const (
	nvmeOpReservationReport = 0x0e
	nvmeCDW11EDS            = 1 << 0 // extended data structure: 128-bit host IDs
)

// nvmeReport reads the namespace's Reservation Report with NVME_IOCTL_IO_CMD,
// with room for up to want registrants: initialKeys first, then as many as
// REGCTL announces. Like the kernel's nvme_pr_resv_report it asks for the
// extended data structure and falls back to the 64-bit host ID form when the
// controller answers Host Identifier Inconsistent. On failure it returns the
// result to answer and the error.
func (b *Backend) nvmeReport(fd int, want int) (NVMeReport, scsi.Result, error) {
	nsid, err := b.ioctl(fd, blkpr.NVME_IOCTL_ID, nil)
	if err != nil {
		rep, err := resultReply("NVME_IOCTL_ID", fd, 0, err, permNVMe)
		return NVMeReport{}, rep, err
	}
	if nsid <= 0 {
		return NVMeReport{}, scsi.CheckCondition(scsi.SenseIOError), fmt.Errorf("NVME_IOCTL_ID on fd %d: namespace ID %d", fd, nsid)
	}
	extended := true
	entries := min(want, initialKeys)
	for attempt := 1; ; attempt++ {
		buf := make([]byte, nvmeReportLen(extended, entries)) // a multiple of 4 bytes
		cmd := blkpr.NVMePassthru{
			Opcode:  nvmeOpReservationReport,
			NSID:    uint32(nsid),
			Addr:    uint64(uintptr(unsafe.Pointer(&buf[0]))),
			DataLen: uint32(len(buf)),
			CDW10:   uint32(len(buf)/4 - 1), // NUMD, 0's based
		}
		if extended {
			cmd.CDW11 = nvmeCDW11EDS
		}
		var pin runtime.Pinner
		pin.Pin(&buf[0])
		ret, err := b.ioctl(fd, blkpr.NVME_IOCTL_IO_CMD, unsafe.Pointer(&cmd))
		pin.Unpin()
		if err == nil && ret&nvmeStatusMask == nvmeSCHostIDInconsistent && extended {
			extended = false
			continue
		}
		if err != nil || ret != 0 {
			op := fmt.Sprintf("NVMe Reservation Report (status 0x%x)", ret)
			if err != nil {
				op = "NVMe Reservation Report"
			} else {
				ret, err = nvmeStatusResult(ret)
			}
			rep, err := resultReply(op, fd, ret, err, permNVMe)
			return NVMeReport{}, rep, err
		}
		r, err := DecodeNVMeReport(buf, extended)
		if err != nil { // cannot happen: buf holds at least the header
			return NVMeReport{}, scsi.CheckCondition(scsi.SenseIOError), err
		}
		if r.Complete() || entries >= want || attempt >= maxReadAttempts {
			return r, scsi.Result{}, nil
		}
		entries = min(int(r.Registered), want)
	}
}
