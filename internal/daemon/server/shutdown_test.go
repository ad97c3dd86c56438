package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// hung is how long a test waits before it calls something hung. The bounds
// under test are a second or two; this only has to be far above them, so that
// no test depends on the speed of the machine.
const hung = 20 * time.Second

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// stopWithin cancels the server and returns Serve's error; it fails the test
// when Serve has not returned after hung.
func (h *harness) stopWithin(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		h.done <- nil // for the harness's own stop at cleanup
		return err
	case <-time.After(hung):
		t.Fatalf("Serve has not returned %v after cancel", hung)
		return nil
	}
}

// until polls cond (under the server's lock) until it holds.
func (h *harness) until(t *testing.T, what string, cond func(s *Server) bool) {
	t.Helper()
	deadline := time.Now().Add(hung)
	for {
		h.srv.mu.Lock()
		ok := cond(h.srv)
		h.srv.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not reached after %v: %s", hung, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// onlyConn returns the server's one connection.
func (h *harness) onlyConn(t *testing.T) *conn {
	t.Helper()
	var c *conn
	h.until(t, "one connection", func(s *Server) bool {
		for c = range s.conns {
		}
		return len(s.conns) == 1
	})
	return c
}

// recv returns what ch gives, failing the test when nothing came after hung.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hung):
		t.Fatalf("nothing after %v: %s", hung, what)
		var zero T
		return zero
	}
}

// shutdownError checks that err is a *ShutdownError with cut and stuck.
func shutdownError(t *testing.T, err error, cut, stuck int) {
	t.Helper()
	var se *ShutdownError
	if !errors.As(err, &se) || se.Cut != cut || se.Stuck != stuck {
		t.Fatalf("Serve: %v; want a ShutdownError with %d cut, %d stuck", err, cut, stuck)
	}
}

// fullBackend answers PR IN with a whole 8192-byte buffer: the largest reply.
type fullBackend struct{ entered chan struct{} }

func (f *fullBackend) Name() string { return "full" }

func (f *fullBackend) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	return scsi.Good(bytes.Repeat([]byte{0xab}, wire.MaxData)), nil
}

// blockedReply connects a client that asks for a full PR IN and never reads:
// the server's side of the connection gets the smallest send buffer the kernel
// allows (about 4.5 KiB), so that the 8296-byte reply cannot be written and the
// server's write blocks, as it would after a client pipelined requests
// without reading the replies until the buffer was full.
func blockedReply(t *testing.T, h *harness) (client *net.UnixConn, server *conn) {
	t.Helper()
	c := rawConn(t, h.path, []byte{0, 0, 0, 0})
	sc := h.onlyConn(t)
	if err := sc.SetWriteBuffer(1); err != nil {
		t.Fatal(err)
	}
	disk := openFile(t, os.O_RDWR)
	if err := wire.WriteRequest(c, scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), int(disk.Fd()), nil); err != nil {
		t.Fatal(err)
	}
	return c, sc
}

// TestShutdownClientNeverReadsReply: a client that sent a request and does not
// read the reply keeps the server in its write; the shutdown closes the
// connection at the end of the grace period, and Serve says it cut a request.
func TestShutdownClientNeverReadsReply(t *testing.T) {
	var logs logBuffer
	// No write deadline within the test: only the shutdown can end the write.
	h := startWith(t, context.Background(), &fullBackend{}, Options{Grace: time.Second, WriteTimeout: time.Hour}, logs.logger())
	c, sc := blockedReply(t, h)
	h.until(t, "the reply is being written", func(*Server) bool { return sc.phase == phaseReply })

	shutdownError(t, h.stopWithin(t), 1, 0)
	for _, want := range []string{"shutdown: waiting up to 1s for 1 request in flight",
		"shutdown: 1 request still running after 1s grace; closing", "during=reply", `cmd="PR IN READ KEYS"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	// The client gets a part of the reply at most, then end of file.
	c.SetReadDeadline(time.Now().Add(hung))
	got, err := io.ReadAll(c)
	if err != nil || len(got) >= wire.HeaderSize+wire.MaxData {
		t.Fatalf("client read %d bytes, err %v; want less than a whole reply, then EOF", len(got), err)
	}
}

// TestWriteDeadlineClientNeverReads: in normal operation too, a reply the
// client does not read is given up after the write timeout, and its
// connection closed; the server goes on serving others.
func TestWriteDeadlineClientNeverReads(t *testing.T) {
	var logs logBuffer
	h := startWith(t, context.Background(), &fullBackend{}, Options{WriteTimeout: 200 * time.Millisecond}, logs.logger())
	blockedReply(t, h)
	h.until(t, "the connection closed by the server", func(s *Server) bool { return len(s.conns) == 0 })
	if want := "reply not delivered: the client did not read it"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
	cl := client.New(h.path)
	defer cl.Close()
	disk := openFile(t, os.O_RDWR)
	rep, err := cl.Do(context.Background(), scsi.PRInCDB(scsi.SAReadKeys, 8), int(disk.Fd()), nil)
	if err != nil || rep.Status != scsi.StatusGood {
		t.Fatalf("next client: %v %+v", err, rep)
	}
	if err := h.stopWithin(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

type ctxKey struct{}

// ctxBackend blocks until its context is cancelled or release is closed, and
// records what its context said then.
type ctxBackend struct {
	entered chan struct{}
	release chan struct{}
	mu      sync.Mutex
	err     error // ctx.Err() when Execute returned
	value   any   // ctx.Value(ctxKey{})
}

func (b *ctxBackend) Name() string { return "ctx" }

func (b *ctxBackend) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	b.entered <- struct{}{}
	select {
	case <-ctx.Done():
	case <-b.release:
	}
	b.mu.Lock()
	b.err, b.value = ctx.Err(), ctx.Value(ctxKey{})
	b.mu.Unlock()
	if ctx.Err() != nil {
		return scsi.CheckCondition(scsi.SenseIOError), ctx.Err()
	}
	return scsi.Good(nil), nil
}

func (b *ctxBackend) seen() (error, any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err, b.value
}

// inFlight sends one PR IN through a client and returns the channel its
// outcome arrives on.
func inFlight(t *testing.T, h *harness) <-chan error {
	t.Helper()
	cl := client.New(h.path)
	t.Cleanup(func() { cl.Close() })
	disk := openFile(t, os.O_RDWR)
	res := make(chan error, 1)
	// The deadline only keeps a failing test from hanging in its cleanup.
	ctx, cancel := context.WithTimeout(context.Background(), 2*hung)
	go func() {
		defer cancel()
		rep, err := cl.Do(ctx, scsi.PRInCDB(scsi.SAReadKeys, 8), int(disk.Fd()), nil)
		if err == nil && rep.Status != scsi.StatusGood {
			err = errors.New(scsi.StatusName(rep.Status))
		}
		res <- err
	}()
	return res
}

// TestShutdownBackendContext: the backend's context carries the values of the
// server's, is not cancelled by the stop itself (a request that finishes
// within the grace period is answered), and is cancelled when the grace
// period ends (a backend that honours it then returns, and Serve with it).
func TestShutdownBackendContext(t *testing.T) {
	base := context.WithValue(context.Background(), ctxKey{}, "server's")
	t.Run("finishes within the grace period", func(t *testing.T) {
		b := &ctxBackend{entered: make(chan struct{}, 1), release: make(chan struct{})}
		h := startWith(t, base, b, Options{Grace: time.Hour}, nil)
		res := inFlight(t, h)
		recv(t, b.entered, "the request in the backend")
		h.cancel()
		h.until(t, "the shutdown began", func(s *Server) bool { return s.closing })
		close(b.release)
		if err := recv(t, res, "the client's answer"); err != nil {
			t.Fatalf("request in flight: %v; want its GOOD reply", err)
		}
		if err := h.stopWithin(t); err != nil {
			t.Fatalf("Serve: %v", err)
		}
		if err, v := b.seen(); err != nil || v != "server's" {
			t.Fatalf("backend's context: err %v, value %v; want not cancelled, the server's value", err, v)
		}
	})
	t.Run("cancelled at the end of the grace period", func(t *testing.T) {
		var logs logBuffer
		b := &ctxBackend{entered: make(chan struct{}, 1), release: make(chan struct{})}
		h := startWith(t, base, b, Options{Grace: time.Second}, logs.logger())
		res := inFlight(t, h)
		recv(t, b.entered, "the request in the backend")
		shutdownError(t, h.stopWithin(t), 1, 0)
		if err, v := b.seen(); !errors.Is(err, context.Canceled) || v != "server's" {
			t.Fatalf("backend's context: err %v, value %v; want cancelled, the server's value", err, v)
		}
		if err := recv(t, res, "the client's answer"); err == nil {
			t.Fatal("the cut request got a reply")
		}
		for _, want := range []string{"shutdown: 1 request still running after 1s grace; closing", "during=backend"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("log lacks %q:\n%s", want, logs.String())
			}
		}
	})
}

// stubbornBackend ignores its context: it returns only when gate is closed, as
// a goroutine inside an SG_IO ioctl does when its command times out.
type stubbornBackend struct {
	entered chan struct{}
	gate    chan struct{}
}

func (b *stubbornBackend) Name() string { return "stubborn" }

func (b *stubbornBackend) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	b.entered <- struct{}{}
	<-b.gate
	return scsi.Good(nil), nil
}

// TestShutdownBackendIgnoresContext: a backend that does not return on
// cancellation does not hold Serve beyond CancelWait; its goroutine ends, with
// the descriptor closed, once the backend returns.
func TestShutdownBackendIgnoresContext(t *testing.T) {
	var logs logBuffer
	b := &stubbornBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	release := sync.OnceFunc(func() { close(b.gate) })
	t.Cleanup(release)
	h := startWith(t, context.Background(), b, Options{Grace: time.Second, CancelWait: 200 * time.Millisecond}, logs.logger())
	res := inFlight(t, h)
	recv(t, b.entered, "the request in the backend")
	shutdownError(t, h.stopWithin(t), 1, 1)
	if want := "shutdown: 1 request not returned 200ms after cancellation"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
	if err := recv(t, res, "the client's answer"); err == nil {
		t.Fatal("the cut request got a reply")
	}
	release()
	ended := make(chan struct{})
	go func() { h.srv.wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(hung):
		t.Fatal("the connection's goroutine did not end after the backend returned")
	}
}

// TestShutdownIdleConnectionsClosedAtOnce: connections waiting for a request
// (after the handshake, during it, or in the middle of a request's bytes) are
// closed when the shutdown begins, without waiting for the grace period.
func TestShutdownIdleConnectionsClosedAtOnce(t *testing.T) {
	fb := &fakeBackend{}
	// A grace period the test cannot wait out: Serve must not need it.
	h := startWith(t, context.Background(), fb, Options{Grace: time.Hour}, nil)
	disk := openFile(t, os.O_RDWR)
	fd := int(disk.Fd())

	afterHandshake := rawConn(t, h.path, []byte{0, 0, 0, 0})
	inHandshake, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer inHandshake.Close()
	var features [4]byte
	if _, err := io.ReadFull(inHandshake, features[:]); err != nil {
		t.Fatal(err)
	}
	midRequest := rawConn(t, h.path, []byte{0, 0, 0, 0})
	out := scsi.PROutCDB(scsi.SARegister, 0, 0, scsi.PROutParamLen)
	if _, _, err := midRequest.WriteMsgUnix(out[:], unix.UnixRights(fd), nil); err != nil {
		t.Fatal(err)
	}
	served := client.New(h.path)
	defer served.Close()
	if rep, err := served.Do(context.Background(), scsi.PRInCDB(scsi.SAReadKeys, 8), fd, nil); err != nil || rep.Status != scsi.StatusGood {
		t.Fatalf("request before the stop: %v", err)
	}
	h.until(t, "four connections", func(s *Server) bool { return len(s.conns) == 4 })

	if err := h.stopWithin(t); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	for name, c := range map[string]*net.UnixConn{"after the handshake": afterHandshake,
		"during the handshake": inHandshake, "in the middle of a request": midRequest} {
		t.Run(name, func(t *testing.T) { expectClosed(t, c) })
	}
	if n := fb.calls.Load(); n != 1 {
		t.Fatalf("backend ran %d times; want once (the half-sent PR OUT must not run)", n)
	}
}
