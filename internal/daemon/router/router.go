package router

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/scsi"
)

// Router is a backend.Backend that delegates each request to the backend its
// device's rule names.
type Router struct {
	// Default names the backend for devices no rule matches.
	Default backend.Name
	Rules   []config.Rule
	// Plan is the set of backends the daemon has: Auto picks among them.
	Plan backend.Plan
	// Backends holds the built backends of the plan (none for --explain,
	// which only decides).
	Backends map[backend.Name]backend.Backend
	// Classify tells what a descriptor is; Path names the file it was opened as
	// (for path= rules), "" when unknown.
	Classify func(fd int) (device.Info, error)
	Path     func(fd int) string
	Log      *slog.Logger
}

var _ backend.Backend = (*Router)(nil)

// Name returns "router".
func (r *Router) Name() string { return "router" }

// Decision is which backend serves a device, with what logical-unit identity, and why.
type Decision struct {
	Backend backend.Name
	LU      string // "" when the device has no stable identity
	Rule    *config.Rule
	Why     string
	// Refusal is set when auto refuses the device: Backend then only produces
	// the refusal qemu-pr-helper would send (see Auto).
	Refusal backend.Refusal
}

// Auto is the backend name that picks a backend by the kind of device: SCSI →
// sgio, NVMe and device-mapper → linuxpr, a multipath map → mpath when there is
// one (else linuxpr, whose REGISTER the kernel sends down every path), a regular
// file → emulate when emulation is enabled, else a refusal.
//
// The refusal of a regular file goes out as qemu-pr-helper's: the file is handed
// to SG_IO and the kernel's ENOTTY becomes the same CHECK CONDITION qemu-pr-helper
// sends for it, so that prhelper stays a byte-exact drop-in under its default
// backend; the log says why and what would serve the file.
const Auto = backend.Auto

// byKind resolves Auto for one device; why says what it chose and why, refusal
// whether it is a refusal (backend.RefusedFileWithoutEmulation for a disk image
// without emulation).
func (r *Router) byKind(info device.Info) (name backend.Name, why string, refusal backend.Refusal) {
	switch info.Kind {
	case device.SCSIDisk, device.SCSIGeneric:
		return backend.Sgio, "auto: SCSI device, SG_IO passthrough", 0
	case device.NVMeNamespace:
		return backend.LinuxPR, "auto: NVMe namespace, <linux/pr.h> ioctls", 0
	case device.DMMultipath:
		if r.Plan.Has(backend.Mpath) {
			return backend.Mpath, "auto: dm-multipath map, multipath backend", 0
		}
		return backend.LinuxPR, "auto: dm-multipath map, <linux/pr.h> ioctls (the kernel registers on every path)", 0
	case device.DM:
		return backend.LinuxPR, "auto: device-mapper device, <linux/pr.h> ioctls", 0
	case device.RegularFile:
		if r.Plan.Has(backend.Emulate) {
			return backend.Emulate, "auto: regular file, emulated reservations", 0
		}
		refusal = backend.RefusedFileWithoutEmulation
		return backend.Sgio, refusal.Error(), refusal
	}
	return backend.Sgio, "auto: " + info.Kind.String() + " device, SG_IO passthrough as qemu-pr-helper", 0
}

// Decide applies the rules to a device. It is pure: the same info and path give
// the same decision.
func (r *Router) Decide(info device.Info, path string) Decision {
	return r.decide(info, path, true)
}

// decide is Decide, with Why written only when explain is set: Execute needs
// the reason only for the rare refusal it builds itself, and building it for
// every request was a fifth of a request's garbage (docs/performance.md §3.7).
func (r *Router) decide(info device.Info, path string, explain bool) Decision {
	d := Decision{Backend: r.Default}
	if explain {
		d.Why = "no rule matches: default backend"
	}
	lu, _ := info.Key()
	wwid := info.LUID
	if wwid == "" {
		wwid = info.ID
	}
	for i := range r.Rules {
		rule := &r.Rules[i]
		if !rule.Matches(info.Kind.String(), wwid, path) {
			continue
		}
		d.Rule = rule
		if explain {
			d.Why = fmt.Sprintf("line %d: %s", rule.Line, rule)
		}
		if rule.Backend != "" {
			d.Backend = rule.Backend
		}
		if rule.ID != "" {
			lu = rule.ID
		}
		break
	}
	d.LU = lu
	if d.Backend == Auto {
		var why string
		d.Backend, why, d.Refusal = r.byKind(info)
		if explain {
			d.Why += "; " + why
		}
	}
	return d
}

// Execute classifies the request's descriptor, decides, and runs the request on
// the chosen backend with the LU identity filled in.
func (r *Router) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	if r.Default == backend.Sgio && len(r.Rules) == 0 {
		// The qemu-pr-helper set-up: nothing to decide, so no look at the
		// device (SG_IO needs neither its kind nor its identity).
		if b, ok := r.Backends[backend.Sgio]; ok {
			req.Served = backend.Sgio
			return b.Execute(ctx, req)
		}
	}
	info, err := r.Classify(req.FD)
	if err != nil {
		// An unknown device can still be passed through; the backends that
		// need an identity refuse it themselves.
		info = device.Info{Kind: device.Other}
		r.log().Debug("cannot classify device", "fd", req.FD, "err", err)
	}
	path := ""
	if r.Path != nil && r.rulesUsePath() {
		path = r.Path(req.FD)
	}
	d := r.decide(info, path, false)
	if d.Backend == "" {
		// Like a device without PR support: INVALID COMMAND OPERATION CODE.
		return scsi.CheckCondition(scsi.SenseInvalidOpcode), fmt.Errorf("router: %s refused: %s", describe(info, path), r.Decide(info, path).Why)
	}
	b, ok := r.Backends[d.Backend]
	if !ok {
		return scsi.CheckCondition(scsi.SenseTargetFailure), fmt.Errorf("router: backend %q (%s) is not configured", d.Backend, r.Decide(info, path).Why)
	}
	req.LU, req.Served = d.LU, d.Backend
	rep, err := b.Execute(ctx, req)
	if err != nil {
		err = &backendErr{backend: d.Backend, info: info, path: path, refusal: d.Refusal, err: err}
	}
	return rep, err
}

// backendErr is a backend's error with the device and the decision: "BACKEND
// on DEVICE: ERR", or for a refusal the backend tried anyway "router: DEVICE
// refused: REFUSAL: BACKEND on DEVICE: ERR". The text is built only when
// read: most of these errors are counted by the server's repeated-warning
// limit and never printed, and formatting each one was a tenth of the
// daemon's CPU time under load (docs/performance.md).
type backendErr struct {
	backend backend.Name
	info    device.Info
	path    string
	refusal backend.Refusal
	err     error
}

func (e *backendErr) Error() string {
	d := describe(e.info, e.path)
	s := string(e.backend) + " on " + d + ": " + e.err.Error()
	if e.refusal != backend.NotRefused {
		s = "router: " + d + " refused: " + e.refusal.Error() + ": " + s
	}
	return s
}

// Unwrap gives errors.Is and errors.As the refusal (when there is one) and
// the backend's error.
func (e *backendErr) Unwrap() []error {
	if e.refusal != backend.NotRefused {
		return []error{e.refusal, e.err}
	}
	return []error{e.err}
}

func (r *Router) rulesUsePath() bool {
	for _, rule := range r.Rules {
		if rule.Path != "" {
			return true
		}
	}
	return false
}

func describe(info device.Info, path string) string {
	if path != "" {
		return path
	}
	return info.String()
}

func (r *Router) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}
