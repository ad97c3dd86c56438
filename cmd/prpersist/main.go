package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	o, err := parseOptions(os.Args[1:], os.Getenv)
	var help helpError
	var usageErr usageError
	switch {
	case errors.As(err, &help):
		fmt.Fprint(os.Stderr, usage(help.Level))
		os.Exit(exitOK)
	case errors.Is(err, errVersion):
		fmt.Fprintf(os.Stderr, "version: %s\n", version)
		os.Exit(exitOK)
	case errors.As(err, &usageErr):
		fmt.Fprintf(os.Stderr, "prpersist: %v (try --help)\n", err)
		os.Exit(exitSyntax)
	case err != nil:
		fmt.Fprintf(os.Stderr, "prpersist: %v\n", err)
		os.Exit(exitSyntax)
	}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	code := run(ctx, o, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
