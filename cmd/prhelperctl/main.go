package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// commandTimeout bounds one command, as prpersist bounds its own.
const commandTimeout = 60 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	cancel()
	stop()
	os.Exit(code)
}

// env is what a command works with.
type env struct {
	o      *options
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// run is the whole program; it returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := parseOptions(args)
	if err != nil {
		return report(stderr, stdout, o, nil, err)
	}
	if o.help {
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	if o.version {
		fmt.Fprintf(stdout, "prhelperctl (prhelper) %s\n", version)
		return exitOK
	}
	e := &env{o: o, stdin: stdin, stdout: stdout, stderr: stderr}
	st, err := openStore(o)
	if err != nil {
		return report(stderr, stdout, o, nil, err)
	}
	defer st.Close()
	var out any
	switch o.cmd {
	case "list":
		out, err = e.list(ctx, st)
	case "show":
		out, err = e.show(ctx, st, o.args[0])
	case "clear":
		out, err = e.clear(ctx, st, o.args[0])
	case "purge":
		out, err = e.purge(ctx, st)
	case "export":
		out, err = e.export(ctx, st)
	case "import":
		out, err = e.importDoc(ctx, st)
	}
	return report(stderr, stdout, o, out, err)
}

// report prints the outcome and returns the exit status: an error on stderr,
// and with --json one object on stdout whatever happened.
func report(stderr, stdout io.Writer, o *options, out any, err error) int {
	code := exitOK
	if err != nil {
		code = exitOther
		var f *failure
		if errors.As(err, &f) {
			code = f.code
		}
		msg := err.Error()
		if errors.Is(err, errUsage) {
			msg = msg[len(errUsage.Error())+2:]
		}
		fmt.Fprintf(stderr, "prhelperctl: %s\n", msg)
		if code == exitSyntax && errors.Is(err, errUsage) {
			fmt.Fprintf(stderr, "Try 'prhelperctl --help' for more information.\n")
		}
		err = errors.New(msg)
	}
	if o != nil && o.json && o.cmd != "export" {
		j := map[string]any{"command": o.cmd, "exit_status": code, "category": category(code)}
		if err != nil {
			j["error"] = err.Error()
		}
		if out != nil {
			j["result"] = out
		}
		b, merr := json.Marshal(j)
		if merr != nil {
			fmt.Fprintf(stderr, "prhelperctl: encode JSON: %v\n", merr)
			return exitOther
		}
		fmt.Fprintf(stdout, "%s\n", b)
	}
	return code
}
