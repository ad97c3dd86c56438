package identity

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Resolve returns the initiator of the client on conn under r.Policy. Under
// PolicyPeer it identifies the peer process from the socket (SO_PEERPIDFD,
// else SO_PEERCRED + pidfd_open) and reads its command line (ReadCmdline).
func (r Resolver) Resolve(conn *net.UnixConn) (Initiator, error) {
	return r.resolve(func() ([]byte, string, error) {
		pid, pidfd, err := peerProcess(conn)
		if err != nil {
			return nil, "", err
		}
		if pidfd >= 0 {
			defer unix.Close(pidfd)
		}
		b, err := checkExe(r.Exe, r.proc(), pid, func() ([]byte, error) { return readCmdline(r.proc(), pid, pidfd) })
		if err == nil && pidfd >= 0 {
			err = alive(pidfd, pid)
		}
		return b, "peer pid " + strconv.Itoa(pid), err
	})
}

// ResolvePID is Resolve for a caller that already has the peer's pid (from
// its own SO_PEERCRED). The pid-reuse check then covers only the time from
// this call on: see ReadCmdline.
func (r Resolver) ResolvePID(pid int) (Initiator, error) {
	return r.resolve(func() ([]byte, string, error) {
		b, err := checkExe(r.Exe, r.proc(), pid, func() ([]byte, error) { return ReadCmdline(r.proc(), pid) })
		return b, "peer pid " + strconv.Itoa(pid), err
	})
}

// PeerPID returns the pid of the process that connected the other end of
// conn, from SO_PEERCRED (unix(7)): the pid at connect(2) time.
func PeerPID(conn *net.UnixConn) (int, error) {
	var pid int
	err := control(conn, func(fd int) error {
		cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			return fmt.Errorf("getsockopt SO_PEERCRED: %w", err)
		}
		pid = int(cred.Pid)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if pid <= 0 {
		return 0, fmt.Errorf("SO_PEERCRED: peer pid %d (peer in another pid namespace?)", pid)
	}
	return pid, nil
}

// peerProcess returns the peer's pid and a pidfd for it (-1 if pidfds are not
// available). SO_PEERPIDFD (Linux 6.5) pins the very process that connected;
// on older kernels pidfd_open(SO_PEERCRED pid) leaves the window between
// connect and pidfd_open, in which the peer could exit and its pid be reused.
func peerProcess(conn *net.UnixConn) (int, int, error) {
	pid, err := PeerPID(conn)
	if err != nil {
		return 0, -1, err
	}
	pidfd := -1
	err = control(conn, func(fd int) error {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		switch {
		case err == nil:
			pidfd = v
		case errors.Is(err, unix.ENOPROTOOPT), errors.Is(err, unix.EINVAL):
			// Before Linux 6.5: fall back to pidfd_open below.
		default:
			// ESRCH: the peer is gone; its pid may already name another
			// process, so pidfd_open(pid) must not be tried.
			return fmt.Errorf("getsockopt SO_PEERPIDFD (peer pid %d): %w", pid, err)
		}
		return nil
	})
	if err != nil {
		return 0, -1, err
	}
	if pidfd < 0 {
		pidfd, err = openPidfd(pid)
		if err != nil {
			return 0, -1, err
		}
	}
	return pid, pidfd, nil
}

// openPidfd returns a pidfd for pid, or -1 (and the start-time check) if the
// kernel has no pidfd_open (before 5.3) or a seccomp filter refuses it.
func openPidfd(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case err == nil:
		return fd, nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		return -1, nil
	}
	return -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
}

func control(conn *net.UnixConn, f func(fd int) error) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	return ferr
}

// ReadCmdline reads <proc>/<pid>/cmdline and makes sure it belonged to the
// process that had the pid when the call began, not to a successor that got
// the pid after it exited: it opens a pidfd first, reads, then asks the kernel
// with pidfd_send_signal(pidfd, 0) whether that process still exists. A pid
// is not reused while its process exists (even as a zombie), so success means
// the read saw it. Without pidfds (Linux < 5.3) it compares the process start
// time (field 22 of <pid>/stat) before and after the read instead.
func ReadCmdline(proc string, pid int) ([]byte, error) {
	if pid <= 0 {
		return nil, fmt.Errorf("pid %d: not a process", pid)
	}
	pidfd, err := openPidfd(pid)
	if err != nil {
		return nil, err
	}
	if pidfd >= 0 {
		defer unix.Close(pidfd)
	}
	return readCmdline(proc, pid, pidfd)
}

func readCmdline(proc string, pid, pidfd int) ([]byte, error) {
	dir := filepath.Join(proc, strconv.Itoa(pid))
	var start string
	if pidfd < 0 {
		var err error
		if start, err = startTime(dir); err != nil {
			return nil, err
		}
	}
	b, err := readLimited(filepath.Join(dir, "cmdline"), maxCmdline)
	if err != nil {
		return nil, err
	}
	if pidfd >= 0 {
		if err := alive(pidfd, pid); err != nil {
			return nil, err
		}
	} else {
		again, err := startTime(dir)
		if err != nil || again != start {
			return nil, fmt.Errorf("pid %d changed while its command line was read", pid)
		}
	}
	return b, nil
}

// alive makes sure the process of pidfd still exists, so that what was read
// under its pid was its own.
func alive(pidfd, pid int) error {
	err := unix.PidfdSendSignal(pidfd, 0, nil, 0)
	if err != nil && !errors.Is(err, unix.EPERM) {
		return fmt.Errorf("pid %d exited while its command line was read: %w", pid, err)
	}
	return nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: longer than %d bytes", path, limit)
	}
	return b, nil
}

// startTime returns field 22 (starttime) of <dir>/stat (proc(5)). The comm
// field may hold spaces and parentheses, so fields are counted after the last
// ')'.
func startTime(dir string) (string, error) {
	b, err := readLimited(filepath.Join(dir, "stat"), 4096)
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("%s/stat: no ')'", dir)
	}
	f := strings.Fields(s[i+1:])
	const starttime = 22 - 3 // fields 3.. follow the ')'
	if len(f) <= starttime {
		return "", fmt.Errorf("%s/stat: %d fields", dir, len(f)+2)
	}
	return f[starttime], nil
}
