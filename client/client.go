package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// QEMU's PR_MAX_RECONNECT_ATTEMPTS and the pause between attempts.
const (
	DefaultAttempts = 5
	DefaultBackoff  = time.Second
)

// Client is a connection to a helper socket. It is safe for concurrent use; like
// QEMU's PRManagerHelper.lock, a mutex keeps one request in flight at a time.
type Client struct {
	path     string
	attempts int
	backoff  time.Duration

	mu   sync.Mutex
	conn *net.UnixConn
}

// Option changes a Client's defaults.
type Option func(*Client)

// WithReconnect sets how many times a request tries to (re)connect and send its
// CDB, and the pause after a failed connect.
func WithReconnect(attempts int, backoff time.Duration) Option {
	return func(c *Client) {
		if attempts < 1 {
			attempts = 1
		}
		c.attempts, c.backoff = attempts, backoff
	}
}

// New returns a client for the helper listening on path. It connects lazily, on
// the first request.
func New(path string, opts ...Option) *Client {
	c := &Client{path: path, attempts: DefaultAttempts, backoff: DefaultBackoff}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Dial returns a client that is already connected, as QEMU's object creation is:
// it fails when the helper cannot be reached.
func Dial(ctx context.Context, path string, opts ...Option) (*Client, error) {
	c := New(path, opts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.connect(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// Path is the socket path the client talks to.
func (c *Client) Path() string { return c.path }

// Close closes the connection, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.drop()
}

func (c *Client) drop() error {
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}

func (c *Client) connect(ctx context.Context) error {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		return fmt.Errorf("connect %s: %w", c.path, err)
	}
	conn := nc.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	if err := wire.ClientHandshake(conn); err != nil {
		conn.Close()
		return fmt.Errorf("handshake with %s: %w", c.path, err)
	}
	c.conn = conn
	return nil
}

// ErrRequest marks a request the client refuses before sending, as QEMU's client
// refuses it with -EINVAL.
var ErrRequest = errors.New("invalid request")

// Do sends one PR command for the device open as fd and returns the helper's reply.
// cdb must be a PR IN or PR OUT CDB; for PR OUT, param must hold exactly the bytes
// its framing length (CDB bytes 7-8) announces. A failure after the CDB was sent
// fails the command and drops the connection; the next Do reconnects.
func (c *Client) Do(ctx context.Context, cdb [wire.CDBSize]byte, fd int, param []byte) (*wire.Reply, error) {
	if err := wire.ValidateCDB(cdb[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	n := scsi.TransferLength(cdb[:])
	if cdb[0] == scsi.OpPersistentReserveOut && len(param) != n {
		return nil, fmt.Errorf("%w: parameter list is %d bytes, CDB announces %d", ErrRequest, len(param), n)
	}
	if cdb[0] == scsi.OpPersistentReserveIn {
		param = nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()

	var err error
	for attempt := 0; attempt < c.attempts; attempt++ {
		if c.conn != nil && !alive(c.conn) {
			c.drop()
		}
		if c.conn == nil {
			if err = c.connect(ctx); err != nil {
				if attempt+1 < c.attempts {
					select {
					case <-ctx.Done():
						return nil, ctx.Err()
					case <-time.After(c.backoff):
					}
				}
				continue
			}
		}
		if err = wire.WriteRequest(c.conn, cdb, fd, param); err == nil {
			break
		}
		c.drop()
	}
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.conn.SetReadDeadline(dl)
	} else {
		c.conn.SetReadDeadline(time.Time{})
	}
	rep, err := wire.ReadReply(c.conn)
	if err != nil {
		c.drop()
		return nil, err
	}
	if cdb[0] == scsi.OpPersistentReserveIn && len(rep.Data) > n {
		c.drop()
		return nil, fmt.Errorf("helper sent %d data bytes for allocation length %d", len(rep.Data), n)
	}
	if cdb[0] == scsi.OpPersistentReserveOut && len(rep.Data) != 0 {
		c.drop()
		return nil, fmt.Errorf("helper sent %d data bytes for PR OUT", len(rep.Data))
	}
	return rep, nil
}

// alive reports whether an idle connection can still carry a request: the helper
// has not closed it (a restarted or stopped helper) and sent nothing unasked. QEMU
// only learns this when the reply fails; checking first turns a helper restart
// between two commands into a reconnect instead of a failed command.
func alive(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	cerr := rc.Control(func(fd uintptr) {
		var b [1]byte
		// EAGAIN: nothing to read and not closed. 0 bytes: the peer closed.
		// Data: the helper spoke unasked, so the stream is out of step.
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		ok = err == unix.EAGAIN
	})
	return cerr == nil && ok
}
