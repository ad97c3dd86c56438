package sgio

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// TestRealSGIONotSCSI issues the real SG_IO ioctl (no fake) on descriptors that
// are not SCSI devices: /dev/null and a regular file. The kernel refuses SG_IO
// there (ENOTTY from the VFS, or EINVAL from some filesystems), and the reply
// must be the errno table's answer end to end: CHECK CONDITION with 0B/00/06
// (ENOTTY) or 05/24/00 (EINVAL) as 18 bytes of fixed sense.
func TestRealSGIONotSCSI(t *testing.T) {
	want := map[unix.Errno][]byte{
		unix.ENOTTY: {0x70, 0, 0x0b, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x00, 0x06, 0, 0, 0, 0},
		unix.EINVAL: {0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0},
	}
	reg := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(reg, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{os.DevNull, reg} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Skip(err)
			}
			defer f.Close()
			fd := int(f.Fd())

			// Low level: the errno comes back wrapped.
			cdb := scsi.PRInCDB(scsi.SAReadKeys, 64)
			_, xerr := Exec(fd, cdb[:], DirFromDevice, make([]byte, 64), time.Second)
			var errno unix.Errno
			if !errors.As(xerr, &errno) {
				t.Fatalf("Exec = %v, want a unix.Errno", xerr)
			}
			sense, ok := want[errno]
			if !ok {
				t.Fatalf("SG_IO on %s failed with %v, want ENOTTY or EINVAL", path, errno)
			}
			t.Logf("SG_IO on %s: %v", path, xerr)

			// Passthrough, PR IN and PR OUT.
			for _, req := range []*request{
				{CDB: cdb, FD: fd},
				{CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 24), Param: make([]byte, 24), FD: fd},
			} {
				rep, err := run(b, req)
				if !errors.Is(err, errno) {
					t.Errorf("op %#x: err = %v, want %v", req.CDB[0], err, errno)
				}
				if rep.Status != scsi.StatusCheckCondition || len(rep.Data) != 0 {
					t.Errorf("op %#x: status %#x data %d, want CHECK CONDITION and none", req.CDB[0], rep.Status, len(rep.Data))
				}
				var w [96]byte
				copy(w[:], sense)
				if senseField(rep) != w {
					t.Errorf("op %#x: sense % x, want % x", req.CDB[0], rep.Sense[:18], sense)
				}
			}
		})
	}

	// A closed descriptor: EBADF, which QEMU's table answers with 0B/00/06.
	rep, err := run(b, &request{CDB: scsi.PRInCDB(0, 8), FD: math.MaxInt32})
	if !errors.Is(err, unix.EBADF) || rep.Status != scsi.StatusCheckCondition || rep.Sense[2] != 0x0b || rep.Sense[12] != 0 || rep.Sense[13] != 0x06 {
		t.Errorf("bad fd: status %#x sense % x err %v", rep.Status, rep.Sense[:14], err)
	}
}

// TestTransferred checks the clamp that keeps a bogus resid inside the buffer.
func TestTransferred(t *testing.T) {
	for _, tc := range []struct {
		n     int
		resid int32
		want  int
	}{
		{8192, 0, 8192}, {8192, 8000, 192}, {8192, 8192, 0}, {8192, 8193, 0},
		{8192, -1, 8192}, {0, 0, 0}, {0, -7, 0}, {10, math.MaxInt32, 0}, {10, math.MinInt32, 10},
	} {
		if got := transferred(tc.n, tc.resid); got != tc.want {
			t.Errorf("transferred(%d, %d) = %d, want %d", tc.n, tc.resid, got, tc.want)
		}
	}
}

// TestTimeoutMillis checks the rounding and capping of sg_io_hdr.timeout.
func TestTimeoutMillis(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want uint32
		ok   bool
	}{
		{0, 0, true}, {1, 1, true}, {time.Millisecond, 1, true}, {time.Millisecond + 1, 2, true},
		{30 * time.Second, 30000, true}, {time.Duration(math.MaxInt64), math.MaxUint32, true},
		{-1, 0, false},
	} {
		got, err := timeoutMillis(tc.d)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("timeoutMillis(%v) = %d, %v; want %d, ok %v", tc.d, got, err, tc.want, tc.ok)
		}
	}
}
