package sgio

import (
	"context"
	"errors"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	kernel "github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
)

// Options configures a Backend: the SG_IO timeout, and a fake ioctl in tests.
type Options = kernel.Options

// Backend passes PR commands through to the device with SG_IO, byte-compatible
// with qemu-pr-helper's non-multipath path (do_sgio_worker). It keeps no state
// and is safe for concurrent use.
type Backend struct {
	sg *kernel.Passthrough
}

var _ backend.Backend = (*Backend)(nil)

// New returns a Backend configured by opts. A negative or oversized timeout is
// an error rather than silently becoming the kernel default.
func New(opts Options) (*Backend, error) {
	sg, err := kernel.New(opts)
	if err != nil {
		return nil, err
	}
	return &Backend{sg: sg}, nil
}

// Name returns "sgio".
func (b *Backend) Name() string { return "sgio" }

// Timeout returns the SG_IO timeout the backend uses.
func (b *Backend) Timeout() time.Duration { return b.sg.Timeout() }

// Execute sends req's CDB to req.FD with SG_IO exactly as qemu-pr-helper does
// and returns the device's answer, or the answer qemu-pr-helper derives from
// the kernel's errno, host or driver status (kernel.Passthrough.Do says how).
// The returned error (for the log) says what failed whenever the result is not
// a plain GOOD. Execute does not check the fd's access mode (the server refuses
// PR OUT on read-only fds) and ignores ctx: SG_IO cannot be interrupted, only
// bounded by the timeout.
func (b *Backend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if req == nil {
		return scsi.CheckCondition(scsi.SenseInvalidField), errors.New("sgio: nil request")
	}
	o := b.sg.Do(req.FD, req.CDB, req.Param)
	return o.Reply, o.Err
}
