package identity

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv makes the test binary act as a fake QEMU: connect to the socket
// named by the variable, then wait until the parent closes the connection.
const helperEnv = "PRHELPER_IDENTITY_TEST_SOCKET"

// TestHelperProcess is the fake QEMU's body when re-executed; a no-op in a
// normal run. Its arguments after "--" are what /proc/<pid>/cmdline shows.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		os.Exit(2)
	}
	io.Copy(io.Discard, c) // until the parent closes
	os.Exit(0)
}

// startPeer runs the test binary as a fake QEMU with args and returns the
// server side of its connection and the child.
func startPeer(t *testing.T, args ...string) (*net.UnixConn, *exec.Cmd) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pr.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	ln.SetDeadline(time.Now().Add(10 * time.Second))
	conn, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, cmd
}

func TestResolvePeer(t *testing.T) {
	peer := Resolver{Policy: Policy{Kind: PolicyPeer}}
	tests := []struct {
		name string
		args []string
		want Initiator
		err  error
	}{
		{"libvirt style", []string{"-name", "guest=vm1,debug-threads=on", "-uuid", testUUID},
			Initiator{Prefix + ":vm:" + testUUID, SourceUUID}, nil},
		{"double dash uuid", []string{"--uuid", strings.ToUpper(testUUID)}, Initiator{Prefix + ":vm:" + testUUID, SourceUUID}, nil},
		{"name only", []string{"-name", "guest=Web_1,,a"}, Initiator{Prefix + ":vm-name:web:5f1:2ca", SourceName}, nil},
		{"not qemu", []string{"-m", "1024"}, Initiator{}, ErrNoVMIdentity},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			conn, cmd := startPeer(t, tc.args...)
			pid, err := PeerPID(conn)
			if err != nil || pid != cmd.Process.Pid {
				t.Fatalf("PeerPID = %d, %v; child is %d", pid, err, cmd.Process.Pid)
			}
			got, err := peer.Resolve(conn)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Resolve = %v, %v; want %v", got, err, tc.err)
				}
				if !strings.Contains(err.Error(), "peer pid ") {
					t.Errorf("error %q does not name the pid", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("Resolve = %v, %v; want %v", got, err, tc.want)
			}
			// The pid-only entry point agrees.
			if got2, err := peer.ResolvePID(pid); err != nil || got2 != tc.want {
				t.Errorf("ResolvePID = %v, %v; want %v", got2, err, tc.want)
			}
		})
	}
}

// TestResolvePeerOtherPolicies: host and fixed policies ignore the peer.
func TestResolvePeerOtherPolicies(t *testing.T) {
	conn, _ := startPeer(t, "-uuid", testUUID)
	r := Resolver{Policy: Policy{Kind: PolicyHost}, Host: func() (string, error) { return "node1", nil }}
	if got, err := r.Resolve(conn); err != nil || got.Name != Prefix+":host:node1" {
		t.Errorf("host policy: %v, %v", got, err)
	}
}

// TestResolvePIDShell: a shell started as sh -c '…' -uuid X keeps those
// words in its command line ($0 and $1).
func TestResolvePIDShell(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30; :", "-uuid", testUUID)
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// Until the child has exec'd, its command line is this test binary's.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		b, _ := os.ReadFile("/proc/" + itoa(cmd.Process.Pid) + "/cmdline")
		if strings.Contains(string(b), "sleep 30") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child never exec'd: %q", b)
		}
	}
	r := Resolver{Policy: Policy{Kind: PolicyPeer}}
	got, err := r.ResolvePID(cmd.Process.Pid)
	if err != nil || got != (Initiator{Prefix + ":vm:" + testUUID, SourceUUID}) {
		t.Errorf("ResolvePID = %v, %v", got, err)
	}
}

// TestResolvePIDGone: a reaped process cannot be resolved.
func TestResolvePIDGone(t *testing.T) {
	cmd := exec.Command("sh", "-c", ":", "-uuid", testUUID)
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	r := Resolver{Policy: Policy{Kind: PolicyPeer}}
	if got, err := r.ResolvePID(cmd.Process.Pid); err == nil {
		t.Errorf("ResolvePID of exited pid %d = %v", cmd.Process.Pid, got)
	}
	if _, err := r.ResolvePID(0); err == nil || !strings.Contains(err.Error(), "pid 0: not a process") {
		t.Errorf("ResolvePID(0): %v", err)
	}
}

// TestReadCmdlineExitedDuringRead: a pidfd whose process has been reaped
// fails the check even though /proc (here a fake) still answers.
func TestReadCmdlineExitedDuringRead(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30; :")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	pid := cmd.Process.Pid
	pidfd, err := openPidfd(pid)
	if err != nil || pidfd < 0 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Skipf("no pidfd: %v", err)
	}
	defer closeFD(pidfd)
	cmd.Process.Kill()
	cmd.Wait()
	proc := t.TempDir()
	dir := filepath.Join(proc, itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmdline"), argv("qemu", "-uuid", testUUID), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readCmdline(proc, pid, pidfd); err == nil || !strings.Contains(err.Error(), "exited while its command line was read") {
		t.Errorf("readCmdline after exit: %v", err)
	}
}

// TestReadCmdlineStartTime covers the pre-pidfd path (pidfd -1).
func TestReadCmdlineStartTime(t *testing.T) {
	b, err := readCmdline("/proc", os.Getpid(), -1)
	if err != nil || !strings.HasPrefix(string(b), os.Args[0]) {
		t.Errorf("readCmdline(self) = %q, %v", b, err)
	}
	dir := t.TempDir()
	stat := "1234 (qemu) (x) R 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 20 21\n" // field 22 = 987654
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := startTime(dir); err != nil || st != "987654" {
		t.Errorf("startTime = %q, %v", st, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte("1234 (qemu R 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := startTime(dir); err == nil {
		t.Error("startTime accepted a stat line without ')'")
	}
}

func TestReadCmdlineTooLong(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(p, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readLimited(p, 99); err == nil || !strings.Contains(err.Error(), "longer than 99 bytes") {
		t.Errorf("readLimited: %v", err)
	}
	if b, err := readLimited(p, 100); err != nil || len(b) != 100 {
		t.Errorf("readLimited at the limit: %d, %v", len(b), err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func closeFD(fd int) { os.NewFile(uintptr(fd), "pidfd").Close() }
