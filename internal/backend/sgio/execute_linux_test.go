package sgio

import (
	"bytes"
	"context"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	kernel "github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
)

// keysDevice is a scripted SG_IO device that answers READ KEYS with one key, or
// fails every command with errno when it is set. The SG_IO framing and status
// derivation are tested in internal/kernel/sgio; this checks that the backend
// hands the request to it and returns its answer.
type keysDevice struct {
	errno unix.Errno
	fd    int
	cdb   []byte
}

func (d *keysDevice) ioctl(fd int, h *kernel.Hdr) error {
	d.fd = fd
	d.cdb = bytes.Clone(unsafe.Slice((*byte)(h.Cmdp), h.CmdLen))
	if d.errno != 0 {
		return d.errno
	}
	data := unsafe.Slice((*byte)(h.Dxferp), h.DxferLen)
	n := copy(data, []byte{0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0xab})
	h.Resid = int32(h.DxferLen) - int32(n)
	return nil
}

func TestExecute(t *testing.T) {
	dev := &keysDevice{}
	b, err := New(Options{Ioctl: dev.ioctl, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if b.Name() != "sgio" || b.Timeout() != 5*time.Second {
		t.Errorf("Name %q Timeout %v", b.Name(), b.Timeout())
	}
	cdb := scsi.PRInCDB(scsi.SAReadKeys, 40)
	res, err := b.Execute(context.Background(), &backend.Request{CDB: cdb, FD: 7})
	if err != nil || res.Status != scsi.StatusGood || len(res.Data) != 16 || res.Data[15] != 0xab {
		t.Errorf("READ KEYS: %v % x %v", res, res.Data, err)
	}
	if dev.fd != 7 || !bytes.Equal(dev.cdb, cdb[:]) {
		t.Errorf("device saw fd %d cdb % x", dev.fd, dev.cdb)
	}

	dev.errno = unix.ENODEV
	res, err = b.Execute(context.Background(), &backend.Request{CDB: cdb, FD: 7})
	if err == nil || !bytes.Equal(res.Sense, scsi.SenseTargetFailure.Fixed()) {
		t.Errorf("ENODEV: %v %v", res, err)
	}

	res, err = b.Execute(context.Background(), nil)
	if res.Status != scsi.StatusCheckCondition || err == nil {
		t.Errorf("nil request: %v %v", res, err)
	}
	if _, err := New(Options{Timeout: -time.Second}); err == nil {
		t.Error("negative timeout accepted")
	}
}
