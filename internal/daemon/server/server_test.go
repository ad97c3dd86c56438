package server

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// fakeBackend answers PR IN with fixed data and PR OUT with GOOD, after checking
// that the descriptor it got is open, and can be made to block or panic.
type fakeBackend struct {
	calls   atomic.Int64
	gate    chan struct{} // when non-nil, Execute waits on it
	entered chan struct{} // when non-nil, Execute signals it on entry
	panics  bool
}

func (f *fakeBackend) Name() string { return "fake" }

func (f *fakeBackend) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	f.calls.Add(1)
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.gate != nil {
		<-f.gate
	}
	if f.panics {
		panic("boom")
	}
	var st unix.Stat_t
	if err := unix.Fstat(r.FD, &st); err != nil {
		return scsi.CheckCondition(scsi.SenseIOError), err
	}
	if r.CDB[0] == scsi.OpPersistentReserveIn {
		return scsi.Good([]byte{0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0xab}), nil
	}
	return scsi.Good(nil), nil
}

type harness struct {
	path   string
	cancel context.CancelFunc
	done   chan error
	srv    *Server
}

func start(t *testing.T, b backend.Backend) *harness {
	t.Helper()
	return startWith(t, context.Background(), b, Options{}, nil)
}

// startWith serves b under a context derived from base, with opts, logging to
// log (nil: nowhere).
func startWith(t *testing.T, base context.Context, b backend.Backend, opts Options, log *slog.Logger) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "prh.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(base)
	h := &harness{path: path, cancel: cancel, done: make(chan error, 1), srv: New(b, log, opts)}
	go func() { h.done <- h.srv.Serve(ctx, Listener{UnixListener: l}) }()
	t.Cleanup(func() { h.stop(t) })
	return h
}

func (h *harness) stop(t *testing.T) {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		h.done <- nil
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

func openFile(t *testing.T, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "disk.img"), flag|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

var regParam = append(make([]byte, 8), []byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}...)

func TestRoundTripAndDescriptorClosed(t *testing.T) {
	fb := &fakeBackend{}
	h := start(t, fb)
	c := client.New(h.path)
	defer c.Close()
	disk := openFile(t, os.O_RDWR)
	ctx := context.Background()
	if _, err := c.Do(ctx, scsi.PRInCDB(0, 8), int(disk.Fd()), nil); err != nil {
		t.Fatal(err)
	}
	base := countFDs(t)
	for i := 0; i < 50; i++ {
		rep, err := c.Do(ctx, scsi.PRInCDB(0, 12), int(disk.Fd()), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Status != scsi.StatusGood || len(rep.Data) != 12 {
			t.Fatalf("reply status %#x data %d, want GOOD with 12 bytes (clamped)", rep.Status, len(rep.Data))
		}
		rep, err = c.Do(ctx, scsi.PROutCDB(scsi.SARegister, 0, 0, 24), int(disk.Fd()), regParam)
		if err != nil || rep.Status != scsi.StatusGood {
			t.Fatalf("PR OUT: %v %+v", err, rep)
		}
	}
	if n := countFDs(t); n != base {
		t.Fatalf("%d descriptors open after 100 requests, %d before: received fds leak", n, base)
	}
}

func TestReadOnlyDescriptorPROut(t *testing.T) {
	fb := &fakeBackend{}
	h := start(t, fb)
	c := client.New(h.path)
	defer c.Close()
	ro := openFile(t, os.O_RDONLY)
	rep, err := c.Do(context.Background(), scsi.PROutCDB(scsi.SARegister, 0, 0, 24), int(ro.Fd()), regParam)
	if err != nil {
		t.Fatal(err)
	}
	want := scsi.SenseInvalidOpcode.Fixed()
	if rep.Status != scsi.StatusCheckCondition || !bytes.Equal(rep.Sense[:len(want)], want) {
		t.Fatalf("reply %#x sense %x, want CHECK CONDITION 05/20/00", rep.Status, rep.Sense[:18])
	}
	if fb.calls.Load() != 0 {
		t.Fatal("backend called for a read-only PR OUT")
	}
	// PR IN on the same fd and the same connection still works.
	rep, err = c.Do(context.Background(), scsi.PRInCDB(0, 100), int(ro.Fd()), nil)
	if err != nil || rep.Status != scsi.StatusGood {
		t.Fatalf("PR IN after refusal: %v %+v", err, rep)
	}
}

// rawConn dials the server and completes the handshake with the given features.
func rawConn(t *testing.T, path string, features []byte) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var f [4]byte
	if _, err := io.ReadFull(c, f[:]); err != nil || f != [4]byte{} {
		t.Fatalf("features %x %v", f, err)
	}
	if _, err := c.Write(features); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectClosed checks the server closed the connection without sending anything.
// A Unix stream socket closed while bytes the peer sent are still unread in it
// reports ECONNRESET to that peer instead of EOF (Linux discards the unread
// bytes and resets the peer): the same close, seen when the server closed before reading the
// client's feature bytes, which a loaded machine makes likely. The deadline only
// turns a hang into a failure; it is far above any wait a closed socket needs.
func expectClosed(t *testing.T, c *net.UnixConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	b := make([]byte, 200)
	n, err := c.Read(b)
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET)) {
		t.Fatalf("read %d bytes (%x), err %v; want close without reply", n, b[:n], err)
	}
}

// TestViolations is docs/pr-helper-protocol.md §2.7: every protocol violation closes the
// connection without a reply, and the server keeps serving others.
func TestViolations(t *testing.T) {
	fb := &fakeBackend{}
	h := start(t, fb)
	disk := openFile(t, os.O_RDWR)
	fd := int(disk.Fd())
	in := scsi.PRInCDB(0, 100)
	bad := scsi.PRInCDB(0, 100)
	bad[0] = 0x28
	long := scsi.PRInCDB(0, 8193)
	out := scsi.PROutCDB(0, 0, 0, 24)
	tests := []struct {
		name     string
		features []byte
		send     func(c *net.UnixConn) error
	}{
		{"non-zero requested features", []byte{0, 0, 0, 1}, func(c *net.UnixConn) error { return nil }},
		{"no descriptor", []byte{0, 0, 0, 0}, func(c *net.UnixConn) error { _, err := c.Write(in[:]); return err }},
		{"two descriptors", []byte{0, 0, 0, 0}, func(c *net.UnixConn) error {
			_, _, err := c.WriteMsgUnix(in[:], unix.UnixRights(fd, fd), nil)
			return err
		}},
		{"opcode not PR", []byte{0, 0, 0, 0}, func(c *net.UnixConn) error {
			_, _, err := c.WriteMsgUnix(bad[:], unix.UnixRights(fd), nil)
			return err
		}},
		{"length above 8192", []byte{0, 0, 0, 0}, func(c *net.UnixConn) error {
			_, _, err := c.WriteMsgUnix(long[:], unix.UnixRights(fd), nil)
			return err
		}},
		{"short parameter list", []byte{0, 0, 0, 0}, func(c *net.UnixConn) error {
			if _, _, err := c.WriteMsgUnix(out[:], unix.UnixRights(fd), nil); err != nil {
				return err
			}
			if _, err := c.Write(make([]byte, 10)); err != nil {
				return err
			}
			return c.CloseWrite()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawConn(t, h.path, tt.features)
			if err := tt.send(c); err != nil {
				t.Fatal(err)
			}
			expectClosed(t, c)
		})
	}
	if fb.calls.Load() != 0 {
		t.Fatalf("backend ran %d times for invalid requests", fb.calls.Load())
	}
	cl := client.New(h.path)
	defer cl.Close()
	if rep, err := cl.Do(context.Background(), in, fd, nil); err != nil || rep.Status != scsi.StatusGood {
		t.Fatalf("server unusable after violations: %v", err)
	}
}

func TestConcurrentConnections(t *testing.T) {
	fb := &fakeBackend{entered: make(chan struct{}, 64), gate: make(chan struct{})}
	h := start(t, fb)
	disk := openFile(t, os.O_RDWR)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := client.New(h.path)
			defer c.Close()
			rep, err := c.Do(context.Background(), scsi.PRInCDB(0, 100), int(disk.Fd()), nil)
			if err == nil && rep.Status != scsi.StatusGood {
				err = errors.New(scsi.StatusName(rep.Status))
			}
			errs <- err
		}()
	}
	// All n requests must be inside the backend at the same time.
	for i := 0; i < n; i++ {
		select {
		case <-fb.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d of %d requests run concurrently", i, n)
		}
	}
	close(fb.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestGracefulShutdown: a request in flight when the server is told to stop is
// still answered; idle connections are closed; the socket file is removed.
func TestGracefulShutdown(t *testing.T) {
	fb := &fakeBackend{entered: make(chan struct{}, 1), gate: make(chan struct{})}
	// A grace period far longer than the test: the request is answered
	// however slow the machine is.
	h := startWith(t, context.Background(), fb, Options{Grace: time.Hour}, nil)
	disk := openFile(t, os.O_RDWR)
	idle := rawConn(t, h.path, []byte{0, 0, 0, 0})
	c := client.New(h.path)
	defer c.Close()
	type result struct {
		rep *wire.Reply
		err error
	}
	res := make(chan result, 1)
	go func() {
		rep, err := c.Do(context.Background(), scsi.PRInCDB(0, 100), int(disk.Fd()), nil)
		res <- result{rep, err}
	}()
	<-fb.entered
	h.cancel()
	expectClosed(t, idle)
	select {
	case <-h.done:
		t.Fatal("Serve returned with a request in flight")
	case <-time.After(100 * time.Millisecond):
	}
	if _, err := os.Stat(h.path); !os.IsNotExist(err) {
		t.Fatalf("socket file still there after stop: %v", err)
	}
	close(fb.gate)
	r := <-res
	if r.err != nil || r.rep.Status != scsi.StatusGood {
		t.Fatalf("in-flight request: %v %+v", r.err, r.rep)
	}
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
}

func TestBackendPanicAnswered(t *testing.T) {
	h := start(t, &fakeBackend{panics: true})
	c := client.New(h.path)
	defer c.Close()
	disk := openFile(t, os.O_RDWR)
	rep, err := c.Do(context.Background(), scsi.PRInCDB(0, 100), int(disk.Fd()), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := scsi.SenseTargetFailure.Fixed()
	if rep.Status != scsi.StatusCheckCondition || !bytes.Equal(rep.Sense[:18], want) {
		t.Fatalf("reply %#x %x", rep.Status, rep.Sense[:18])
	}
}

type recordingBackend struct{ got chan backend.Request }

func (r *recordingBackend) Name() string { return "recording" }

func (r *recordingBackend) Execute(ctx context.Context, req *backend.Request) (scsi.Result, error) {
	r.got <- *req
	return scsi.Good(nil), nil
}

// TestListenerIdentity: each listener's identity policy names the initiator of
// its connections, once per connection, and its target port reaches the backend.
func TestListenerIdentity(t *testing.T) {
	rb := &recordingBackend{got: make(chan backend.Request, 10)}
	srv := New(rb, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	dir := t.TempDir()
	var calls atomic.Int32
	mk := func(name string, port uint16, id func(*net.UnixConn) (string, error)) Listener {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, name), Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		return Listener{UnixListener: l, TargetPort: port, Identify: id}
	}
	a := mk("a.sock", 1, func(*net.UnixConn) (string, error) { calls.Add(1); return "iqn.x:vm-a", nil })
	b := mk("b.sock", 2, func(*net.UnixConn) (string, error) { return "", errors.New("no -uuid") })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, a, b) }()
	defer func() { cancel(); <-done }()
	disk := openFile(t, os.O_RDWR)
	ca, cb := client.New(filepath.Join(dir, "a.sock")), client.New(filepath.Join(dir, "b.sock"))
	defer ca.Close()
	defer cb.Close()
	for i := 0; i < 3; i++ {
		if _, err := ca.Do(context.Background(), scsi.PRInCDB(0, 8), int(disk.Fd()), nil); err != nil {
			t.Fatal(err)
		}
		if r := <-rb.got; r.Initiator != "iqn.x:vm-a" || r.TargetPort != 1 || r.IdentityErr != nil {
			t.Fatalf("listener a: %+v", r)
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("identity resolved %d times for one connection", calls.Load())
	}
	if _, err := cb.Do(context.Background(), scsi.PRInCDB(0, 8), int(disk.Fd()), nil); err != nil {
		t.Fatal(err)
	}
	if r := <-rb.got; r.Initiator != "" || r.TargetPort != 2 || r.IdentityErr == nil {
		t.Fatalf("listener b: %+v", r)
	}
}

// TestListenerAdmit: a connection Admit refuses is closed before the handshake,
// without a reply and without reaching the backend; an admitted one is served.
func TestListenerAdmit(t *testing.T) {
	fb := &fakeBackend{}
	srv := New(fb, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	dir := t.TempDir()
	var admit atomic.Bool
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "a.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(ctx, Listener{UnixListener: l, Admit: func(*net.UnixConn) bool { return admit.Load() }})
	}()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("unix", filepath.Join(dir, "a.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 4)); err != io.EOF {
		t.Fatalf("refused peer read %d bytes, err %v; want EOF", n, err)
	}
	c.Close()

	admit.Store(true)
	cl := client.New(filepath.Join(dir, "a.sock"))
	defer cl.Close()
	disk := openFile(t, os.O_RDWR)
	if _, err := cl.Do(context.Background(), scsi.PRInCDB(0, 8), int(disk.Fd()), nil); err != nil {
		t.Fatalf("admitted peer: %v", err)
	}
	if fb.calls.Load() != 1 {
		t.Fatalf("backend called %d times, want 1 (the admitted peer's)", fb.calls.Load())
	}
}
