//go:build amd64 || arm64

package sandbox

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Config says what the configured backends need (docs/security.md §4).
type Config struct {
	// Devices: the device backends (sgio, linuxpr, mpath, auto) open and
	// ioctl devices under /dev.
	Devices bool
	// Connect: outgoing sockets (multipathd's, etcd and DNS).
	Connect bool
	// DBDir is the SQLite database's directory ("" without one).
	DBDir string
	// ReadFiles are files or directories read after start-up (multipath.conf,
	// /etc/multipath, resolv.conf); those that do not exist are skipped.
	ReadFiles []string
	// ReadDirs are directories listed after start-up (those of the peer
	// executable patterns).
	ReadDirs []string
	// RemoveIn are directories in which the helper removes its own files at
	// exit (its sockets, its pid file).
	RemoveIn []string
	// SkipLandlock, if set, is why Landlock is not applied: a Landlock domain
	// may not ptrace-read processes outside it, which reading a peer's
	// /proc/PID/exe needs (docs/security.md §4).
	SkipLandlock string
	// Exec: a fence agent is executed. The filter is then a deny-list and
	// Landlock lets the agent read and execute anything.
	Exec bool
}

// Report says what Apply did, for the log.
type Report struct {
	Seccomp  string // "allow-list of N calls" or "deny-list of N calls"
	Landlock string // "ABI n" or why it was skipped
}

// Sandbox is a prepared confinement: the Landlock ruleset is built (its
// paths opened) by Prepare, while the helper may still open them, and
// applied with the filter by Apply, after the privilege drop.
type Sandbox struct {
	c        Config
	ruleset  int // -1: no Landlock
	landlock string
}

// Prepare builds c's Landlock ruleset, if the kernel has Landlock and c does
// not skip it.
func Prepare(c Config) (*Sandbox, error) {
	sb := &Sandbox{c: c, ruleset: -1}
	switch abi := ABI(); {
	case c.SkipLandlock != "":
		sb.landlock = "skipped: " + c.SkipLandlock
	case abi == 0:
		sb.landlock = "skipped: the kernel has no Landlock (or it is not enabled in lsm=)"
	default:
		known := min(abi, maxKnown)
		fd, err := buildRuleset(handledFS(known), Rules(c))
		if err != nil {
			return nil, err
		}
		sb.ruleset = fd
		sb.landlock = fmt.Sprintf("ABI %d (rights of ABI %d restricted)", abi, known)
	}
	return sb, nil
}

// Close releases a ruleset that was not applied.
func (sb *Sandbox) Close() {
	if sb.ruleset >= 0 {
		unix.Close(sb.ruleset)
		sb.ruleset = -1
	}
}

// Apply confines the calling process, on every thread and for good:
// no_new_privs, then Landlock (skipped, and said so in the report, where the
// kernel lacks it or the binary links cgo), then the seccomp filter. An
// error means the process may be partly confined; the caller should exit.
func (sb *Sandbox) Apply() (Report, error) {
	defer sb.Close()
	var r Report
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	allThreads := true
	if err := allThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1); err != nil {
		if !errors.Is(err, syscall.ENOTSUP) {
			return r, fmt.Errorf("sandbox: no_new_privs: %w", err)
		}
		// A cgo build: this thread now, the others through the filter's
		// TSYNC below; Landlock has no such way and is skipped.
		allThreads = false
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return r, fmt.Errorf("sandbox: no_new_privs: %w", err)
		}
	}
	r.Landlock = sb.landlock
	if sb.ruleset >= 0 {
		if !allThreads {
			r.Landlock = "skipped: Landlock applies per thread and this binary links cgo (build with CGO_ENABLED=0)"
		} else if _, _, errno := syscall.AllThreadsSyscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(sb.ruleset), 0, 0); errno != 0 {
			return r, fmt.Errorf("sandbox: landlock_restrict_self: %w", errno)
		}
	}
	list, listed, other := Calls(sb.c)
	if err := installFilter(Program(auditArch, x32, list, listed, other)); err != nil {
		return r, err
	}
	r.Seccomp = fmt.Sprintf("allow-list of %d calls, others EPERM", len(list))
	if listed == Deny {
		r.Seccomp = fmt.Sprintf("deny-list of %d calls (EPERM), others allowed", len(list))
	}
	return r, nil
}

// Apply is Prepare then Apply, for a process that keeps its privileges.
func Apply(c Config) (Report, error) {
	sb, err := Prepare(c)
	if err != nil {
		return Report{}, err
	}
	return sb.Apply()
}

// Calls returns the filter's list and actions for c: an allow-list of the
// calls c needs, or, when a fence agent is executed, a deny-list.
func Calls(c Config) (list []uint32, listed, other Action) {
	if c.Exec {
		return unique(deniedCalls, legacyDenied), Deny, Allow
	}
	sets := [][]uint32{baseCalls, legacyCalls}
	if c.Connect {
		sets = append(sets, connectCalls)
	}
	return unique(sets...), Allow, Deny
}

func unique(sets ...[]uint32) []uint32 {
	var all []uint32
	for _, s := range sets {
		all = append(all, s...)
	}
	slices.Sort(all)
	return slices.Compact(all)
}

// installFilter loads prog on every thread (SECCOMP_FILTER_FLAG_TSYNC), with
// the kernel logging what it denies (SECCOMP_FILTER_FLAG_LOG).
func installFilter(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER,
		unix.SECCOMP_FILTER_FLAG_TSYNC|unix.SECCOMP_FILTER_FLAG_LOG, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("sandbox: seccomp filter: %w", errno)
	}
	return nil
}

func allThreadsPrctl(option, arg uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall6(unix.SYS_PRCTL, option, arg, 0, 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}
