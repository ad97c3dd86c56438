package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/backend"
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

// scriptedFailures answers every request with the next of its results, in
// turn, each with the error err.
type scriptedFailures struct {
	res []scsi.Result
	err error
	n   atomic.Int64
}

func (f *scriptedFailures) Name() string { return "scripted" }

func (f *scriptedFailures) Execute(ctx context.Context, r *backend.Request) (scsi.Result, error) {
	return f.res[int(f.n.Add(1)-1)%len(f.res)], f.err
}

// TestFailureWarningsCounted: a failed request's warning names command,
// backend, status, sense and error; each different answer has its own count
// (a CHECK CONDITION of another sense is another kind), and the summary at the
// end of the interval carries the count and the last one's details.
func TestFailureWarningsCounted(t *testing.T) {
	var logs logBuffer
	b := &scriptedFailures{res: []scsi.Result{
		scsi.CheckCondition(scsi.SenseInvalidOpcode),
		scsi.CheckCondition(scsi.SenseInvalidField),
		{Status: scsi.StatusReservationConflict},
	}, err: errors.New("device said no")}
	h := startWith(t, context.Background(), b, Options{LogInterval: time.Hour}, logs.logger())
	c := client.New(h.path)
	defer c.Close()
	disk := openFile(t, os.O_RDWR)
	for i := 0; i < 30; i++ {
		if _, err := c.Do(t.Context(), scsi.PRInCDB(0, 16), int(disk.Fd()), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), `msg="request failed" `); n != 3 {
		t.Errorf("%d first warnings for 3 kinds of failure, want 3:\n%s", n, logs.String())
	}
	for _, want := range []string{
		`cmd="PR IN READ KEYS" backend=scripted status="CHECK CONDITION" sense=5/20/00 err="device said no"`,
		`status="CHECK CONDITION" sense=5/24/00`,
		`status="RESERVATION CONFLICT" err=`,
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning with %s:\n%s", want, logs.String())
		}
	}
	h.cancel()
	<-h.done
	h.done <- nil
	if n := strings.Count(logs.String(), "suppressed=9 "); n != 3 {
		t.Errorf("%d summaries of 9 suppressed warnings, want 3:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), `suppressed=9 interval=1h0m0s cmd="PR IN READ KEYS" backend=scripted status="CHECK CONDITION" sense=5/24/00 err="device said no"`) {
		t.Errorf("no summary with the last one's details:\n%s", logs.String())
	}
}

// TestFailureWarningCountedWithoutAllocating: once a kind of failure has been
// logged, counting the next ones allocates nothing (the timer that ends the
// interval is made by the first counted one).
func TestFailureWarningCountedWithoutAllocating(t *testing.T) {
	r := newRepeats(slog.New(slog.DiscardHandler), time.Hour)
	defer r.flush()
	f := failure{cmd: "PR OUT REGISTER", backend: "sgio", status: scsi.StatusCheckCondition,
		sense: scsi.SenseInvalidField, hasSense: true, err: errors.New("x")}
	now := time.Now()
	var kind [96]byte
	r.warnFailure(now, nil, f.appendKind(kind[:0]), &f)
	r.warnFailure(now, nil, f.appendKind(kind[:0]), &f)
	if got := string(f.appendKind(nil)); got != "failed PR OUT REGISTER CHECK CONDITION 5/24/00" {
		t.Errorf("kind %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { r.warnFailure(now, nil, f.appendKind(kind[:0]), &f) }); n != 0 {
		t.Errorf("%v allocations to count a failure, want 0", n)
	}
	if k := r.kinds["failed PR OUT REGISTER CHECK CONDITION 5/24/00"]; k == nil || k.suppressed != 102 {
		t.Errorf("count %+v, want 102 suppressed (1 + AllocsPerRun's warm-up run and 100)", k)
	}
}
