package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// Server serves the helper protocol on one or more listeners.
type Server struct {
	backend backend.Backend
	log     *slog.Logger
	opts    Options

	mu       sync.Mutex
	closing  bool
	conns    map[*conn]struct{}
	wg       sync.WaitGroup
	nextID   atomic.Uint64
	requests atomic.Uint64
}

// New returns a server that executes every request on b and logs to log; zero
// fields of opts take their defaults.
func New(b backend.Backend, log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{backend: b, log: log, opts: opts.withDefaults(), conns: make(map[*conn]struct{})}
}

// Requests is the number of requests executed so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Listener is a listening socket with what the server tells backends about the
// connections it accepts.
type Listener struct {
	*net.UnixListener
	// Identify names the initiator behind a new connection (the listener's
	// identity policy: the host, the QEMU peer, or a fixed name). It runs once per
	// connection; nil leaves backend.Request.Initiator empty.
	Identify func(*net.UnixConn) (string, error)
	// TargetPort is the relative target port identifier reported for requests
	// on this listener; 0 means 1.
	TargetPort uint16
	// Track, if set, is told each identified connection when it starts (the
	// fencing registry pins the peer process with a pidfd) and returns what to
	// call when the connection ends.
	Track func(initiator string, c *net.UnixConn) (release func(), err error)
}

// Serve accepts connections on every listener until ctx is done, then shuts down
// within a bound: the listeners are closed (which removes a socket file the
// listener created), idle connections are closed, requests in flight get
// Options.Grace to finish and be answered; then their backends' context is
// cancelled, their connections are closed, and Serve returns at the latest
// Options.CancelWait later, with a *ShutdownError saying how many requests were
// cut. A listener failing for another reason also stops the server and is
// returned as the error.
func (s *Server) Serve(ctx context.Context, listeners ...Listener) error {
	if len(listeners) == 0 {
		return errors.New("serve: no listener")
	}
	// Backends run under a context of their own: the stop only ends accepting;
	// a request in flight keeps its context until the grace period is over.
	execCtx, cancelExec := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelExec()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(listeners))
	var accepting sync.WaitGroup
	for _, l := range listeners {
		accepting.Add(1)
		go func() {
			defer accepting.Done()
			errc <- s.acceptLoop(ctx, execCtx, l)
		}()
	}
	<-ctx.Done()
	for _, l := range listeners {
		l.Close()
	}
	accepting.Wait()
	close(errc)
	var err error
	for e := range errc {
		if e != nil && err == nil {
			err = e
		}
	}
	if serr := s.shutdown(cancelExec); serr != nil {
		err = errors.Join(err, serr)
	}
	return err
}

func (s *Server) acceptLoop(ctx, execCtx context.Context, l Listener) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ECONNABORTED) {
				s.log.Warn("accept failed, continuing", "listener", l.Addr().String(), "err", err)
				continue
			}
			return fmt.Errorf("accept on %s: %w", l.Addr(), err)
		}
		s.start(ctx, execCtx, c, l)
	}
}

// start registers and runs a connection; after shutdown began it is refused.
func (s *Server) start(ctx, execCtx context.Context, nc *net.UnixConn, l Listener) {
	c := &conn{UnixConn: nc, id: s.nextID.Add(1), listener: l}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			nc.Close()
		}()
		s.serveConn(ctx, execCtx, c)
	}()
}

type conn struct {
	*net.UnixConn
	id       uint64
	listener Listener

	// What the connection is doing, for the shutdown; guarded by Server.mu.
	phase phase
	cmd   string    // the request's command, while one runs
	since time.Time // when the request was read

	initiator   string // from listener.Identify, set before the first request
	identityErr error
}

// serveConn runs c's requests one at a time. ctx ends when the server stops
// accepting, execCtx when the grace period of the shutdown is over.
func (s *Server) serveConn(ctx, execCtx context.Context, c *conn) {
	log := s.log.With("conn", c.id)
	if pid, uid, ok := peerCred(c.UnixConn); ok {
		log = log.With("peer_pid", pid, "peer_uid", uid)
	}
	if c.listener.Identify != nil {
		c.initiator, c.identityErr = c.listener.Identify(c.UnixConn)
		if c.identityErr != nil {
			log.Warn("initiator identity unknown; backends that need it will refuse", "err", c.identityErr)
		} else {
			log = log.With("initiator", c.initiator)
			if c.listener.Track != nil {
				release, err := c.listener.Track(c.initiator, c.UnixConn)
				if err != nil {
					log.Warn("peer process not tracked: it cannot be fenced", "err", err)
				}
				if release != nil {
					defer release()
				}
			}
		}
	}
	log.Debug("connection accepted")
	s.writeDeadline(c)
	if err := wire.ServerHandshake(c.UnixConn); err != nil {
		s.logConnErr(log, "handshake", err)
		return
	}
	for {
		req, err := wire.ReadRequest(c.UnixConn)
		if err != nil {
			s.logConnErr(log, "read request", err)
			return
		}
		if !s.setPhase(c, phaseBackend, req) {
			unix.Close(req.FD)
			return
		}
		rep := reply(s.execute(execCtx, log, c, req))
		s.setPhase(c, phaseReply, req)
		s.writeDeadline(c)
		err = wire.WriteReply(c.UnixConn, req.CDB[:], &rep)
		s.setPhase(c, phaseIdle, nil)
		if err != nil {
			s.logReplyErr(log, req, err)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// execute runs one request and closes its descriptor, whatever happens.
func (s *Server) execute(ctx context.Context, log *slog.Logger, c *conn, req *wire.Request) (res scsi.Result) {
	defer unix.Close(req.FD)
	s.requests.Add(1)
	name := scsi.CommandName(req.CDB[:])
	log.Debug("request received", "cmd", name)
	defer func() {
		// A backend must not panic; if one does, the guest gets an error
		// instead of the whole helper going down.
		if p := recover(); p != nil {
			log.Error("backend panic", "cmd", name, "panic", p)
			res = scsi.CheckCondition(scsi.SenseTargetFailure)
		}
	}()
	if !req.IsPRIn() && readOnly(req.FD) {
		// qemu-pr-helper refuses PR OUT on a read-only descriptor with
		// INVALID COMMAND OPERATION CODE, and keeps the connection.
		log.Warn("request failed", "cmd", name, "status", "CHECK CONDITION", "sense", scsi.SenseInvalidOpcode.String(),
			"err", "PR OUT on a descriptor opened read-only")
		return scsi.CheckCondition(scsi.SenseInvalidOpcode)
	}
	breq := &backend.Request{CDB: req.CDB, Param: req.Param, FD: req.FD,
		Initiator: c.initiator, IdentityErr: c.identityErr, TargetPort: c.listener.TargetPort}
	res, err := s.backend.Execute(ctx, breq)
	served := s.backend.Name()
	if breq.ServedBy != "" {
		served = string(breq.ServedBy) // the router's choice (README: Logs)
	}
	if err != nil || res.Status != scsi.StatusGood {
		attrs := []any{"cmd", name, "backend", served, "status", scsi.StatusName(res.Status)}
		if sn, ok := res.ParseSense(); ok && res.Status == scsi.StatusCheckCondition {
			attrs = append(attrs, "sense", sn.String())
		}
		if err != nil {
			attrs = append(attrs, "err", err)
		}
		log.Warn("request failed", attrs...)
	} else {
		log.Debug("request done", "cmd", name, "backend", served, "data", len(res.Data))
	}
	return res
}

// reply is the helper protocol's reply carrying res: the sense data in the
// 96-byte field (a longer device sense is cut there, a shorter one zero
// filled). wire.EncodeReply then applies the protocol's rules on data.
func reply(res scsi.Result) wire.Reply {
	rep := wire.Reply{Status: res.Status, Data: res.Data}
	rep.SetSense(res.Sense)
	return rep
}

// readOnly reports whether fd was opened O_RDONLY. Like qemu-pr-helper, a failing
// fcntl does not count as read-only.
func readOnly(fd int) bool {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	return err == nil && fl&unix.O_ACCMODE == unix.O_RDONLY
}

func (s *Server) logConnErr(log *slog.Logger, what string, err error) {
	switch {
	case errors.Is(err, io.EOF):
		log.Debug("connection closed by peer")
	case errors.Is(err, wire.ErrProtocol):
		log.Warn("closing connection", "during", what, "err", err)
	case errors.Is(err, net.ErrClosed):
		log.Debug("connection closed at shutdown")
	default:
		log.Info("connection ended", "during", what, "err", err)
	}
}

func peerCred(c *net.UnixConn) (pid, uid int32, ok bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, false
	}
	var cred *unix.Ucred
	cerr := rc.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cerr != nil || err != nil {
		return 0, 0, false
	}
	return cred.Pid, int32(cred.Uid), true
}
