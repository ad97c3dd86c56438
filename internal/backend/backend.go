// Package backend defines the contract between the server and the ways prhelper
// reaches storage (sgio, linuxpr, mpath, emulate), and the registry of them
// (registry.go): their names, the capabilities each needs, the plan of the
// backends a configuration may route to, and why a device may be refused.
// Package builder makes the backends of a plan.
//
// A backend gets the 16-byte CDB, the PR OUT parameter list and the open device, and
// returns a scsi.Result: status, sense and data, as a device would answer. It does
// not speak the helper protocol: the server alone turns a result into a reply. It
// never panics on guest input, never exits the process and does not close the
// device: the server owns the descriptor.
package backend

import (
	"context"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Request is one PR command to execute against an open device.
type Request struct {
	CDB   [wire.CDBSize]byte
	Param []byte // PR OUT parameter list
	FD    int    // the device received from the client; owned by the caller

	// The fields below matter to backends that keep reservation state themselves
	// (emulate); passthrough backends ignore them: there the storage sees the
	// host's own initiator port.

	// Initiator names the initiator the command comes from, as the listener's
	// identity policy found it: an iSCSI name, or naa.<16 hex digits> for a SAS
	// address. Empty when the policy could not name the peer; IdentityErr says why.
	Initiator   string
	IdentityErr error
	// TargetPort is the relative target port identifier of the listener the
	// request arrived on (SPC-4 §7.8.5.2); 0 means 1.
	TargetPort uint16
	// LU identifies the logical unit, the same on every host that sees it (a WWID,
	// a dm uuid, or an id from the configuration for a disk image).
	LU string

	// ServedBy is set by a backend that hands the request to another (the
	// daemon's router) to the name of the backend that ran it, so that the
	// server's log line names that one (sgio, mpath, ...) rather than the
	// router. Empty when the backend the server called ran it itself.
	ServedBy Name
}

// Backend executes PR commands. Implementations must be safe for concurrent use:
// the server calls Execute from one goroutine per connection.
type Backend interface {
	// Name is the short name used in logs and --explain output.
	Name() string
	// Execute runs req and returns how the command ended. Result.Data may be
	// longer than the allocation length; the wire layer truncates it. A non-nil
	// error is for the log only (what failed and why); the result is answered
	// either way. ctx is cancelled when the server's shutdown grace period ends:
	// the reply will not be delivered then, so waits that can end early (a
	// store, a daemon's socket) should; a blocking ioctl cannot, and is not
	// waited for.
	Execute(ctx context.Context, req *Request) (scsi.Result, error)
}
