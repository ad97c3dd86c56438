package backend

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Name names a backend in the configuration file, on the command line
// (--backend), in the router's decisions and in logs.
type Name string

// The backends, and Auto, which picks one by the kind of device.
const (
	// Auto is not a backend: it picks one per device (SCSI → Sgio, NVMe and
	// other device-mapper devices → LinuxPR, a multipath map → Mpath, a
	// regular file → Emulate when emulation is enabled, else a refusal).
	Auto Name = "auto"
	// Sgio passes the CDB through with SG_IO, as qemu-pr-helper does.
	Sgio Name = "sgio"
	// LinuxPR translates the command into the <linux/pr.h> ioctls.
	LinuxPR Name = "linuxpr"
	// Mpath serves a dm-multipath map through each of its paths.
	Mpath Name = "mpath"
	// Emulate answers from prhelper's own SPC-4 engine and state store.
	Emulate Name = "emulate"
	// Vinit answers guests as Emulate does and keeps one registration per
	// host on the real LUN, through Sgio or Mpath
	// (docs/virtual-initiators.md). Auto never picks it.
	Vinit Name = "vinit"
)

// Names lists every name the configuration accepts, Auto first.
func Names() []Name { return []Name{Auto, Sgio, LinuxPR, Mpath, Emulate, Vinit} }

// ParseName returns the name s spells, or an error listing the valid ones.
func ParseName(s string) (Name, error) {
	if n := Name(s); slices.Contains(Names(), n) {
		return n, nil
	}
	all := make([]string, 0, len(Names()))
	for _, n := range Names() {
		all = append(all, string(n))
	}
	return "", fmt.Errorf("unknown backend %q (one of: %s)", s, strings.Join(all, ", "))
}

// Capability is a Linux capability number (linux/capability.h) a backend needs
// the daemon to keep when it drops its privileges.
type Capability uint

// The capabilities a backend may need.
const (
	// CapSysRawio lets SG_IO send PERSISTENT RESERVE IN/OUT, which are not on
	// the kernel's allow-list of commands for unprivileged openers.
	CapSysRawio Capability = unix.CAP_SYS_RAWIO
	// CapSysAdmin lets a process use the <linux/pr.h> ioctls before Linux 6.5
	// (a writable descriptor suffices after) and the device-mapper control node.
	CapSysAdmin Capability = unix.CAP_SYS_ADMIN
)

// Needs returns the capabilities backend n needs after the privilege drop:
//
//   - sgio: CAP_SYS_RAWIO, for SG_IO with the PR opcodes.
//   - linuxpr: CAP_SYS_ADMIN for the ioctls (as qemu-pr-helper's multipath
//     build keeps it), and CAP_SYS_RAWIO for its SG_IO fallback (READ KEYS and
//     READ RESERVATION before Linux 6.19).
//   - mpath: CAP_SYS_RAWIO, for SG_IO to each path. (The control node, which
//     would need CAP_SYS_ADMIN, is optional: without it sysfs alone says which
//     paths are usable.)
//   - emulate: nothing; it never touches the device.
//   - vinit: CAP_SYS_RAWIO, for SG_IO to the device or the map's paths.
//
// Auto needs what the backends it may pick need (see Plan).
func Needs(n Name) []Capability {
	switch n {
	case Sgio, Mpath, Vinit:
		return []Capability{CapSysRawio}
	case LinuxPR:
		return []Capability{CapSysRawio, CapSysAdmin}
	}
	return nil
}

// Plan is the set of backends a daemon's configuration may route a device to:
// the ones it builds, the ones the router and --explain may choose, and, from
// them, the capabilities it keeps. Its zero value holds no backend.
type Plan struct {
	names []Name // sorted in Names order, no duplicates, never Auto
}

// NewPlan returns the plan of a configuration whose default backend is def and
// whose rules name the backends in rules ("" for a rule that sets only an id).
// Auto stands for every backend it may pick: Sgio, LinuxPR and Mpath, and
// Emulate when emulation is enabled (a state database was configured).
func NewPlan(def Name, rules []Name, emulation bool) Plan {
	var named []Name
	for _, n := range append([]Name{def}, rules...) {
		switch n {
		case "":
		case Auto:
			named = append(named, Sgio, LinuxPR, Mpath)
			if emulation {
				named = append(named, Emulate)
			}
		default:
			named = append(named, n)
		}
	}
	return PlanOf(named...)
}

// PlanOf returns the plan holding exactly the backends names (Auto and names
// the registry does not know are ignored), and, with Vinit, the backends it
// composes: Emulate, Sgio and Mpath.
func PlanOf(names ...Name) Plan {
	if slices.Contains(names, Vinit) {
		names = append(slices.Clone(names), Emulate, Sgio, Mpath)
	}
	var p Plan
	for _, n := range Names()[1:] {
		if slices.Contains(names, n) {
			p.names = append(p.names, n)
		}
	}
	return p
}

// Has reports whether the plan holds backend n.
func (p Plan) Has(n Name) bool { return slices.Contains(p.names, n) }

// Names lists the plan's backends in the order of the package's Names.
func (p Plan) Names() []Name { return slices.Clone(p.names) }

// Capabilities returns what the plan's backends need, without duplicates, in
// ascending order.
func (p Plan) Capabilities() []Capability {
	var caps []Capability
	for _, n := range p.names {
		for _, c := range Needs(n) {
			if !slices.Contains(caps, c) {
				caps = append(caps, c)
			}
		}
	}
	slices.Sort(caps)
	return caps
}

// Refusal is why a device is refused instead of served by a backend. A refused
// device's commands get the answer qemu-pr-helper would send for it; the
// router wraps the Refusal into its log error, so errors.Is finds it.
type Refusal int

// The refusals.
const (
	// NotRefused is the zero Refusal: the device is served.
	NotRefused Refusal = iota
	// RefusedFileWithoutEmulation: Auto met a regular file (a disk image)
	// while emulation is not enabled. The file is handed to SG_IO so that the
	// kernel's ENOTTY becomes qemu-pr-helper's CHECK CONDITION for it.
	RefusedFileWithoutEmulation
)

// Error says why, in the words the log and --explain print.
func (r Refusal) Error() string {
	switch r {
	case NotRefused:
		return "not refused"
	case RefusedFileWithoutEmulation:
		return "auto: refused: a regular file can only be served by emulation, which is not enabled (--backend=emulate, --db or a rule); it gets qemu-pr-helper's answer (SG_IO: ENOTTY)"
	}
	return fmt.Sprintf("refusal %d", int(r))
}
