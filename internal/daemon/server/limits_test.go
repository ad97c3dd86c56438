package server

import (
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
)

// waitLog waits until the log holds want.
func waitLog(t *testing.T, logs *logBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(hung)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("log never said %q:\n%s", want, logs.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exhaustFDs lowers the soft RLIMIT_NOFILE to a little above the highest open
// descriptor and fills the rest with /dev/null; the returned function frees
// them and restores the limit.
func exhaustFDs(t *testing.T) (free func()) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	high := 0
	for _, e := range ents {
		var n int
		for _, ch := range e.Name() {
			n = n*10 + int(ch-'0')
		}
		high = max(high, n)
	}
	lim := old
	lim.Cur = uint64(high + 16)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	var held []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			break
		}
		held = append(held, fd)
	}
	done := false
	free = func() {
		if done {
			return
		}
		done = true
		for _, fd := range held {
			unix.Close(fd)
		}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(free)
	return free
}

// TestAcceptAtFDLimit is issue 12 item 1: at the descriptor limit the accept
// loop retried at once and logged every failure (4 M lines in 26 s). It must
// log once per interval with a count, and accept again once descriptors free.
func TestAcceptAtFDLimit(t *testing.T) {
	var logs logBuffer
	h := startWith(t, context.Background(), &fakeBackend{}, Options{LogInterval: time.Hour}, logs.logger())
	disk := openFile(t, os.O_RDWR)
	// The socket of the client that will find the limit, made while there
	// are descriptors; connecting needs none in this process, accepting does.
	sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	free := exhaustFDs(t)
	if err := unix.Connect(sfd, &unix.SockaddrUnix{Name: h.path}); err != nil {
		free()
		t.Fatal(err)
	}
	waitLog(t, &logs, "accept failed")
	// Let a spinning loop show itself: before the fix, thousands of lines.
	time.Sleep(300 * time.Millisecond)
	lines := strings.Count(logs.String(), "accept failed")
	free()
	if lines != 1 {
		t.Errorf("%d 'accept failed' lines in one log interval, want 1", lines)
	}
	// Descriptors are free again: the waiting client is accepted and served.
	f := os.NewFile(uintptr(sfd), "client")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.UnixConn)
	defer c.Close()
	c.SetDeadline(time.Now().Add(hung))
	var feat [4]byte
	if _, err := io.ReadFull(c, feat[:]); err != nil {
		t.Fatalf("waiting client not accepted after descriptors freed: %v", err)
	}
	if _, err := c.Write(make([]byte, 4)); err != nil {
		t.Fatal(err)
	}
	cdb := scsi.PRInCDB(0, 16)
	if _, _, err := c.WriteMsgUnix(cdb[:], unix.UnixRights(int(disk.Fd())), nil); err != nil {
		t.Fatal(err)
	}
	var rep [4 + 96]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("no reply: %v", err)
	}
	waitLog(t, &logs, "accepting again")
}

// TestMaxConns: past Options.MaxConns the server leaves new clients waiting in
// the backlog, keeps serving the open connections (which need descriptors for
// their requests), and takes the waiting client once one closes.
func TestMaxConns(t *testing.T) {
	var logs logBuffer
	h := startWith(t, context.Background(), &fakeBackend{}, Options{MaxConns: 2, LogInterval: time.Hour}, logs.logger())
	disk := openFile(t, os.O_RDWR)
	fd := int(disk.Fd())
	ctx := context.Background()
	a, b := client.New(h.path), client.New(h.path)
	defer a.Close()
	defer b.Close()
	for _, c := range []*client.Client{a, b} {
		if _, err := c.Do(ctx, scsi.PRInCDB(0, 16), fd, nil); err != nil {
			t.Fatal(err)
		}
	}
	third, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: h.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	waitLog(t, &logs, "connection limit reached")
	third.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var feat [4]byte
	if n, err := third.Read(feat[:]); n != 0 {
		t.Fatalf("third client served past MaxConns=2 (%d bytes, %v)", n, err)
	}
	for i := 0; i < 5; i++ {
		if _, err := a.Do(ctx, scsi.PRInCDB(0, 16), fd, nil); err != nil {
			t.Fatalf("open connection not served at the limit: %v", err)
		}
	}
	a.Close()
	third.SetReadDeadline(time.Now().Add(hung))
	if _, err := io.ReadFull(third, feat[:]); err != nil {
		t.Fatalf("waiting client not accepted after a connection closed: %v", err)
	}
}

// TestViolationLogRateLimited is issue 12 item 2: each protocol violation wrote
// a warning (445 MB in 5.5 min of fuzzing). The first is logged, the rest of
// the interval is summed up in one line with a count.
func TestViolationLogRateLimited(t *testing.T) {
	var logs logBuffer
	h := startWith(t, context.Background(), &fakeBackend{}, Options{LogInterval: time.Hour}, logs.logger())
	bad := scsi.PRInCDB(0, 100)
	bad[0] = 0x28
	disk := openFile(t, os.O_RDWR)
	for i := 0; i < 50; i++ {
		c := rawConn(t, h.path, []byte{0, 0, 0, 0})
		if _, _, err := c.WriteMsgUnix(bad[:], unix.UnixRights(int(disk.Fd())), nil); err != nil {
			t.Fatal(err)
		}
		expectClosed(t, c)
		c.Close()
	}
	if n := strings.Count(logs.String(), "closing connection"); n != 1 {
		t.Errorf("%d 'closing connection' lines for 50 violations in one interval, want 1", n)
	}
	h.cancel()
	<-h.done
	h.done <- nil
	if !strings.Contains(logs.String(), "suppressed=49") {
		t.Errorf("no summary with the count of suppressed lines:\n%s", logs.String())
	}
}

// TestLogNamesListener: log lines name the listener by Listener.Name (the
// socket's published path), not by the temporary path it was bound at.
func TestLogNamesListener(t *testing.T) {
	var logs logBuffer
	path := t.TempDir() + "/.real.sock.1.tmp"
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(&fakeBackend{}, logs.logger(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, Listener{UnixListener: l, Name: "/run/real.sock"}) }()
	c := rawConn(t, path, []byte{0, 0, 0, 1})
	expectClosed(t, c)
	cancel()
	<-done
	out := logs.String()
	if !strings.Contains(out, "/run/real.sock") || strings.Contains(out, ".tmp") {
		t.Errorf("log does not name the listener by its real path:\n%s", out)
	}
}
