package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultPeerExe is the QEMU binaries the peer policy accepts by default: the
// system emulators of Debian and Fedora (/usr/bin/qemu-system-*), Fedora's and
// RHEL's qemu-kvm, and a QEMU built from source into /usr/local
// (docs/security.md §3).
var DefaultPeerExe = []string{
	"/usr/bin/qemu-system-*",
	"/usr/libexec/qemu-kvm",
	"/usr/bin/qemu-kvm",
	"/usr/local/bin/qemu-system-*",
}

// PeerExeAny is the --peer-exe value that turns the executable check off.
const PeerExeAny = "any"

type fileID struct{ dev, ino uint64 }

// ExeList is the executables a peer must be running for the peer policy to
// take its command line as its identity. A file is known by device and inode,
// not by name: the peer's executable is compared with what the patterns name,
// so that a copy or a link elsewhere does not pass. Each binary found is held
// open (O_PATH), so that its inode stays the same file while the helper runs:
// a QEMU started before a package upgrade keeps matching the binary it runs.
type ExeList struct {
	patterns []string

	mu    sync.Mutex
	known map[fileID]string
	held  []*os.File
}

// NewExeList resolves patterns (absolute paths, shell patterns allowed). A
// pattern that names nothing now is kept: a QEMU installed later is found on
// the first peer that does not match.
func NewExeList(patterns []string) (*ExeList, error) {
	if len(patterns) == 0 {
		return nil, errors.New("peer executables: empty list (give paths, or " + PeerExeAny + " to turn the check off)")
	}
	for _, p := range patterns {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("peer executable %q: path must be absolute", p)
		}
		if _, err := filepath.Match(p, ""); err != nil {
			return nil, fmt.Errorf("peer executable %q: %w", p, err)
		}
	}
	l := &ExeList{patterns: patterns, known: make(map[fileID]string)}
	l.refresh()
	return l, nil
}

// ParsePeerExe parses --peer-exe's comma-separated list; "any" returns nil
// (no check).
func ParsePeerExe(v string) (*ExeList, error) {
	if strings.TrimSpace(v) == PeerExeAny {
		return nil, nil
	}
	var ps []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			ps = append(ps, p)
		}
	}
	return NewExeList(ps)
}

// String lists the patterns.
func (l *ExeList) String() string {
	if l == nil {
		return PeerExeAny
	}
	return strings.Join(l.patterns, ",")
}

// Found is the number of binaries the patterns named so far.
func (l *ExeList) Found() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.known)
}

// refresh opens what the patterns name now and adds it to the known files.
func (l *ExeList) refresh() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.patterns {
		paths, _ := filepath.Glob(p)
		for _, path := range paths {
			f, err := os.OpenFile(path, unix.O_PATH|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
				f.Close()
				continue
			}
			id := fileID{st.Dev, st.Ino}
			if _, ok := l.known[id]; ok {
				f.Close()
				continue
			}
			l.known[id] = path
			l.held = append(l.held, f)
		}
	}
}

func (l *ExeList) lookup(id fileID) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.known[id]
	return p, ok
}

// match reports whether id is one of the list's binaries, looking again at the
// patterns once when it is not (a QEMU installed or upgraded since).
func (l *ExeList) match(id fileID) (string, bool) {
	if p, ok := l.lookup(id); ok {
		return p, true
	}
	l.refresh()
	return l.lookup(id)
}

// Close releases the held binaries.
func (l *ExeList) Close() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.held {
		f.Close()
	}
	l.held, l.known = nil, map[fileID]string{}
}

// peerExe returns the identity of <proc>/<pid>/exe, the file the process
// runs (proc(5)), and its name for messages. Reading it needs ptrace read
// access to the process: the same uid and no more capabilities than the
// helper, else CAP_SYS_PTRACE.
func peerExe(proc string, pid int) (fileID, string, error) {
	link := filepath.Join(proc, strconv.Itoa(pid), "exe")
	var st unix.Stat_t
	if err := unix.Stat(link, &st); err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return fileID{}, "", fmt.Errorf("peer pid %d: its executable cannot be read (%w): the helper needs CAP_SYS_PTRACE for peers of other users", pid, err)
		}
		return fileID{}, "", fmt.Errorf("peer pid %d: executable: %w", pid, err)
	}
	name, _ := os.Readlink(link)
	return fileID{st.Dev, st.Ino}, name, nil
}

// checkExe makes sure the peer runs one of l's binaries and that it ran the
// same one around read, the reading of its command line: a process that
// execs another program in between is refused (docs/security.md §3).
func checkExe(l *ExeList, proc string, pid int, read func() ([]byte, error)) ([]byte, error) {
	if l == nil {
		return read()
	}
	id, name, err := peerExe(proc, pid)
	if err != nil {
		return nil, err
	}
	if _, ok := l.match(id); !ok {
		return nil, fmt.Errorf("peer pid %d runs %s, which is not a QEMU binary of the peer executable list (%s)", pid, name, l)
	}
	b, err := read()
	if err != nil {
		return nil, err
	}
	again, _, err := peerExe(proc, pid)
	if err != nil {
		return nil, err
	}
	if again != id {
		return nil, fmt.Errorf("peer pid %d executed another program while its command line was read", pid)
	}
	return b, nil
}
