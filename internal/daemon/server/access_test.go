package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
)

// TestDescriptorAccess is issue 12 item 6: an O_PATH descriptor of an image
// read its keys and reservation through emulation. PR IN needs a descriptor
// open for reading, PR OUT one open for writing; otherwise CHECK CONDITION
// 05/20/00, the answer PR OUT on a read-only descriptor already gets
// (docs/pr-helper-protocol.md §4.6), without calling the backend.
func TestDescriptorAccess(t *testing.T) {
	fb := &fakeBackend{}
	h := start(t, fb)
	c := client.New(h.path)
	defer c.Close()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	open := func(flags int) int {
		fd, err := unix.Open(img, flags|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	in, out := scsi.PRInCDB(0, 100), scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
	refused := scsi.SenseInvalidOpcode.Fixed()
	tests := []struct {
		name  string
		flags int
		cdb   [16]byte
		param []byte
		ok    bool
	}{
		{"PR IN, O_PATH", unix.O_PATH, in, nil, false},
		{"PR IN, O_WRONLY", unix.O_WRONLY, in, nil, false},
		{"PR IN, O_RDONLY", unix.O_RDONLY, in, nil, true},
		{"PR IN, O_RDWR", unix.O_RDWR, in, nil, true},
		{"PR OUT, O_PATH", unix.O_PATH, out, regParam, false},
		{"PR OUT, O_RDONLY", unix.O_RDONLY, out, regParam, false},
		{"PR OUT, O_WRONLY", unix.O_WRONLY, out, regParam, true},
		{"PR OUT, O_RDWR", unix.O_RDWR, out, regParam, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := fb.calls.Load()
			rep, err := c.Do(context.Background(), tt.cdb, open(tt.flags), tt.param)
			if err != nil {
				t.Fatal(err)
			}
			called := fb.calls.Load() != before
			if tt.ok {
				if rep.Status != scsi.StatusGood || !called {
					t.Fatalf("status %#x, backend called %v; want GOOD from the backend", rep.Status, called)
				}
				return
			}
			if rep.Status != scsi.StatusCheckCondition || !bytes.Equal(rep.Sense[:len(refused)], refused) || called {
				t.Fatalf("status %#x sense %x, backend called %v; want CHECK CONDITION 05/20/00 without the backend",
					rep.Status, rep.Sense[:18], called)
			}
		})
	}
}
