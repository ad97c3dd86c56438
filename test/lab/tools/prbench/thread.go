package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// threadDoer is a connection as QEMU's pr-manager-helper drives it: one
// thread doing blocking system calls on a blocking socket, one command at a
// time (-client thread). The default client (p.open) is the project's Go
// library on the netpoller, whose goroutines the Go scheduler runs on
// GOMAXPROCS threads; with -client thread, each connection's requests are
// issued from its own OS thread (bench locks the worker goroutine to it),
// which the kernel schedules, as it schedules QEMU's workers. The socket is
// an os.File of a blocking descriptor, which Go reads and writes with plain
// system calls, outside its network poller.
func threadDoer(sock string, f *os.File) (doer, func(), error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("connect %s: %w", sock, err)
	}
	c := os.NewFile(uintptr(fd), sock)
	if err := wire.ClientHandshake(c); err != nil {
		c.Close()
		return nil, nil, err
	}
	send := func(cdb, oob []byte) error { return unix.Sendmsg(fd, cdb, oob, nil, 0) }
	return exchanger(c, send, f), func() { c.Close() }, nil
}

// leanDoer is a connection on Go's netpoller that does per request only what
// QEMU's pr-manager-helper does: the CDB with the descriptor in one sendmsg,
// the parameter list, the reply header and data read in full; no deadline, no
// liveness probe, nothing allocated (-client lean).
func leanDoer(sock string, f *os.File) (doer, func(), error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("connect %s: %w", sock, err)
	}
	if err := wire.ClientHandshake(c); err != nil {
		c.Close()
		return nil, nil, err
	}
	send := func(cdb, oob []byte) error {
		_, _, err := c.WriteMsgUnix(cdb, oob, nil)
		return err
	}
	return exchanger(c, send, f), func() { c.Close() }, nil
}

// exchanger is the request and reply of the lean and thread clients over
// rw, whose send writes the CDB with a control message: the bytes of
// wire.WriteRequest and wire.ReadReply (whose header it reads with
// wire.ReadReplyHeader), with the buffers made once per connection instead of
// per request, and without WriteRequest's check of a short CDB write (a bench
// has no use for it).
func exchanger(rw io.ReadWriter, send func(cdb, oob []byte) error, f *os.File) doer {
	rights := unix.UnixRights(int(f.Fd()))
	hdr := make([]byte, wire.HeaderSize)
	data := make([]byte, wire.MaxData)
	return func(st *step) (byte, error) {
		if err := send(st.cdb[:], rights); err != nil {
			return 0, fmt.Errorf("send CDB: %w", err)
		}
		if st.cdb[0] == scsi.OpPersistentReserveOut && len(st.param) > 0 {
			if _, err := rw.Write(st.param); err != nil {
				return 0, fmt.Errorf("send parameter list: %w", err)
			}
		}
		status, size, _, err := wire.ReadReplyHeader(rw, hdr)
		if err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(rw, data[:size]); err != nil {
			return 0, fmt.Errorf("read reply data: %w", err)
		}
		return status, nil
	}
}

// threadProcs is the GOMAXPROCS the -client thread client runs with: one P for
// each connection's thread and two to spare, so that a thread returning from
// its blocking read finds a P at once instead of queueing for one of a
// few, which would put the Go scheduler back between the kernel and the
// measurement.
func threadProcs(clients int) int { return max(runtime.GOMAXPROCS(0), clients+2) }
