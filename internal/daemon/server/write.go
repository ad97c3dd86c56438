package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// writeReply writes b, a whole encoded reply, on c. The write deadline
// (Options.WriteTimeout, doc.go) is armed only when the socket does not take
// the whole reply at once: a client that reads has an empty socket buffer
// when its reply comes (one request outstanding at a time), so the first
// write(2) takes all of it and no deadline is needed. Setting the deadline
// before every reply cost three clock reads (system calls in the lab guest)
// and a change of the connection's runtime timer, which wakes a thread of the
// Go scheduler (the network poller's, or an idle one) when it is the earliest
// timer: a wake-up per request for nothing (docs/performance.md §3.5). After a
// write that needed the deadline it is cleared again, so the next first
// write(2), which a past deadline would refuse, can run.
func (s *Server) writeReply(c *conn, b []byte) error {
	n, err := writeOnce(c, b)
	if err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	if n == len(b) {
		return nil
	}
	s.writeDeadline(c)
	if _, err := c.Write(b[n:]); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	// The error is that of a closed connection, which the next write reports.
	_ = c.SetWriteDeadline(time.Time{})
	return nil
}

// writeOnce makes one write(2) of b on c's socket without waiting for room: it
// returns how many bytes the socket took, 0 when its buffer is full (EAGAIN).
// Errors are net.OpErrors, as c.Write returns them (a closed connection is
// net.ErrClosed).
func writeOnce(c *conn, b []byte) (int, error) {
	if c.w == nil {
		raw, err := c.SyscallConn()
		if err != nil {
			return 0, err
		}
		c.w = &rawWriter{raw: raw}
		c.w.fn = c.w.write
	}
	w := c.w
	w.b = b
	err := w.raw.Write(w.fn)
	n, werr := w.n, w.err
	w.b, w.err = nil, nil
	switch {
	case err != nil:
		return 0, err
	case errors.Is(werr, unix.EAGAIN):
		return 0, nil
	case werr != nil:
		return 0, &net.OpError{Op: "write", Net: "unix", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	}
	return n, nil
}

// rawWriter is a connection's write(2) through its syscall.RawConn. The
// function RawConn.Write calls is made once per connection (fn, the method
// value of write) and finds its arguments and results in the struct: a
// closure made per reply would be allocated per reply.
type rawWriter struct {
	raw syscall.RawConn
	fn  func(fd uintptr) bool

	b   []byte // what to write
	n   int    // how much the socket took
	err error
}

func (w *rawWriter) write(fd uintptr) bool {
	for {
		w.n, w.err = unix.Write(int(fd), w.b)
		if !errors.Is(w.err, unix.EINTR) {
			return true // done, whatever happened: never wait here
		}
	}
}
