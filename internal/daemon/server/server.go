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

	// slots holds one token per open connection (Options.MaxConns).
	slots   chan struct{}
	repeats *repeats
}

// New returns a server that executes every request on b and logs to log; zero
// fields of opts take their defaults.
func New(b backend.Backend, log *slog.Logger, opts Options) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts = opts.withDefaults()
	return &Server{backend: b, log: log, opts: opts, conns: make(map[*conn]struct{}),
		slots: make(chan struct{}, opts.MaxConns), repeats: newRepeats(log, opts.LogInterval)}
}

// Requests is the number of requests executed so far.
func (s *Server) Requests() uint64 { return s.requests.Load() }

// Listener is a listening socket with what the server tells backends about the
// connections it accepts.
type Listener struct {
	*net.UnixListener
	// Name is what logs call the listener (the socket's published path);
	// empty means its bound address.
	Name string
	// Identify names the initiator behind a new connection (the listener's
	// identity policy: the host, the QEMU peer, or a fixed name). It runs once per
	// connection; nil leaves backend.Request.Initiator empty.
	Identify func(*net.UnixConn) (string, error)
	// TargetPort is the relative target port identifier reported for requests
	// on this listener; 0 means 1.
	TargetPort uint16
	// Track, if set, is told each identified connection when it starts (the
	// fencing registry pins the peer process with a pidfd) and returns what to
	// call when the connection ends. An error wrapping ErrRefuse closes the
	// connection before its handshake; any other is logged and the connection
	// served.
	Track func(initiator string, c *net.UnixConn) (release func(), err error)
	// Admit, if set, decides from the peer's credentials whether a new
	// connection is served (package access: the allow-list). A refused
	// connection is closed without a reply, before the handshake; Admit logs
	// the refusal.
	Admit func(*net.UnixConn) bool
}

// ErrRefuse, wrapped in Track's error, makes the server close the connection
// instead of serving it (a VM whose helper could not announce it to the other
// hosts must not be served: docs/fencing.md, "Across hosts").
var ErrRefuse = errors.New("connection refused")

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
	s.repeats.flush()
	return err
}

// name is what the logs call l.
func (l Listener) name() string {
	if l.Name != "" {
		return l.Name
	}
	return l.Addr().String()
}

// acceptLoop accepts connections on l while a connection slot is free
// (Options.MaxConns). Out of descriptors, it pauses (5 ms doubling to 1 s) and
// tries again, logging once per Options.LogInterval with a count, and says when
// it accepts again; open connections are served meanwhile.
func (s *Server) acceptLoop(ctx, execCtx context.Context, l Listener) error {
	name := l.name()
	var backoff time.Duration
	failed := 0
	for {
		if !s.acquireSlot(ctx, name) {
			return nil
		}
		c, err := l.AcceptUnix()
		if err != nil {
			<-s.slots
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, unix.ECONNABORTED) {
				s.repeats.warn(nil, "accept-aborted "+name, "accept: connection aborted by the client", "listener", name)
				continue
			}
			if outOfDescriptors(err) {
				failed++
				backoff = min(max(2*backoff, 5*time.Millisecond), maxAcceptBackoff)
				s.repeats.warn(nil, "accept "+name, "accept failed: out of descriptors; pausing, open connections are still served",
					"listener", name, "err", err, "open_conns", len(s.slots), "failed_accepts", failed)
				if !sleepCtx(ctx, backoff) {
					return nil
				}
				continue
			}
			return fmt.Errorf("accept on %s: %w", name, err)
		}
		if failed > 0 {
			s.log.Info("accepting again", "listener", name, "failed_accepts", failed)
			failed, backoff = 0, 0
		}
		s.start(ctx, execCtx, c, l)
	}
}

// acquireSlot takes a connection slot, waiting for one while Options.MaxConns
// connections are open (logged once per interval); false means ctx is done.
func (s *Server) acquireSlot(ctx context.Context, name string) bool {
	select {
	case s.slots <- struct{}{}:
		return true
	default:
	}
	s.repeats.warn(nil, "maxconns "+name, "connection limit reached; new clients wait until a connection ends",
		"listener", name, "max_conns", s.opts.MaxConns)
	select {
	case s.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// start registers and runs a connection; after shutdown began it is refused.
func (s *Server) start(ctx, execCtx context.Context, nc *net.UnixConn, l Listener) {
	c := &conn{UnixConn: nc, id: s.nextID.Add(1), listener: l}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		nc.Close()
		<-s.slots
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.opts.Observer.ConnOpened()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			nc.Close()
			s.opts.Observer.ConnClosed()
			<-s.slots
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

	w     *rawWriter // the socket's write(2), for writeOnce; set on the first reply
	reply []byte     // the buffer each reply is encoded in (wire.AppendReply)
}

// serveConn runs c's requests one at a time. ctx ends when the server stops
// accepting, execCtx when the grace period of the shutdown is over.
func (s *Server) serveConn(ctx, execCtx context.Context, c *conn) {
	if c.listener.Admit != nil && !c.listener.Admit(c.UnixConn) {
		return
	}
	log := s.log.With("conn", c.id, "listener", c.listener.name())
	if pid, uid, ok := peerCred(c.UnixConn); ok {
		log = log.With("peer_pid", pid, "peer_uid", uid)
	}
	if c.listener.Identify != nil {
		c.initiator, c.identityErr = c.listener.Identify(c.UnixConn)
		if c.identityErr != nil {
			s.opts.Observer.PeerRefused("identity")
			s.repeats.warn(log, "identity", "initiator identity unknown; backends that need it will refuse", "err", c.identityErr)
		} else {
			log = log.With("initiator", c.initiator)
			if c.listener.Track != nil {
				release, err := c.listener.Track(c.initiator, c.UnixConn)
				if release != nil {
					defer release()
				}
				if errors.Is(err, ErrRefuse) {
					log.Error("connection refused", "err", err)
					return
				}
				if err != nil {
					s.repeats.warn(log, "track", "peer process not tracked: it cannot be fenced", "err", err)
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
	// Replies arm the deadline only when they must wait (writeReply); the
	// handshake's would otherwise expire and refuse them.
	_ = c.SetWriteDeadline(time.Time{})
	for {
		req, err := wire.ReadRequest(c.UnixConn)
		if err != nil {
			s.logConnErr(log, "read request", err)
			return
		}
		// One clock read for the request's start (the shutdown's view and
		// the metrics), and the metrics' end only when they are collected: in
		// a guest without a vDSO clock each read is a system call, and the
		// request path made about 23 of them (docs/performance.md §2.4).
		start := time.Now()
		if !s.setPhase(c, phaseBackend, req, start) {
			unix.Close(req.FD)
			return
		}
		res, served := s.execute(execCtx, log, c, req, start)
		rep := reply(res)
		s.setPhase(c, phaseReply, req, time.Time{})
		c.reply = wire.AppendReply(c.reply[:0], req.CDB[:], &rep)
		err = s.writeReply(c, c.reply)
		if _, nop := s.opts.Observer.(nopObserver); !nop {
			s.opts.Observer.Request(req.CDB[:], served, res.Status, time.Since(start))
		}
		s.setPhase(c, phaseIdle, nil, time.Time{})
		if err != nil {
			s.logReplyErr(log, req, err)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// execute runs one request, read at start, and closes its descriptor,
// whatever happens. It returns the answer and the name of the backend that
// served it ("server" for a request refused before any backend ran).
func (s *Server) execute(ctx context.Context, log *slog.Logger, c *conn, req *wire.Request, start time.Time) (res scsi.Result, served string) {
	defer unix.Close(req.FD)
	s.requests.Add(1)
	name := scsi.CommandName(req.CDB[:])
	if log.Enabled(ctx, slog.LevelDebug) { // the attributes cost an allocation even unlogged
		log.Debug("request received", "cmd", name)
	}
	defer func() {
		// A backend must not panic; if one does, the guest gets an error
		// instead of the whole helper going down.
		if p := recover(); p != nil {
			log.Error("backend panic", "cmd", name, "panic", p)
			res, served = scsi.CheckCondition(scsi.SenseTargetFailure), s.backend.Name()
		}
	}()
	if why := lacksAccess(req.FD, req.IsPRIn()); why != "" {
		// qemu-pr-helper refuses PR OUT on a read-only descriptor with
		// INVALID COMMAND OPERATION CODE, and keeps the connection; prhelper
		// answers the same to PR IN on a descriptor not open for reading
		// (docs/pr-helper-protocol.md §6).
		s.repeats.warnAt(start, log, "failed "+name+" access", "request failed", "cmd", name, "status", "CHECK CONDITION",
			"sense", scsi.SenseInvalidOpcode.String(), "err", why)
		return scsi.CheckCondition(scsi.SenseInvalidOpcode), "server"
	}
	breq := &backend.Request{CDB: req.CDB, Param: req.Param, FD: req.FD,
		Initiator: c.initiator, IdentityErr: c.identityErr, TargetPort: c.listener.TargetPort}
	res, err := s.backend.Execute(ctx, breq)
	served = string(breq.Served)
	if served == "" {
		served = s.backend.Name()
	}
	if err != nil || res.Status != scsi.StatusGood {
		f := failure{cmd: name, backend: served, status: res.Status, err: err}
		if sn, ok := res.ParseSense(); ok && res.Status == scsi.StatusCheckCondition {
			f.sense, f.hasSense = sn, true
		}
		var kind [96]byte
		// start, not now: a warning's interval may begin up to a
		// request's duration early, and no clock read per failed request.
		s.repeats.warnFailure(start, log, f.appendKind(kind[:0]), &f)
	} else if log.Enabled(ctx, slog.LevelDebug) {
		log.Debug("request done", "cmd", name, "backend", served, "data", len(res.Data))
	}
	return res, served
}

// reply is the helper protocol's reply carrying res: the sense data in the
// 96-byte field (a longer device sense is cut there, a shorter one zero
// filled). wire.EncodeReply then applies the protocol's rules on data.
func reply(res scsi.Result) wire.Reply {
	rep := wire.Reply{Status: res.Status, Data: res.Data}
	rep.SetSense(res.Sense)
	return rep
}

// lacksAccess says why fd may not carry the command, or "": PR IN needs a
// descriptor open for reading, PR OUT one open for writing, as reading and
// writing the device would (an O_PATH descriptor, whose access mode reads as
// O_RDONLY, carries neither). Like qemu-pr-helper, a failing fcntl does not
// refuse.
func lacksAccess(fd int, prIn bool) string {
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return ""
	}
	mode := fl & unix.O_ACCMODE
	switch {
	case fl&unix.O_PATH != 0:
		return "descriptor opened O_PATH: no read or write access"
	case prIn && mode == unix.O_WRONLY:
		return "PR IN on a descriptor opened write-only"
	case !prIn && mode == unix.O_RDONLY:
		return "PR OUT on a descriptor opened read-only"
	}
	return ""
}

func (s *Server) logConnErr(log *slog.Logger, what string, err error) {
	if errors.Is(err, wire.ErrProtocol) {
		s.opts.Observer.PeerRefused("protocol")
	}
	switch {
	case errors.Is(err, io.EOF):
		log.Debug("connection closed by peer")
	case errors.Is(err, wire.ErrProtocol):
		s.repeats.warn(log, "violation "+what, "closing connection: protocol violation", "during", what, "err", err)
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
