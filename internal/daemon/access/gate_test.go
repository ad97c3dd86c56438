package access

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// peerEnv makes the test binary a peer: it connects to the socket named by the
// variable and prints "admitted" when the server's four handshake bytes
// arrive, "refused" when the connection is closed without them.
const peerEnv = "ACCESS_TEST_PEER_SOCKET"

func TestMain(m *testing.M) {
	if sock := os.Getenv(peerEnv); sock != "" {
		os.Exit(peer(sock))
	}
	os.Exit(m.Run())
}

func peer(sock string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		return 1
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(c, b); err != nil {
		os.Stdout.WriteString("refused\n")
		return 0
	}
	os.Stdout.WriteString("admitted\n")
	return 0
}

// serveGate accepts connections on a socket every user may open and answers an
// admitted peer with four zero bytes, closing a refused one at once.
func serveGate(t *testing.T, g *Gate) string {
	t.Helper()
	dir := openDir(t)
	sock := filepath.Join(dir, "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Chmod(sock, 0o777); err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.AcceptUnix()
			if err != nil {
				return
			}
			if g.Admit(c) {
				c.Write(make([]byte, 4))
			}
			c.Close()
		}
	}()
	return sock
}

// openDir is a directory every user may enter, holding a copy of the test
// binary (the build's own directory is private) for peers of other uids.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "access-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "peer.test"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// connectAs runs the test binary as a peer with the given credentials (nil:
// the test's own) and returns what it printed.
func connectAs(t *testing.T, sock string, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(filepath.Dir(sock), "peer.test"), "-test.run=^$")
	cmd.Env = append(os.Environ(), peerEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("peer %+v: %v: %s", cred, err, out)
	}
	return strings.TrimSpace(string(out))
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start peers of other uids")
	}
}

// TestGateRealPeers: real sockets, real peers of other uids (setuid'd children
// of the test): the allow-list admits by uid, by primary gid and by a
// supplementary gid, and refuses everybody else, root included.
func TestGateRealPeers(t *testing.T) {
	needRoot(t)
	log := &lockedBuffer{}
	g := &Gate{Policy: Policy{UIDs: []uint32{65001}, GIDs: []uint32{65100}}, Log: slog.New(slog.NewTextHandler(log, nil))}
	sock := serveGate(t, g)
	for _, tc := range []struct {
		name string
		cred *syscall.Credential
		want string
	}{
		{"listed uid", &syscall.Credential{Uid: 65001, Gid: 65001}, "admitted"},
		{"other uid", &syscall.Credential{Uid: 65002, Gid: 65002}, "refused"},
		{"listed primary gid", &syscall.Credential{Uid: 65003, Gid: 65100}, "admitted"},
		{"listed supplementary gid", &syscall.Credential{Uid: 65004, Gid: 65004, Groups: []uint32{65100}}, "admitted"},
		{"root, not listed", nil, "refused"},
	} {
		if got := connectAs(t, sock, tc.cred); got != tc.want {
			t.Errorf("%s: peer says %q, want %q", tc.name, got, tc.want)
		}
	}
	if !strings.Contains(log.String(), "peer_uid=65002") || !strings.Contains(log.String(), "peer_uid=0") {
		t.Errorf("refusals not logged:\n%s", log.String())
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestGateOpenPolicy: without lists every peer that can open the socket is
// served.
func TestGateOpenPolicy(t *testing.T) {
	needRoot(t)
	sock := serveGate(t, &Gate{})
	if got := connectAs(t, sock, &syscall.Credential{Uid: 65002, Gid: 65002}); got != "admitted" {
		t.Fatalf("peer says %q under an open policy", got)
	}
}

// TestGateLogsOncePerInterval: a flood of refused connections from one uid
// writes one line, then one line per interval with the count in between.
func TestGateLogsOncePerInterval(t *testing.T) {
	var log bytes.Buffer
	now := time.Unix(1000, 0)
	g := &Gate{Policy: Policy{UIDs: []uint32{0}}, Log: slog.New(slog.NewTextHandler(&log, nil)),
		Interval: time.Minute, Now: func() time.Time { return now }}
	for i := 0; i < 100; i++ {
		g.refused(Cred{PID: int32(100 + i), UID: 107, GID: 107})
	}
	g.refused(Cred{PID: 1, UID: 108, GID: 108})
	if n := strings.Count(log.String(), "peer refused"); n != 2 {
		t.Fatalf("%d lines for 101 refusals of 2 uids in one interval, want 2:\n%s", n, log.String())
	}
	now = now.Add(time.Minute)
	g.refused(Cred{PID: 300, UID: 107, GID: 107})
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], "refused_since_last_line=99") {
		t.Fatalf("after the interval want a third line counting 99 suppressed:\n%s", log.String())
	}
}
