package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Defaults of Options; doc.go says why these values.
const (
	DefaultGrace        = 10 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultCancelWait   = 2 * time.Second
	DefaultLogInterval  = 10 * time.Second
)

// Options bound how long the server waits for others. A zero field takes its
// default.
type Options struct {
	// Grace is how long requests in flight at shutdown may still run and be
	// answered before their backends' context is cancelled and their
	// connections are closed.
	Grace time.Duration
	// WriteTimeout bounds the writing of each reply (and of the handshake): a
	// client that does not read what it is sent loses its connection instead of
	// pinning a goroutine.
	WriteTimeout time.Duration
	// CancelWait is how long Serve still waits, after the grace period, for
	// the cut requests' goroutines to return. A goroutine blocked in the kernel
	// (an SG_IO or <linux/pr.h> ioctl that has not timed out yet) does not
	// return on cancellation; Serve returns without it.
	CancelWait time.Duration
	// Observer, when set, is told about connections, refused peers and every
	// answered request (the daemon's metrics).
	Observer Observer
	// LogInterval is how often a repeated warning (a protocol violation, an
	// accept failure) is logged: the first occurrence at once, the rest of
	// the interval as one summary line with a count.
	LogInterval time.Duration
	// MaxConns is how many connections are served at once; past it the
	// server stops accepting until one ends. Zero derives it from the
	// descriptor limit (doc.go).
	MaxConns int
}

// Observer is what the server reports for metrics. Its methods are called on
// the connections' goroutines and must be cheap and safe for concurrent use.
type Observer interface {
	ConnOpened()
	ConnClosed()
	// PeerRefused counts a peer refused for reason: "identity" (the
	// listener's policy could not name it) or "protocol" (its connection was
	// closed for a protocol violation).
	PeerRefused(reason string)
	// Request reports one answered request: its CDB, the backend that served
	// it (backend.Request.Served, else the server's backend), the SCSI status
	// and the time from the request read to the answer.
	Request(cdb []byte, backend string, status byte, d time.Duration)
}

// nopObserver is the Observer when none is set.
type nopObserver struct{}

func (nopObserver) ConnOpened()                                 {}
func (nopObserver) ConnClosed()                                 {}
func (nopObserver) PeerRefused(string)                          {}
func (nopObserver) Request([]byte, string, byte, time.Duration) {}

func (o Options) withDefaults() Options {
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.CancelWait <= 0 {
		o.CancelWait = DefaultCancelWait
	}
	if o.Observer == nil {
		o.Observer = nopObserver{}
	}
	if o.LogInterval <= 0 {
		o.LogInterval = DefaultLogInterval
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns()
	}
	return o
}

// ShutdownError is what Serve returns when its grace period ended with
// requests still running: their clients got no reply.
type ShutdownError struct {
	Grace time.Duration
	// Cut is the number of requests still running when the grace period
	// ended; their connections were closed without a reply.
	Cut int
	// Stuck is how many connections' goroutines had still not returned
	// CancelWait after the backends' context was cancelled: requests blocked in
	// the kernel or in a backend that ignores its context.
	Stuck int
}

func (e *ShutdownError) Error() string {
	msg := fmt.Sprintf("shutdown: %s cut after %v grace", requests(e.Cut), e.Grace)
	if e.Stuck > 0 {
		msg += fmt.Sprintf(" (%d not returned after cancellation)", e.Stuck)
	}
	return msg
}

// requests is "1 request", "2 requests".
func requests(n int) string {
	if n == 1 {
		return "1 request"
	}
	return fmt.Sprintf("%d requests", n)
}

// phase is what a connection is doing.
type phase uint8

const (
	phaseIdle    phase = iota // waiting for a request (or handshaking)
	phaseBackend              // a request runs in the backend
	phaseReply                // its reply is being written
)

func (p phase) String() string {
	switch p {
	case phaseBackend:
		return "backend"
	case phaseReply:
		return "reply"
	}
	return "idle"
}

// setPhase records what c is doing. Starting a request (phaseBackend) is
// refused, with false, once the shutdown began: qemu-pr-helper too stops
// reading requests when it terminates. since is when the request was read
// (phaseBackend only).
func (s *Server) setPhase(c *conn, p phase, req *wire.Request, since time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch p {
	case phaseBackend:
		if s.closing {
			return false
		}
		c.cmd, c.since = scsi.CommandName(req.CDB[:]), since
	case phaseIdle:
		c.cmd, c.since = "", time.Time{}
	}
	c.phase = p
	return true
}

// writeDeadline bounds the next writes on c. A reply is at most 8296 bytes and
// a client has one request outstanding at a time, so a client that reads finds
// it written into the socket buffer at once; only a client that sent requests
// without reading their replies can fill that buffer and block the write.
func (s *Server) writeDeadline(c *conn) {
	// The error is that of a closed connection, which the write reports too.
	_ = c.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout))
}

func (s *Server) logReplyErr(log *slog.Logger, req *wire.Request, err error) {
	cmd := scsi.CommandName(req.CDB[:])
	switch {
	case errors.Is(err, net.ErrClosed):
		log.Debug("reply not delivered: connection closed at shutdown", "cmd", cmd)
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Warn("reply not delivered: the client did not read it; closing the connection",
			"cmd", cmd, "write_timeout", s.opts.WriteTimeout)
	default:
		log.Warn("reply not delivered", "cmd", cmd, "err", err)
	}
}

// shutdown runs once the listeners are closed. It closes the idle connections
// and gives the busy ones the grace period; then it cancels the backends'
// context (cancelExec), closes every connection left, and waits at most
// CancelWait for their goroutines.
func (s *Server) shutdown(cancelExec context.CancelFunc) error {
	s.mu.Lock()
	s.closing = true
	busy, idle := 0, 0
	for c := range s.conns {
		if c.phase == phaseIdle {
			c.Close()
			idle++
		} else {
			busy++
		}
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	if busy > 0 {
		s.log.Info(fmt.Sprintf("shutdown: waiting up to %v for %s in flight", s.opts.Grace, requests(busy)),
			"in_flight", busy, "idle_closed", idle)
	} else {
		s.log.Debug("shutdown: no request in flight", "idle_closed", idle)
	}
	grace := time.NewTimer(s.opts.Grace)
	defer grace.Stop()
	select {
	case <-done:
		if busy > 0 {
			s.log.Info("shutdown: every request in flight was answered")
		}
		return nil
	case <-grace.C:
	}

	cut := s.closeAll()
	cancelExec()
	wait := time.NewTimer(s.opts.CancelWait)
	defer wait.Stop()
	stuck := 0
	select {
	case <-done:
	case <-wait.C:
		s.mu.Lock()
		stuck = len(s.conns)
		s.mu.Unlock()
		if stuck > 0 {
			s.log.Error(fmt.Sprintf("shutdown: %s not returned %v after cancellation (blocked in the kernel, or ignoring its context); stopping without it",
				requests(stuck), s.opts.CancelWait), "stuck", stuck)
		}
	}
	if cut == 0 {
		return nil
	}
	return &ShutdownError{Grace: s.opts.Grace, Cut: cut, Stuck: stuck}
}

// closeAll closes every connection left, logs the requests it cuts, and returns
// their number.
func (s *Server) closeAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cut []*conn
	for c := range s.conns {
		c.Close()
		if c.phase != phaseIdle {
			cut = append(cut, c)
		}
	}
	if len(cut) == 0 {
		return 0
	}
	s.log.Warn(fmt.Sprintf("shutdown: %s still running after %v grace; closing", requests(len(cut)), s.opts.Grace),
		"cut", len(cut))
	now := time.Now()
	for _, c := range cut {
		s.log.Warn("shutdown: request cut", "conn", c.id, "cmd", c.cmd, "during", c.phase.String(),
			"running", now.Sub(c.since).Round(time.Millisecond))
	}
	return len(cut)
}
