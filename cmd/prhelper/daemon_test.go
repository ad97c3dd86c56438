package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/daemon/privilege"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// binary is prhelper built once, without cgo, as it ships: the privilege drop
// needs a CGO_ENABLED=0 build.
var binary string

func TestMain(m *testing.M) {
	if os.Getenv(fakeQEMUEnv) != "" {
		os.Exit(fakeQEMU())
	}
	if sock := os.Getenv(peerEnv); sock != "" {
		os.Exit(peer(sock))
	}
	dir, err := os.MkdirTemp("", "prhelper-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "prhelper")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build prhelper: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
	done   chan error
}

func startHelper(t *testing.T, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		p.done <- nil
	})
	return p
}

// stop sends SIGTERM and returns the exit code.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	return p.wait(t)
}

func (p *proc) wait(t *testing.T) int {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(20 * time.Second):
		t.Fatalf("helper did not exit; stderr:\n%s", p.stderr)
		return -1
	}
}

func waitSocket(t *testing.T, path string) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("socket %s never appeared", path)
}

// readKeysOnFile sends READ KEYS for a regular file. SG_IO on a regular file
// fails with ENOTTY, which qemu-pr-helper answers CHECK CONDITION 0B/00/06: a
// real answer from the real backend, with no device needed.
func readKeysOnFile(t *testing.T, sock string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := client.New(sock)
	defer c.Close()
	rep, err := c.Do(ctx, scsi.PRInCDB(scsi.SAReadKeys, 8192), int(f.Fd()), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := scsi.SenseIOError.Fixed()
	if rep.Status != scsi.StatusCheckCondition || !bytes.Equal(rep.Sense[:18], want) || len(rep.Data) != 0 {
		t.Fatalf("reply status %#x sense %x data %d; want CHECK CONDITION %x", rep.Status, rep.Sense[:18], len(rep.Data), want)
	}
}

func TestServeAndStop(t *testing.T) {
	dir := t.TempDir()
	sock, pid := filepath.Join(dir, "prh.sock"), filepath.Join(dir, "prh.pid")
	p := startHelper(t, "-k", sock, "-f", pid)
	waitSocket(t, sock)
	b, err := os.ReadFile(pid)
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(p.cmd.Process.Pid) {
		t.Fatalf("pid file %q (%v), want %d", b, err, p.cmd.Process.Pid)
	}
	if fi, _ := os.Stat(pid); fi.Mode().Perm() != 0o600 {
		t.Fatalf("pid file mode %v", fi.Mode())
	}
	readKeysOnFile(t, sock)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stderr:\n%s", code, p.stderr)
	}
	for _, f := range []string{sock, pid} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind after stop", f)
		}
	}
	// Under the default backend (auto) the router picks sgio for the file;
	// the line names the backend that served it, not the router.
	if log := p.stderr.String(); !strings.Contains(log, "request failed") ||
		!strings.Contains(log, "backend=sgio") || strings.Contains(log, "backend=router") {
		t.Errorf("failed request not logged with backend=sgio:\n%s", log)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "prh.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	p := startHelper(t, "-k", sock)
	waitSocket(t, sock)
	readKeysOnFile(t, sock)
	p.stop(t)
}

func TestRefusesSocketInUseAndNonSocket(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "prh.sock")
	first := startHelper(t, "-k", sock)
	waitSocket(t, sock)
	second := startHelper(t, "-k", sock)
	if code := second.wait(t); code != 1 || !strings.Contains(second.stderr.String(), "in use") {
		t.Fatalf("second helper: exit %d, stderr %q", code, second.stderr)
	}
	readKeysOnFile(t, sock)
	first.stop(t)

	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o644)
	p := startHelper(t, "-k", plain)
	if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "not a socket") {
		t.Fatalf("exit %d, stderr %q", code, p.stderr)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep me" {
		t.Fatal("a regular file at the socket path was replaced")
	}
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-k", "relative.sock"}, "socket path must be absolute"},
		{[]string{"--frobnicate"}, "--help"},
		{[]string{"-u", "no-such-user-prhelper"}, "no-such-user-prhelper"},
	} {
		p := startHelper(t, tc.args...)
		if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 1 and %q", tc.args, code, p.stderr, tc.want)
		}
		if n := strings.Count(strings.TrimSpace(p.stderr.String()), "\n"); n > 1 {
			t.Errorf("%v: error is %d lines", tc.args, n+1)
		}
	}
}

// TestInvokedAsQemuPrHelper: linked under qemu-pr-helper's name it answers to it.
func TestInvokedAsQemuPrHelper(t *testing.T) {
	link := filepath.Join(t.TempDir(), "qemu-pr-helper")
	if err := os.Symlink(binary, link); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(link, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "qemu-pr-helper ") {
		t.Fatalf("--version: %q %v", out, err)
	}
	out, err = exec.Command(link, "-h").Output()
	if err != nil || !strings.HasPrefix(string(out), "Usage: qemu-pr-helper [OPTIONS]") {
		t.Fatalf("-h: %q %v", out, err)
	}
	sock := filepath.Join(t.TempDir(), "q.sock")
	cmd := exec.Command(link, "-k", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitSocket(t, sock)
	readKeysOnFile(t, sock)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// activated starts the helper through sh so that LISTEN_PID can be the helper's
// own pid (sh execs it), with the listener as fd 3, as systemd does.
func activated(t *testing.T, files []*os.File, nfds int, args ...string) *proc {
	t.Helper()
	script := fmt.Sprintf(`LISTEN_PID=$$ LISTEN_FDS=%d exec "$0" "$@"`, nfds)
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, binary}, args...)...)
	cmd.ExtraFiles = files
	p := &proc{cmd: cmd, stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill(); <-p.done; p.done <- nil })
	return p
}

func listenerFile(t *testing.T, path string) *os.File {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.File()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); f.Close() })
	return f
}

func TestSocketActivation(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "act.sock")
	f := listenerFile(t, sock)
	p := activated(t, []*os.File{f}, 1)
	readKeysOnFile(t, sock)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit %d: %s", code, p.stderr)
	}

	p = activated(t, []*os.File{f}, 1, "-k", filepath.Join(dir, "other.sock"))
	if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "Unix socket can't be set when using socket activation") {
		t.Fatalf("with -k: exit %d, stderr %q", code, p.stderr)
	}
	g := listenerFile(t, filepath.Join(dir, "second.sock"))
	p = activated(t, []*os.File{f, g}, 2)
	if code := p.wait(t); code != 1 || !strings.Contains(p.stderr.String(), "LISTEN_FDS > 1") {
		t.Fatalf("two fds: exit %d, stderr %q", code, p.stderr)
	}
}

func TestDaemonize(t *testing.T) {
	dir := t.TempDir()
	sock, pid := filepath.Join(dir, "d.sock"), filepath.Join(dir, "d.pid")
	out, err := exec.Command(binary, "-d", "-k", sock, "-f", pid).CombinedOutput()
	if err != nil {
		t.Fatalf("prhelper -d: %v %s", err, out)
	}
	// The parent returns only once the child serves: no polling here.
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket missing when prhelper -d returned: %v", err)
	}
	b, err := os.ReadFile(pid)
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q", b)
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	readKeysOnFile(t, sock)
	if err := syscall.Kill(child, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := os.Stat(pid); os.IsNotExist(err) {
			if _, err := os.Stat(sock); !os.IsNotExist(err) {
				t.Fatal("socket left behind by the daemon")
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("daemon did not remove its pid file after SIGTERM")
}

// TestPrivilegesDropped reads /proc/<pid>/status of every thread of a running
// helper: only CAP_SYS_RAWIO is left, the bounding set is cleared, and it runs as
// the -u/-g user and group, while still serving.
func TestPrivilegesDropped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the privilege drop starts from root's capabilities")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	sock := filepath.Join(dir, "p.sock")
	// --backend=sgio is qemu-pr-helper's set-up without multipath: SG_IO only.
	p := startHelper(t, "-k", sock, "-u", "65534", "-g", "65534", "--backend=sgio")
	waitSocket(t, sock)
	readKeysOnFile(t, sock)
	threads, err := privilege.ReadThreadStatuses(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(threads) < 2 {
		t.Fatalf("only %d threads: the per-thread check proves little", len(threads))
	}
	const rawio = uint64(1) << 17
	for tid, st := range threads {
		if st.CapEff != rawio || st.CapPrm != rawio || st.CapBnd != rawio || st.CapInh != 0 || st.CapAmb != 0 {
			t.Errorf("thread %d: eff %#x prm %#x bnd %#x inh %#x amb %#x", tid, st.CapEff, st.CapPrm, st.CapBnd, st.CapInh, st.CapAmb)
		}
		for _, id := range append(st.Uid[:], st.Gid[:]...) {
			if id != 65534 {
				t.Errorf("thread %d: uid %v gid %v", tid, st.Uid, st.Gid)
				break
			}
		}
		if len(st.Groups) != 0 {
			t.Errorf("thread %d: supplementary groups %v", tid, st.Groups)
		}
	}
	p.stop(t)
}

// TestLinuxPRKeepsSysAdmin: with a backend that may use the <linux/pr.h>
// ioctls, CAP_SYS_ADMIN stays too (they need it before Linux 6.5), and nothing else.
func TestLinuxPRKeepsSysAdmin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the privilege drop starts from root's capabilities")
	}
	// No --backend: the default is auto, which keeps what qemu-pr-helper's
	// multipath build keeps.
	for _, args := range [][]string{{"--backend=auto"}, {"--backend=linuxpr"}, nil} {
		sock := filepath.Join(t.TempDir(), "l.sock")
		p := startHelper(t, append([]string{"-k", sock}, args...)...)
		waitSocket(t, sock)
		// A request answered: the daemon dropped its privileges (the socket is
		// published before the drop, as qemu-pr-helper does, and serving starts
		// after it). A disk image gets qemu-pr-helper's answer under auto too.
		readKeysOnFile(t, sock)
		st, err := privilege.ReadStatus(p.cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		const want = uint64(1)<<17 | uint64(1)<<21
		if st.CapEff != want || st.CapPrm != want || st.CapBnd != want {
			t.Errorf("%v: eff %#x prm %#x bnd %#x, want %#x", args, st.CapEff, st.CapPrm, st.CapBnd, want)
		}
		p.stop(t)
	}
}

// TestSIGTERMClientNeverReads: a client that sends requests and never reads the
// replies fills the helper's socket buffer, and the helper's write of the next
// reply blocks. SIGTERM must still end the helper within its grace period
// (1 s here) and a short bound, with its socket and pid file removed, and its
// exit status and log saying whether a request was cut.
func TestSIGTERMClientNeverReads(t *testing.T) {
	dir := t.TempDir()
	sock, pid := filepath.Join(dir, "prh.sock"), filepath.Join(dir, "prh.pid")
	p := startHelper(t, "-k", sock, "-f", pid, "--backend=sgio", "--shutdown-grace=1s")
	waitSocket(t, sock)
	disk, err := os.Create(filepath.Join(t.TempDir(), "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := wire.ClientHandshake(c); err != nil {
		t.Fatal(err)
	}
	sent := make(chan int, 1)
	go func() {
		n := 0
		// Until the helper stops reading (its write is blocked), then until it
		// is gone (EPIPE) or the test closes c.
		for ; n < 1_000_000; n++ {
			if wire.WriteRequest(c, scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), int(disk.Fd()), nil) != nil {
				break
			}
		}
		sent <- n
	}()
	// Replies pile up unread. Once their count stops growing the helper is
	// blocked in a write; SIGTERM is sent then, or after 15 s regardless (a
	// machine too busy to show it: the test's assertions hold either way).
	queued := func() int {
		n := -1
		if rc, err := c.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		}
		return n
	}
	last, stable := -1, 0
	for end := time.Now().Add(15 * time.Second); stable < 10 && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
		if n := queued(); n > 0 && n == last {
			stable++
		} else {
			last, stable = n, 0
		}
	}
	t.Logf("%d reply bytes unread at SIGTERM", last)

	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t) // fails the test if the helper has not exited after 20 s
	for _, f := range []string{sock, pid} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s left behind after stop", f)
		}
	}
	log := p.stderr.String()
	cut := strings.Contains(log, "shutdown: 1 request still running after 1s grace; closing")
	switch {
	case cut && (code != 1 || !strings.Contains(log, "prhelper: shutdown: 1 request cut after 1s grace")):
		t.Errorf("a request was cut but the exit status is %d (want 1), or the last line does not say so:\n%s", code, tail(log))
	case !cut && code != 0:
		t.Errorf("no request cut, exit status %d (want 0):\n%s", code, tail(log))
	}
	t.Logf("request cut: %v; exit status %d; %d requests sent", cut, code, recvInt(t, sent))
}

func recvInt(t *testing.T, ch <-chan int) int {
	select {
	case n := <-ch:
		return n
	case <-time.After(20 * time.Second):
		t.Fatal("the client's writes did not end after the helper exited")
		return 0
	}
}

// tail is the end of a log, for a failure message.
func tail(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// TestStderrClosedByParent: libvirt starts its managed helper with stderr on
// a pipe and closes its end once the socket exists. The helper's next log
// line must not kill it (Go exits on SIGPIPE for a write to a broken fd 2
// unless SIGPIPE is ignored): it still answers, and stops cleanly.
func TestStderrClosedByParent(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "prh.sock")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "-k", sock, "-v")
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	waitSocket(t, sock)
	r.Close() // as libvirt closes the helper's error pipe
	// A failed request logs a warning (and -v a debug line) to the dead pipe.
	readKeysOnFile(t, sock)
	readKeysOnFile(t, sock)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("helper with a closed stderr: %v (killed by SIGPIPE?)", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("helper did not exit after SIGTERM")
	}
}
