package fence

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/daemon/identity"
)

// Proc is one process behind a live connection of an initiator: the QEMU that
// connected, pinned by a pidfd from accept time on, so that a signal can never
// reach a process that later got the same pid.
type Proc struct {
	PID int
	// UUID and Name are the VM's -uuid and -name from its command line, when
	// it could be read.
	UUID, Name string
	// Since is when the process started (from /proc, to about 10 ms), or when
	// its connection was accepted if that could not be read. A fence record
	// applies to processes that started before the eviction: a QEMU that
	// reconnects to a restarted helper is still the evicted VM, one started
	// after the eviction is a new start of it.
	Since time.Time

	pidfd int // -1 when pidfds are unavailable
}

// Registry is the set of live connections per initiator of one helper: what
// the kill policy signals, and what the helper announces to the others sharing
// the store (Coordinator). It is safe for concurrent use.
type Registry struct {
	mu      sync.Mutex
	next    uint64
	byInit  map[string]map[uint64]*Proc
	version uint64 // changes with every Track and release
	now     func() time.Time
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byInit: make(map[string]map[uint64]*Proc), now: time.Now}
}

// Track records the connection c of initiator (as the listener's identity
// policy named it): its peer pid from SO_PEERCRED, a pidfd opened on it, and
// the VM's uuid and name. Call the returned function when the connection
// ends: it forgets the connection and closes the pidfd once its process has
// exited (at once if it has; a process that outlives its connection stays
// tracked until then). A peer that cannot be identified is not tracked (the
// error says why): the kill policy cannot fence it, which the caller logs.
func (r *Registry) Track(initiator string, c *net.UnixConn) (func(), error) {
	pid, err := identity.PeerPID(c)
	if err != nil {
		return func() {}, err
	}
	return r.TrackPID(initiator, pid)
}

// TrackPID is Track for a known pid (tests, and callers with their own
// SO_PEERCRED). The pidfd is opened now: the pid-reuse window is from connect
// to this call.
func (r *Registry) TrackPID(initiator string, pid int) (func(), error) {
	if initiator == "" {
		return func() {}, errors.New("no initiator name")
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if !errors.Is(err, unix.ENOSYS) {
			return func() {}, fmt.Errorf("pidfd_open %d: %w", pid, err)
		}
		fd = -1
	}
	p := &Proc{PID: pid, Since: r.now(), pidfd: fd}
	if t, err := processStart(pid, r.now()); err == nil && t.Before(p.Since) {
		p.Since = t
	}
	if b, err := identity.ReadCmdline("/proc", pid); err == nil {
		if vm, err := identity.ParseCmdline(b); err == nil {
			p.UUID, p.Name = vm.UUID, vm.Name
		}
	}
	r.mu.Lock()
	r.next++
	id := r.next
	m := r.byInit[initiator]
	if m == nil {
		m = make(map[uint64]*Proc)
		r.byInit[initiator] = m
	}
	m[id] = p
	r.version++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			if fd >= 0 && !hasExited(fd) {
				// The connection ended but its process runs on: a QEMU that
				// closed its helper connection (or lost it) may still write
				// to the disk. It stays tracked, so fenced and announced,
				// until it exits (docs/fencing.md, "Who is fenced").
				go func() {
					waitExited(fd)
					r.forget(initiator, id, fd)
				}()
				return
			}
			r.forget(initiator, id, fd)
		})
	}, nil
}

// forget drops connection id of initiator and closes its pidfd.
func (r *Registry) forget(initiator string, id uint64, fd int) {
	r.mu.Lock()
	delete(r.byInit[initiator], id)
	if len(r.byInit[initiator]) == 0 {
		delete(r.byInit, initiator)
	}
	r.version++
	r.mu.Unlock()
	if fd >= 0 {
		unix.Close(fd)
	}
}

// hasExited reports whether the process of pidfd has exited: a pidfd polls
// readable once its process has terminated (pidfd_open(2)). An error of poll
// counts as exited, so that a broken descriptor is not kept for ever.
func hasExited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err != nil || (n > 0 && fds[0].Revents != 0)
	}
}

// waitExited blocks until the process of pidfd has exited (or poll fails).
func waitExited(pidfd int) {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || (n > 0 && fds[0].Revents != 0) {
			return
		}
	}
}

// procs returns the processes of initiator's connections accepted before
// (strictly) the time before, with their pidfds duplicated so that they stay
// valid while the caller uses them even if the connection ends meanwhile. The
// caller closes them with closeProcs.
func (r *Registry) procs(initiator string, before time.Time) []Proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Proc
	for _, p := range r.byInit[initiator] {
		if !p.Since.Before(before) {
			continue
		}
		c := *p
		if p.pidfd >= 0 {
			d, err := unix.FcntlInt(uintptr(p.pidfd), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				d = -1
			}
			c.pidfd = d
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out
}

func closeProcs(ps []Proc) {
	for _, p := range ps {
		if p.pidfd >= 0 {
			unix.Close(p.pidfd)
		}
	}
}

// served is what the helper announces: per initiator, the earliest time one of
// its live connections was accepted, and the registry's version.
func (r *Registry) served() (map[string]int64, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int64, len(r.byInit))
	for in, ps := range r.byInit {
		var first int64
		for _, p := range ps {
			if t := p.Since.UnixNano(); first == 0 || t < first {
				first = t
			}
		}
		m[in] = first
	}
	return m, r.version
}
