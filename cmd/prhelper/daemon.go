package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	vinitbackend "github.com/prhelper/prhelper/internal/backend/vinit"
	"github.com/prhelper/prhelper/internal/daemon/access"
	"github.com/prhelper/prhelper/internal/daemon/activation"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/daemon/detach"
	"github.com/prhelper/prhelper/internal/daemon/identity"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/internal/daemon/pidfile"
	"github.com/prhelper/prhelper/internal/daemon/privilege"
	"github.com/prhelper/prhelper/internal/daemon/sandbox"
	"github.com/prhelper/prhelper/internal/daemon/server"
	"github.com/prhelper/prhelper/internal/fence"
)

// readyTimeout bounds how long "prhelper -d" waits for its detached child.
const readyTimeout = 30 * time.Second

// closeBound bounds the closing of the backends at exit. Closing the state
// store waits for its writer, which may still be retrying a database another
// process holds locked; a request cut at shutdown may still be inside a
// backend. Neither may keep the helper from exiting.
const closeBound = 2 * time.Second

// daemon starts the helper in qemu-pr-helper's order (docs/pr-helper-protocol.md §4.2): sockets
// (activated or created), pid file, privilege drop, then serve until ctx is done.
func daemon(ctx context.Context, o *options, log *slog.Logger) error {
	uid, gid, err := lookupIDs(o)
	if err != nil {
		return err
	}
	set, err := loadSettings(o)
	if err != nil {
		return err
	}
	plan := set.plan()
	var m *metrics.Metrics
	if set.metrics != "" {
		m = metrics.New(version)
	}
	rt, closeBackends, err := buildRouter(set, plan, m, log)
	if err != nil {
		return err
	}
	defer closeWithin(closeBound, log, closeBackends)

	var exe *identity.ExeList
	if set.peerPolicy() {
		if exe, err = set.access.exeList(); err != nil {
			return fmt.Errorf("--peer-exe: %w", err)
		}
		defer exe.Close()
		if exe == nil {
			log.Warn("peer executables are not checked (--peer-exe=any): any process that can connect names its own initiator")
		} else {
			log.Info("peer executables", "patterns", exe.String(), "found", exe.Found())
		}
	}
	listeners, sockets, err := openSockets(o, set, exe, log)
	if err != nil {
		return err
	}
	discard := func() {
		for _, s := range sockets {
			s.discard()
		}
		for _, l := range listeners {
			l.Close()
		}
	}
	// The metrics socket is opened with the others, before the privilege drop.
	var metricsL net.Listener
	if m != nil {
		ml, msock, err := listenMetrics(set.metrics, set.access)
		if err != nil {
			discard()
			return err
		}
		metricsL = ml
		if msock != nil {
			sockets = append(sockets, msock)
		} else {
			prev := discard
			discard = func() { ml.Close(); prev() }
		}
	}
	if o.daemon || o.pidSet {
		pf, err := pidfile.Create(o.pidfile)
		if err != nil {
			discard()
			return err
		}
		defer func() {
			if err := pf.Remove(); err != nil {
				log.Warn("pid file not removed", "err", err)
			}
		}()
	}
	for _, sock := range sockets {
		if err := sock.publish(); err != nil {
			discard()
			for _, s := range sockets {
				s.remove() // only the ones already published
			}
			return err
		}
		defer func() {
			if err := sock.remove(); err != nil {
				log.Warn("socket not removed", "err", err)
			}
		}()
	}
	// Keep what the plan's backends need (backend.Needs): CAP_SYS_RAWIO for
	// SG_IO, CAP_SYS_ADMIN too when linuxpr may serve a device, as
	// qemu-pr-helper's multipath build keeps it for its DM ioctls.
	var keep []privilege.Cap
	for _, c := range plan.Capabilities() {
		keep = append(keep, privilege.Cap(c))
	}
	if _, ok := set.fencing.policy.(fence.Kill); ok && plan.Has(backend.Emulate) {
		// --fence=kill signals QEMU processes, which may run as another user.
		keep = append(keep, privilege.CapKill)
	}
	if exe != nil {
		// /proc/PID/exe of a QEMU of another user (or with more capabilities).
		keep = append(keep, privilege.CapSysPtrace)
	}
	// The Landlock ruleset opens its paths now, while the helper may.
	var sb *sandbox.Sandbox
	if set.sandbox {
		var removeIn []string
		for _, sock := range sockets {
			removeIn = append(removeIn, filepath.Dir(sock.path))
		}
		if o.daemon || o.pidSet {
			removeIn = append(removeIn, filepath.Dir(o.pidfile))
		}
		if sb, err = sandbox.Prepare(sandboxConfig(set, plan, exe, removeIn)); err != nil {
			discard()
			return err
		}
		defer sb.Close()
	}
	if err := dropPrivileges(log, keep, uid, gid); err != nil {
		discard()
		return err
	}
	if sb != nil {
		if err := applySandbox(log, sb); err != nil {
			discard()
			return err
		}
	} else {
		log.Warn("sandbox off (--sandbox=off): no seccomp filter, no Landlock, no no_new_privs")
	}

	if lim, err := server.RaiseFileLimit(); err != nil {
		log.Warn("descriptor limit not raised", "err", err)
	} else {
		log.Debug("descriptor limit", "RLIMIT_NOFILE", lim)
	}
	sopts := server.Options{Grace: o.shutdownGrace}
	if m != nil {
		sopts.Observer = m
	}
	srv := server.New(rt, log, sopts)
	for _, l := range listeners {
		log.Info("listening", "socket", l.name, "initiator", l.policy, "port", l.TargetPort)
	}
	if plan.Has(backend.Emulate) {
		log.Info("fencing", "fence", set.fencing.String(), "timeout", set.fencing.timeout, "means", set.fencing.describe())
		if set.fencing.session != nil {
			log.Info("fencing across hosts", "helper", set.fencing.session.ID(), "lease_ttl", set.fencing.leaseTTL,
				"means", "other hosts wait for this helper's fences, or for its etcd lease to expire; it kills its VMs holding registrations 3/4 TTL after its last confirmed renewal")
		}
	}
	log.Info("peers allowed", "who", set.access.policy.String())
	log.Info("prhelper ready", "backend", set.backend, "rules", len(set.rules), "pid", os.Getpid(), "version", version)
	if detach.IsChild() {
		if err := detach.Ready(); err != nil {
			log.Warn("could not tell the parent we are ready", "err", err)
		}
	}
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if vb, ok := rt.Backends[backend.Vinit].(*vinitbackend.Backend); ok {
		// Changes made on the LUNs by others (docs/virtual-initiators.md §7).
		ticker := time.NewTicker(vinitbackend.PollInterval)
		defer ticker.Stop()
		go vb.Run(serveCtx, ticker.C)
		log.Info("virtual initiators", "host", set.hostID(), "key", fmt.Sprintf("0x%016x", vb.Key()), "poll", vinitbackend.PollInterval)
	}
	// Take the socket files away as soon as the stop is asked for, so that
	// clients see the helper going even while requests finish.
	go func() {
		<-serveCtx.Done()
		for _, sock := range sockets {
			if err := sock.remove(); err != nil {
				log.Warn("socket not removed", "err", err)
			}
		}
	}()
	gate := &access.Gate{Policy: set.access.policy, Log: log}
	sl := make([]server.Listener, len(listeners))
	for i, l := range listeners {
		sl[i] = l.Listener
		sl[i].Track = set.fencing.track()
		sl[i].Admit = gate.Admit
	}
	metricsDone := make(chan struct{})
	go func() {
		defer close(metricsDone)
		if metricsL == nil {
			return
		}
		log.Info("serving metrics", "addr", set.metrics)
		if err := m.Serve(serveCtx, metricsL, log); err != nil {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	defer func() {
		cancel()
		<-metricsDone
	}()
	fenceDone := make(chan struct{})
	go func() {
		defer close(fenceDone)
		set.fencing.run(serveCtx)
	}()
	defer func() {
		cancel()
		<-fenceDone
	}()
	err = srv.Serve(serveCtx, sl...)
	log.Info("prhelper stopped", "requests", srv.Requests())
	return err
}

// closeWithin runs closeFn and waits for it at most d.
func closeWithin(d time.Duration, log *slog.Logger, closeFn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		log.Error("backends not closed after " + d.String() + "; exiting without waiting for them")
	}
}

// listener is a server.Listener with what the logs say about it.
type listener struct {
	server.Listener
	name   string
	policy string
}

// openSockets opens the activated socket or the -k socket (unless only --listen
// sockets are wanted) and every --listen socket, each with its identity policy.
// Created sockets are not yet published.
func openSockets(o *options, set *settings, exe *identity.ExeList, log *slog.Logger) ([]listener, []*socketFile, error) {
	var ls []listener
	var socks []*socketFile
	fail := func(err error) ([]listener, []*socketFile, error) {
		for _, s := range socks {
			s.discard()
		}
		for _, l := range ls {
			l.Close()
		}
		return nil, nil, err
	}
	add := func(ul *net.UnixListener, name, policy string, port uint16) error {
		id, err := identifier(policy, exe)
		if err != nil {
			return fmt.Errorf("socket %s: %w", name, err)
		}
		if port == 0 {
			port = 1
		}
		ls = append(ls, listener{Listener: server.Listener{UnixListener: ul, Name: name, Identify: id, TargetPort: port}, name: name, policy: policy})
		return nil
	}
	activated, err := activation.Listeners(os.Getenv, os.Unsetenv, os.Getpid())
	if err != nil {
		return fail(err)
	}
	primary, err := activation.Single(activated, o.socketSet)
	if err != nil {
		for _, l := range activated {
			l.Close()
		}
		return fail(err)
	}
	switch {
	case primary != nil:
		log.Info("using socket from systemd", "addr", primary.Addr().String())
		if set.access.modeSet || set.access.gid != -1 {
			log.Warn("--socket-mode and --socket-group do not apply to a socket from systemd: set SocketMode= and SocketGroup= in its .socket unit")
		}
		if err := add(primary, primary.Addr().String(), set.initiator, 0); err != nil {
			primary.Close()
			return fail(err)
		}
	case set.primary:
		sock, err := listenSocket(o.socket, set.access.mode, set.access.gid)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, sock)
		if err := add(sock.l, sock.path, set.initiator, 0); err != nil {
			return fail(err)
		}
	}
	for _, l := range set.listen {
		sock, err := listenSocket(l.Path, set.access.mode, set.access.gid)
		if err != nil {
			return fail(err)
		}
		socks = append(socks, sock)
		policy := l.Initiator
		if policy == "" {
			policy = set.initiator
		}
		if err := add(sock.l, sock.path, policy, l.Port); err != nil {
			return fail(err)
		}
	}
	return ls, socks, nil
}

func lookupIDs(o *options) (uid, gid int, err error) {
	uid, gid = -1, -1
	if o.user != "" {
		var ugid int
		if uid, ugid, err = privilege.LookupUser(o.user); err != nil {
			return 0, 0, err
		}
		if o.group == "" {
			gid = ugid
		}
	}
	if o.group != "" {
		if gid, err = privilege.LookupGroup(o.group); err != nil {
			return 0, 0, err
		}
	}
	return uid, gid, nil
}

// dropPrivileges keeps only the keep capabilities (what the plan's backends
// need), clears the bounding set and switches
// to -u/-g, as qemu-pr-helper does after start-up. Started by a user other than
// root without -u/-g there is nothing to drop from (and no right to change the
// bounding set): the helper then runs as it was started instead of refusing to.
func dropPrivileges(log *slog.Logger, keep []privilege.Cap, uid, gid int) error {
	if os.Geteuid() != 0 && uid == -1 && gid == -1 {
		log.Info("not started as root: keeping the privileges it was started with", "uid", os.Geteuid())
		return nil
	}
	if err := privilege.Drop(keep, uid, gid); err != nil {
		return fmt.Errorf("failed to drop privileges: %w", err)
	}
	log.Debug("privileges dropped", "keep", fmt.Sprint(keep), "uid", os.Getuid(), "gid", os.Getgid())
	return nil
}

// listenMetrics opens the metrics listener: a TCP address, or a Unix socket
// made as the helper's own sockets are (published into place, removed at
// exit, with their mode and group: --socket-mode, --socket-group), returned
// as a socketFile too.
func listenMetrics(where string, a accessSettings) (net.Listener, *socketFile, error) {
	network, addr, err := config.ParseMetrics(where)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics: %w", err)
	}
	if network == "unix" {
		sock, err := listenSocket(addr, a.mode, a.gid)
		if err != nil {
			return nil, nil, fmt.Errorf("--metrics: %w", err)
		}
		return sock.l, sock, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics: %w", err)
	}
	return l, nil, nil
}
