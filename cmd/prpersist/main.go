package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// commandTimeout bounds connecting to the helper and waiting for its reply.
const commandTimeout = 60 * time.Second

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
	// sg3_utils' DEF_PT_TIMEOUT: a command that gets no answer in 60 s fails
	// (exit 99) rather than hanging. Signals keep their default action, so ^C
	// stops prpersist at once.
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	code := run(ctx, o, os.Stdout, os.Stderr)
	cancel()
	os.Exit(code)
}
