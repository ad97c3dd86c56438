package access

import (
	"errors"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PeerCred reads the credentials of conn's peer: SO_PEERCRED, then
// SO_PEERGROUPS (unix(7)). A kernel without SO_PEERGROUPS (before 4.13)
// leaves Groups nil: only the primary gid is then compared.
func PeerCred(conn *net.UnixConn) (Cred, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var c Cred
	var ferr error
	err = rc.Control(func(fd uintptr) {
		u, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if err != nil {
			ferr = fmt.Errorf("getsockopt SO_PEERCRED: %w", err)
			return
		}
		c = Cred{PID: u.Pid, UID: u.Uid, GID: u.Gid}
		c.Groups, ferr = peerGroups(int(fd))
	})
	if err != nil {
		return Cred{}, fmt.Errorf("peer credentials: %w", err)
	}
	return c, ferr
}

// peerGroups reads SO_PEERGROUPS: an array of gid_t, the needed size given by
// ERANGE when the buffer is too small.
func peerGroups(fd int) ([]uint32, error) {
	n := 64
	for {
		buf := make([]uint32, n)
		size := uint32(n * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4], nil
		case errno == unix.ERANGE && int(size/4) > n && size/4 <= 1<<16:
			n = int(size / 4)
		case errors.Is(errno, unix.ENOPROTOOPT):
			return nil, nil
		default:
			return nil, fmt.Errorf("getsockopt SO_PEERGROUPS: %w", errno)
		}
	}
}
