package main

import (
	"encoding/binary"
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
// which the kernel schedules, as it schedules QEMU's workers. Nothing is
// allocated per request.
func threadDoer(sock string, f *os.File) (doer, func(), error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socket: %w", err)
	}
	closeFn := func() { unix.Close(fd) }
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("connect %s: %w", sock, err)
	}
	var feat [wire.FeatureSize]byte
	if err := readFull(fd, feat[:]); err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("read helper features: %w", err)
	}
	feat = [wire.FeatureSize]byte{}
	if err := writeAll(fd, feat[:]); err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("send requested features: %w", err)
	}
	rights := unix.UnixRights(int(f.Fd()))
	hdr := make([]byte, wire.HeaderSize)
	data := make([]byte, wire.MaxData)
	return func(st *step) (byte, error) {
		if err := unix.Sendmsg(fd, st.cdb[:], rights, nil, 0); err != nil {
			return 0, fmt.Errorf("send CDB: %w", err)
		}
		if st.cdb[0] == scsi.OpPersistentReserveOut && len(st.param) > 0 {
			if err := writeAll(fd, st.param); err != nil {
				return 0, fmt.Errorf("send parameter list: %w", err)
			}
		}
		if err := readFull(fd, hdr); err != nil {
			return 0, fmt.Errorf("read reply header: %w", err)
		}
		status := int32(binary.BigEndian.Uint32(hdr[0:4]))
		size := int32(binary.BigEndian.Uint32(hdr[4:8]))
		if status < 0 || status > 0xff || size < 0 || size > wire.MaxData {
			return 0, fmt.Errorf("reply header: status %d, size %d", status, size)
		}
		if err := readFull(fd, data[:size]); err != nil {
			return 0, fmt.Errorf("read reply data: %w", err)
		}
		return byte(status), nil
	}, closeFn, nil
}

// threadProcs is the GOMAXPROCS the -client thread client runs with: one P for
// each connection's thread and two to spare, so that a thread returning from
// its blocking read finds a P at once instead of queueing for one of a
// few, which would put the Go scheduler back between the kernel and the
// measurement.
func threadProcs(clients int) int { return max(runtime.GOMAXPROCS(0), clients+2) }

func readFull(fd int, b []byte) error {
	for got := 0; got < len(b); {
		n, err := unix.Read(fd, b[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		got += n
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
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
	rights := unix.UnixRights(int(f.Fd()))
	hdr := make([]byte, wire.HeaderSize)
	data := make([]byte, wire.MaxData)
	return func(st *step) (byte, error) {
		if _, _, err := c.WriteMsgUnix(st.cdb[:], rights, nil); err != nil {
			return 0, fmt.Errorf("send CDB: %w", err)
		}
		if st.cdb[0] == scsi.OpPersistentReserveOut && len(st.param) > 0 {
			if _, err := c.Write(st.param); err != nil {
				return 0, fmt.Errorf("send parameter list: %w", err)
			}
		}
		if _, err := io.ReadFull(c, hdr); err != nil {
			return 0, fmt.Errorf("read reply header: %w", err)
		}
		status := int32(binary.BigEndian.Uint32(hdr[0:4]))
		size := int32(binary.BigEndian.Uint32(hdr[4:8]))
		if status < 0 || status > 0xff || size < 0 || size > wire.MaxData {
			return 0, fmt.Errorf("reply header: status %d, size %d", status, size)
		}
		if _, err := io.ReadFull(c, data[:size]); err != nil {
			return 0, fmt.Errorf("read reply data: %w", err)
		}
		return byte(status), nil
	}, func() { c.Close() }, nil
}
