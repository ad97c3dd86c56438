package multipathd

import (
	"errors"
	"fmt"
	"strings"
)

// Errors reported by multipathd itself. Its CLI listener (uxlsnr.c) answers a
// failed handler with "fail\n", a handler that could not take the daemon's
// lock within uxsock_timeout with "timeout\n", and a command other than
// list/show from a peer whose SO_PEERCRED uid is not 0 with
// "permission deny: need to be root\n" (without the newline before 0.9).
// A command whose words it does not know is answered with its command
// reference ("<cmd>: not found", "CLI commands reference:", ...); some
// unknown commands get a plain "fail" instead (0.9.4 answered
// "setprhold map mpatha" so in the lab).
var (
	ErrFailed         = errors.New("multipathd: command failed")
	ErrTimeout        = errors.New("multipathd: timed out waiting for its lock")
	ErrPermission     = errors.New("multipathd: permission denied, need to be root")
	ErrUnknownCommand = errors.New("multipathd: unknown command (this multipathd does not support it)")
)

// Errors found on this side of the socket.
var (
	// ErrUnreachable means no configured address accepted a connection:
	// multipathd is not running, or runs in another network namespace
	// (the abstract socket) without a reachable pathname socket.
	ErrUnreachable = errors.New("multipathd unreachable")
	// ErrProtocol is a malformed frame: a bad length, a reply cut short,
	// a missing NUL.
	ErrProtocol = errors.New("multipathd protocol error")
	// ErrUnexpectedReply is a well-framed reply a typed helper cannot read.
	ErrUnexpectedReply = errors.New("unexpected multipathd reply")
	// ErrInvalidCommand is a command that cannot be sent (empty, NUL,
	// too long).
	ErrInvalidCommand = errors.New("invalid multipathd command")
	// ErrInvalidName is a map name multipathd's tokenizer would split or cut.
	ErrInvalidName = errors.New("invalid multipath map name")
	// ErrInvalidKey is a reservation key SetPRKey refuses (zero).
	ErrInvalidKey = errors.New("invalid reservation key")
)

// CommandError is the error of one command: the command text, the reply when
// one came, and the cause, which errors.Is matches against the Err values of
// this package, context.Canceled / context.DeadlineExceeded and socket errors.
type CommandError struct {
	Cmd   string
	Reply string
	Err   error
}

// Error returns a one-line description naming the command.
func (e *CommandError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "multipathd %q: %v", e.Cmd, e.Err)
	if e.Reply != "" && errors.Is(e.Err, ErrUnexpectedReply) {
		fmt.Fprintf(&b, ": %q", shorten(e.Reply, 120))
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *CommandError) Unwrap() error { return e.Err }

// classifyReply maps multipathd's fixed error replies to this package's
// errors; any other reply is nil (a normal answer).
func classifyReply(reply string) error {
	switch strings.TrimRight(reply, "\n") {
	case "fail":
		return ErrFailed
	case "timeout":
		return ErrTimeout
	case "permission deny: need to be root":
		return ErrPermission
	}
	if strings.Contains(reply, "CLI commands reference:") {
		return ErrUnknownCommand
	}
	return nil
}

// dialErrors is the one-line list of the failures of every address tried.
type dialErrors []error

func (e dialErrors) Error() string {
	parts := make([]string, len(e))
	for i, err := range e {
		parts[i] = err.Error()
	}
	return strings.Join(parts, "; ")
}

func (e dialErrors) Unwrap() []error { return e }

// shorten cuts s to at most n bytes for an error message.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
