package activation

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// FirstFD is SD_LISTEN_FDS_START, the first descriptor systemd passes (sd-daemon.h).
const FirstFD = 3

// The environment variables of the protocol.
const (
	EnvPID     = "LISTEN_PID"
	EnvFDs     = "LISTEN_FDS"
	EnvFDNames = "LISTEN_FDNAMES"
)

// maxFDs bounds LISTEN_FDS so that an absurd value cannot make us walk the whole
// descriptor space; systemd itself refuses more than a few thousand per unit.
const maxFDs = 1 << 16

// The errors qemu-pr-helper prints for activation it refuses (docs/pr-helper-protocol.md §4.2).
const (
	ErrSocketPathSet = constError("Unix socket can't be set when using socket activation")
	ErrTooManyFDs    = constError("does not support socket activation with LISTEN_FDS > 1")
)

// constError is a string error so that sentinel errors can be constants.
type constError string

func (e constError) Error() string { return string(e) }

// Listeners returns the sockets systemd passed to process pid (normally
// os.Getpid()), read from the environment through getenv and unsetenv (normally
// os.Getenv and os.Unsetenv; injected so tests need no process environment).
//
// It returns nil, nil when the process is not socket-activated: LISTEN_PID unset,
// unparsable or naming another process, or LISTEN_FDS=0. When LISTEN_PID names
// pid, the three variables are removed whatever follows, then LISTEN_FDS must be
// a decimal count and every descriptor FirstFD..FirstFD+n-1 a listening AF_UNIX
// SOCK_STREAM socket; each is set close-on-exec and returned as a listener, in
// order. On error no listener is returned and the descriptors are left open.
//
// A returned listener owns its descriptor: FirstFD+i itself is closed and the
// listener holds a duplicate (net.FileListener). Closing the listener does not
// remove any socket path (SetUnlinkOnClose(false)), since systemd owns the path.
func Listeners(getenv func(string) string, unsetenv func(string) error, pid int) ([]*net.UnixListener, error) {
	return listeners(getenv, unsetenv, pid, FirstFD)
}

// listeners is Listeners with the first descriptor as a parameter, so tests can
// use descriptors that are free in the test process.
func listeners(getenv func(string) string, unsetenv func(string) error, pid, first int) ([]*net.UnixListener, error) {
	pidStr := getenv(EnvPID)
	if pidStr == "" {
		return nil, nil
	}
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		return nil, nil
	}
	fdsStr := getenv(EnvFDs)
	var errs []error
	for _, k := range []string{EnvFDs, EnvPID, EnvFDNames} {
		if err := unsetenv(k); err != nil {
			errs = append(errs, fmt.Errorf("socket activation: unset %s: %w", k, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n < 0 || n > maxFDs {
		return nil, fmt.Errorf("socket activation: %s=%q is not a descriptor count", EnvFDs, fdsStr)
	}
	if n == 0 {
		return nil, nil
	}
	for fd := first; fd < first+n; fd++ {
		if err := checkListener(fd); err != nil {
			return nil, fmt.Errorf("socket activation: %w", err)
		}
	}
	lns := make([]*net.UnixListener, 0, n)
	for fd := first; fd < first+n; fd++ {
		ln, err := wrap(fd)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("socket activation: %w", err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}

// checkListener verifies that fd is a listening AF_UNIX SOCK_STREAM socket and
// sets FD_CLOEXEC on it.
func checkListener(fd int) error {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("fd %d is not a socket: %w", fd, err)
	}
	if typ != unix.SOCK_STREAM {
		return fmt.Errorf("fd %d is not a stream socket (SO_TYPE %d)", fd, typ)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fmt.Errorf("fd %d: getsockname: %w", fd, err)
	}
	if _, ok := sa.(*unix.SockaddrUnix); !ok {
		return fmt.Errorf("fd %d is not an AF_UNIX socket (%T)", fd, sa)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fmt.Errorf("fd %d: SO_ACCEPTCONN: %w", fd, err)
	}
	if acc == 0 {
		return fmt.Errorf("fd %d is a socket that is not listening", fd)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fmt.Errorf("fd %d: set close-on-exec: %w", fd, err)
	}
	return nil
}

// wrap turns a checked descriptor into a *net.UnixListener and closes the original.
func wrap(fd int) (*net.UnixListener, error) {
	f := os.NewFile(uintptr(fd), "listen-fd-"+strconv.Itoa(fd))
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("fd %d: %w", fd, err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("fd %d: listener is %T, not a Unix listener", fd, l)
	}
	ul.SetUnlinkOnClose(false)
	return ul, nil
}

// Single applies qemu-pr-helper's rules to the result of Listeners: no listeners
// gives nil, nil (listen on the socket path as usual); activation together with an
// explicit -k/--socket is ErrSocketPathSet; more than one socket is ErrTooManyFDs;
// otherwise the one listener. The daemon prints the error and exits 1 as QEMU does.
// On error the listeners are left to the caller, which is about to exit.
func Single(lns []*net.UnixListener, socketPathSet bool) (*net.UnixListener, error) {
	switch {
	case len(lns) == 0:
		return nil, nil
	case socketPathSet:
		return nil, ErrSocketPathSet
	case len(lns) > 1:
		return nil, ErrTooManyFDs
	}
	return lns[0], nil
}
