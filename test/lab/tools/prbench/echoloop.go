package main

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// serveEchoLoop is the second floor of the host measurements (-echo-loop):
// the echo floor's work (serveEcho: receive the CDB with its descriptor,
// close it, read a PR OUT parameter list, write the precomputed reply) done
// the way qemu-pr-helper's main loop does it, by one thread for every
// connection: one epoll set, every socket non-blocking, the ready ones served
// in the order epoll reports them, the thread asleep in epoll_wait when none
// is. No goroutine is parked or woken per request. A connection that breaks
// the protocol, or whose reply does not fit its socket at once, is closed.
func serveEchoLoop(sock string) error {
	os.Remove(sock)
	lfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrUnix{Name: sock}); err != nil {
		return fmt.Errorf("bind %s: %w", sock, err)
	}
	if err := unix.Listen(lfd, 128); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, lfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(lfd)}); err != nil {
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l := &loop{conns: map[int]*loopConn{}, answer: floorAnswer(),
		in: make([]byte, wire.CDBSize+wire.MaxData), oob: floorOOB()}
	evs := make([]unix.EpollEvent, 64)
	for {
		n, err := unix.EpollWait(ep, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range evs[:n] {
			if fd := int(ev.Fd); fd != lfd {
				l.serve(fd)
				continue
			}
			for {
				c, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				if err != nil {
					break
				}
				var feat [wire.FeatureSize]byte
				if _, err := unix.Write(c, feat[:]); err != nil ||
					unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, c, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(c)}) != nil {
					unix.Close(c)
					continue
				}
				l.conns[c] = &loopConn{skip: wire.FeatureSize}
			}
		}
	}
}

type loop struct {
	conns   map[int]*loopConn
	answer  []byte
	in, oob []byte
}

// loopConn is what a connection has sent of its next request.
type loopConn struct {
	skip int    // bytes of the client's feature word still to come
	buf  []byte // the request so far
}

// serve reads what connection fd has sent and answers every whole request in
// it; at EAGAIN it returns to the loop.
func (l *loop) serve(fd int) {
	c := l.conns[fd]
	if c == nil {
		return
	}
	for {
		n, oobn, _, _, err := unix.Recvmsg(fd, l.in, l.oob, 0)
		if err == unix.EAGAIN {
			return
		}
		closeRights(l.oob[:oobn])
		if err != nil || n == 0 {
			l.drop(fd)
			return
		}
		b := l.in[:n]
		skip := min(c.skip, len(b))
		c.skip -= skip
		c.buf = append(c.buf, b[skip:]...)
		for len(c.buf) >= wire.CDBSize {
			if wire.ValidateCDB(c.buf[:wire.CDBSize]) != nil {
				l.drop(fd)
				return
			}
			need := wire.CDBSize
			if c.buf[0] == scsi.OpPersistentReserveOut {
				need += scsi.TransferLength(c.buf[:wire.CDBSize])
			}
			if len(c.buf) < need {
				break
			}
			c.buf = c.buf[:copy(c.buf, c.buf[need:])]
			if w, err := unix.Write(fd, l.answer); err != nil || w != len(l.answer) {
				l.drop(fd)
				return
			}
		}
	}
}

func (l *loop) drop(fd int) {
	unix.Close(fd)
	delete(l.conns, fd)
}

// closeRights closes the descriptors that came in a control message.
func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for i := range msgs {
		fds, _ := unix.ParseUnixRights(&msgs[i])
		for _, f := range fds {
			unix.Close(f)
		}
	}
}
