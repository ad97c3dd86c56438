package multipathd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// PathnameSocket is the filesystem socket multipathd listens on since
// multipath-tools 0.12.0 (2025/08, opensvc/multipath-tools#111), next to the
// abstract one; it can be bind-mounted into containers.
const PathnameSocket = "/run/multipathd.socket"

// AbstractSocket is multipathd's abstract-namespace socket (Go's "@" notation;
// the name has no trailing NUL, as libmpathcmd's mpath_fill_sockaddr builds
// it). It is the only socket of older releases such as Debian 12's 0.9.4, and
// it is per network namespace: a client in another namespace cannot reach it.
const AbstractSocket = "@/org/kernel/linux/storage/multipathd"

// DefaultTimeout bounds one round trip (connect, send, receive) when Options
// leaves Timeout at zero. multipathd waits up to uxsock_timeout (default
// 4000 ms, multipath.conf(5); libmpathcmd's DEFAULT_REPLY_TIMEOUT is the same)
// for its lock before answering "timeout"; one second more lets that reply
// arrive and be reported as ErrTimeout rather than a client-side deadline.
const DefaultTimeout = 5 * time.Second

// DefaultAddresses returns the addresses libmpathcmd (0.12+) tries, in its
// order: the pathname socket, then the abstract socket.
func DefaultAddresses() []string {
	return []string{PathnameSocket, AbstractSocket}
}

// Options configures a Client.
type Options struct {
	// Addresses are tried in order until one accepts; a leading "@" names
	// an abstract socket. Empty means DefaultAddresses().
	Addresses []string
	// Timeout bounds each command (connect, write and read together), on
	// top of the caller's context. Zero means DefaultTimeout; negative means
	// only the context bounds it.
	Timeout time.Duration
}

// Client sends commands to multipathd, one connection per command as
// libmpathpersist does. It holds no connection and is safe for concurrent use.
type Client struct {
	addrs   []string
	timeout time.Duration
}

// New returns a Client for opts.
func New(opts Options) *Client {
	addrs := append([]string(nil), opts.Addresses...)
	if len(addrs) == 0 {
		addrs = DefaultAddresses()
	}
	t := opts.Timeout
	if t == 0 {
		t = DefaultTimeout
	}
	return &Client{addrs: addrs, timeout: t}
}

// Addresses returns the addresses c tries, in order.
func (c *Client) Addresses() []string { return append([]string(nil), c.addrs...) }

// Command sends cmd to multipathd and returns its reply without the trailing
// NUL (multipathd's replies usually end in "\n", which is kept). The replies
// "fail", "timeout", "permission deny: need to be root" and the command
// reference multipathd sends for an unknown command become a *CommandError
// wrapping ErrFailed, ErrTimeout, ErrPermission or ErrUnknownCommand, with the
// reply in its Reply field. ctx and the client's Timeout bound the connect,
// the write and the read; a peer that closes or stalls mid-reply is an error,
// never a hang.
func (c *Client) Command(ctx context.Context, cmd string) (string, error) {
	reply, err := c.roundTrip(ctx, cmd)
	if err != nil {
		return "", &CommandError{Cmd: cmd, Err: err}
	}
	if err := classifyReply(reply); err != nil {
		return reply, &CommandError{Cmd: cmd, Reply: reply, Err: err}
	}
	return reply, nil
}

func (c *Client) roundTrip(ctx context.Context, cmd string) (string, error) {
	frame, err := EncodeCommand(cmd)
	if err != nil {
		return "", err
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	conn, addr, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("set deadline on %s: %w", addr, err)
		}
	}
	// Cancellation without a deadline: wake a blocked read or write by
	// moving the deadline into the past.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(frame); err != nil {
		return "", ioError(ctx, fmt.Sprintf("send to %s", addr), err)
	}
	reply, err := ReadReply(conn, MaxReplyLen)
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			return "", fmt.Errorf("reply from %s: %w", addr, err)
		}
		return "", ioError(ctx, fmt.Sprintf("reply from %s", addr), err)
	}
	return reply, nil
}

// dial connects to the first address that accepts, like libmpathcmd's
// mpath_connect (which falls back on any connect error).
func (c *Client) dial(ctx context.Context) (net.Conn, string, error) {
	var d net.Dialer
	var errs dialErrors
	for _, addr := range c.addrs {
		conn, err := d.DialContext(ctx, "unix", addr)
		if err == nil {
			return conn, addr, nil
		}
		if ctx.Err() != nil {
			return nil, "", ioError(ctx, "connect to "+addr, err)
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, "", fmt.Errorf("%w: no addresses configured", ErrUnreachable)
	}
	return nil, "", fmt.Errorf("%w: %w", ErrUnreachable, errs)
}

// ioError reports an I/O failure as the context's error when the context
// ended (or the deadline derived from it fired), so callers can match
// context.Canceled and context.DeadlineExceeded.
func ioError(ctx context.Context, what string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", what, cerr)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", what, err)
}
