package linuxpr

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/scsi"
)

// TestRealIoctlNotBlockDevice issues the real ioctls on /dev/null and a regular
// file: the kernel answers ENOTTY (neither has pr_ops nor the ioctls), which
// must come back as CHECK CONDITION 0B/00/06 with the errno in the log error,
// on every path: PR OUT, PR IN with and without a kind hint (probe, then the
// SG_IO fallback, which the kernel refuses the same way) and the NVMe fallback.
func TestRealIoctlNotBlockDevice(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(file, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/dev/null", file} {
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Skipf("open %s: %v", path, err)
		}
		fd := int(f.Fd())
		for _, kind := range []DeviceKind{KindUnknown, KindNotBlock, KindSCSI, KindNVMe} {
			b, err := New(Options{Kind: func(got int) DeviceKind {
				if got != fd {
					t.Errorf("Kind called with fd %d, want %d", got, fd)
				}
				return kind
			}})
			if err != nil {
				t.Fatal(err)
			}
			var reqs []*backend.Request
			for _, sa := range []byte{scsi.SARegister, scsi.SAReserve, scsi.SARelease, scsi.SAClear,
				scsi.SAPreempt, scsi.SAPreemptAndAbort, scsi.SARegisterAndIgnoreExisting} {
				reqs = append(reqs, &backend.Request{CDB: scsi.PROutCDB(sa, 0, scsi.TypeExclusiveAccess, 24), Param: param(rk, sark, 0), FD: fd})
			}
			reqs = append(reqs,
				&backend.Request{CDB: scsi.PRInCDB(scsi.SAReadKeys, 8192), FD: fd},
				&backend.Request{CDB: scsi.PRInCDB(scsi.SAReadReservation, 8192), FD: fd})
			for _, req := range reqs {
				rep, err := b.Execute(context.Background(), req)
				var errno unix.Errno
				if !errors.As(err, &errno) {
					t.Errorf("%s %s cdb % x: err = %v, want an errno", path, kind, req.CDB[:3], err)
					continue
				}
				// Neither file has the ioctls (nor SG_IO, nor NVMe ones): ENOTTY,
				// which QEMU's table maps to 0B/00/06.
				if errno != unix.ENOTTY {
					t.Errorf("%s %s cdb % x: errno %v, want ENOTTY", path, kind, req.CDB[:3], errno)
				}
				if rep.Status != scsi.StatusCheckCondition || senseField(rep) != fixed(0x0b, 0x00, 0x06) || rep.Data != nil {
					t.Errorf("%s %s cdb % x: reply %#x sense % x", path, kind, req.CDB[:3], rep.Status, rep.Sense)
				}
			}
		}
		f.Close()
	}
}
