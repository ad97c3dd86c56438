package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/daemon/detach"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	name := filepath.Base(args[0])
	o, err := parseOptions(name, args[1:])
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, trimUsage(err))
		if errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "Try '%s --help' for more information.\n", name)
		}
		return 1
	}
	if o.help {
		fmt.Fprint(stdout, usage(name))
		return 0
	}
	if o.version {
		fmt.Fprintf(stdout, "%s (prhelper) %s\n", name, version)
		return 0
	}
	if o.explain != "" {
		if err := explain(o, stdout); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
	if o.daemon && !detach.IsChild() {
		// The parent waits until the detached child is serving, so that the
		// socket exists when it exits, as with qemu-pr-helper -d.
		done, err := detach.Start(readyTimeout)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		if done {
			return 0
		}
	}
	log, closeLog, err := newLogger(o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	defer closeLog()

	// Whoever started the helper may close the other end of its stderr: libvirt
	// does, for the helper it starts per VM, once the socket exists. A Go
	// program dies of SIGPIPE on its next write to a broken stderr; ignored,
	// the write fails with EPIPE instead, the log line is lost and the helper
	// goes on serving (TestStderrClosedByParent; README: libvirt).
	signal.Ignore(unix.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer stop()
	if err := daemon(ctx, o, log); err != nil {
		if o.traceFile() != "" {
			log.Error("prhelper stopped", "err", err)
		}
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}

func trimUsage(err error) string {
	s := err.Error()
	if p := errUsage.Error() + ": "; len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}

func newLogger(o *options, stderr io.Writer) (*slog.Logger, func(), error) {
	level := slog.LevelInfo
	switch {
	case o.quiet:
		level = slog.LevelError
	case o.verbose > 0 || len(o.trace) > 0:
		level = slog.LevelDebug
	}
	w, closer := stderr, func() {}
	if path := o.traceFile(); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open trace file: %w", err)
		}
		w, closer = f, func() { f.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closer, nil
}
