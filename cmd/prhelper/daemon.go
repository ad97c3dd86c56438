package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/prhelper/prhelper/activation"
	"github.com/prhelper/prhelper/backend/sgio"
	"github.com/prhelper/prhelper/detach"
	"github.com/prhelper/prhelper/pidfile"
	"github.com/prhelper/prhelper/privilege"
	"github.com/prhelper/prhelper/server"
)

// readyTimeout bounds how long "prhelper -d" waits for its detached child.
const readyTimeout = 30 * time.Second

// daemon starts the helper in qemu-pr-helper's order (reference §4.2): socket
// (activated or created), pid file, privilege drop, then serve until ctx is done.
func daemon(ctx context.Context, o *options, log *slog.Logger) error {
	uid, gid, err := lookupIDs(o)
	if err != nil {
		return err
	}
	be, err := sgio.New(sgio.Options{})
	if err != nil {
		return err
	}

	var listener *net.UnixListener
	var sock *socketFile
	activated, err := activation.Listeners(os.Getenv, os.Unsetenv, os.Getpid())
	if err != nil {
		return err
	}
	listener, err = activation.Single(activated, o.socketSet)
	switch {
	case err != nil:
		for _, l := range activated {
			l.Close()
		}
		return err
	case listener != nil:
		log.Info("using socket from systemd", "addr", listener.Addr().String())
	default:
		if sock, err = listenSocket(o.socket); err != nil {
			return err
		}
		listener = sock.l
	}

	if o.daemon || o.pidSet {
		pf, err := pidfile.Create(o.pidfile)
		if err != nil {
			if sock != nil {
				sock.discard()
			}
			return err
		}
		defer func() {
			if err := pf.Remove(); err != nil {
				log.Warn("pid file not removed", "err", err)
			}
		}()
	}
	if sock != nil {
		if err := sock.publish(); err != nil {
			sock.discard()
			return err
		}
		defer func() {
			if err := sock.remove(); err != nil {
				log.Warn("socket not removed", "err", err)
			}
		}()
	}
	if err := dropPrivileges(log, uid, gid); err != nil {
		listener.Close()
		return err
	}

	srv := server.New(be, log)
	where := listener.Addr().String()
	if sock != nil {
		where = sock.path
	}
	log.Info("prhelper ready", "socket", where, "backend", be.Name(), "pid", os.Getpid(), "version", version)
	if detach.IsChild() {
		if err := detach.Ready(); err != nil {
			log.Warn("could not tell the parent we are ready", "err", err)
		}
	}
	serveCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	if sock != nil {
		// Take the socket file away as soon as the stop is asked for, so that
		// clients see the helper going even while requests finish.
		go func() {
			<-serveCtx.Done()
			if err := sock.remove(); err != nil {
				log.Warn("socket not removed", "err", err)
			}
		}()
	}
	err = srv.Serve(serveCtx, server.Listener{UnixListener: listener})
	log.Info("prhelper stopped", "requests", srv.Requests())
	return err
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

// dropPrivileges keeps only CAP_SYS_RAWIO, clears the bounding set and switches
// to -u/-g, as qemu-pr-helper does after start-up. Started by a user other than
// root without -u/-g there is nothing to drop from (and no right to change the
// bounding set): the helper then runs as it was started instead of refusing to.
func dropPrivileges(log *slog.Logger, uid, gid int) error {
	if os.Geteuid() != 0 && uid == -1 && gid == -1 {
		log.Info("not started as root: keeping the privileges it was started with", "uid", os.Geteuid())
		return nil
	}
	if err := privilege.Drop([]privilege.Cap{privilege.CapSysRawio}, uid, gid); err != nil {
		return fmt.Errorf("failed to drop privileges: %w", err)
	}
	log.Debug("privileges dropped", "keep", privilege.CapSysRawio.String(), "uid", os.Getuid(), "gid", os.Getgid())
	return nil
}
