package identity

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPeerExeAllowed: a peer running a binary of the list is named by its
// command line.
func TestPeerExeAllowed(t *testing.T) {
	l, err := NewExeList([]string{os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	conn, _ := startPeer(t, "-uuid", testUUID)
	in, err := Resolver{Policy: Policy{Kind: PolicyPeer}, Exe: l}.Resolve(conn)
	if err != nil || in.Name != Prefix+":vm:"+testUUID {
		t.Fatalf("allowed peer: %+v, %v", in, err)
	}
}

// TestPeerExeRefused: a peer whose executable is not on the list gets no
// identity, whatever its command line says: the test binary under the default
// list, a copy of an allowed binary (same bytes, another file), and a Python
// script started from /bin/sh that names a VM's -uuid.
func TestPeerExeRefused(t *testing.T) {
	def, err := NewExeList(DefaultPeerExe)
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	conn, _ := startPeer(t, "-uuid", testUUID)
	if in, err := (Resolver{Policy: Policy{Kind: PolicyPeer}, Exe: def}).Resolve(conn); err == nil || !strings.Contains(err.Error(), "not a QEMU binary") {
		t.Fatalf("test binary under the default list: %+v, %v; want refused", in, err)
	}

	// A copy of the allowed test binary is another file.
	dir := t.TempDir()
	cp := filepath.Join(dir, "qemu-system-x86_64")
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	orig, err := NewExeList([]string{os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	conn2 := startPeerBinary(t, cp, "-uuid", testUUID)
	if in, err := (Resolver{Policy: Policy{Kind: PolicyPeer}, Exe: orig}).Resolve(conn2); err == nil {
		t.Fatalf("a copy of the allowed binary was accepted: %+v", in)
	}

	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 for the script peer")
	}
	sock := filepath.Join(t.TempDir(), "py.sock")
	conn3 := acceptFrom(t, sock, exec.Command("/bin/sh", "-c",
		`exec "$0" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.recv(1)' "$1" -uuid `+testUUID, py, sock))
	if in, err := (Resolver{Policy: Policy{Kind: PolicyPeer}, Exe: orig}).Resolve(conn3); err == nil || !strings.Contains(err.Error(), "not a QEMU binary") {
		t.Fatalf("python peer: %+v, %v; want refused", in, err)
	}
	// Without the check the same script would have been taken for the VM.
	if in, err := (Resolver{Policy: Policy{Kind: PolicyPeer}}).Resolve(conn3); err != nil || in.Name != Prefix+":vm:"+testUUID {
		t.Fatalf("python peer without the check: %+v, %v", in, err)
	}
}

// startPeerBinary is startPeer with another binary (a copy of the test).
func startPeerBinary(t *testing.T, bin string, args ...string) *net.UnixConn {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "pr.sock")
	cmd := exec.Command(bin, append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), helperEnv+"="+sock)
	return acceptFrom(t, sock, cmd)
}

// TestPeerExeChangedDuringRead: a process that execs another program between
// the check of its executable and the end of the command line's read is
// refused, even though both programs are on the list.
func TestPeerExeChangedDuringRead(t *testing.T) {
	sh, sleep := "/bin/sh", "/bin/sleep"
	if _, err := os.Stat(sleep); err != nil {
		sleep = "/usr/bin/sleep"
	}
	l, err := NewExeList([]string{sh, sleep})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cmd := exec.Command(sh, "-c", "read x; exec "+sleep+" 100")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	first, _, err := peerExe(DefaultProcRoot, pid)
	if err != nil {
		t.Fatal(err)
	}
	_, err = checkExe(l, DefaultProcRoot, pid, func() ([]byte, error) {
		in.Write([]byte("go\n"))
		for i := 0; i < 200; i++ {
			if id, _, err := peerExe(DefaultProcRoot, pid); err == nil && id != first {
				return []byte("x"), nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil, errors.New("the child never executed sleep")
	})
	if err == nil || !strings.Contains(err.Error(), "executed another program") {
		t.Fatalf("checkExe = %v, want the exec found", err)
	}
}

// TestExeListFindsNewBinary: a binary installed after start (a pattern that
// named nothing) is found on the first peer that runs it.
func TestExeListFindsNewBinary(t *testing.T) {
	dir := t.TempDir()
	l, err := NewExeList([]string{filepath.Join(dir, "qemu-*")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.Found() != 0 {
		t.Fatalf("found %d in an empty directory", l.Found())
	}
	b, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "qemu-system-test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	conn := startPeerBinary(t, bin, "-uuid", testUUID)
	if in, err := (Resolver{Policy: Policy{Kind: PolicyPeer}, Exe: l}).Resolve(conn); err != nil || in.Source != SourceUUID {
		t.Fatalf("new binary: %+v, %v", in, err)
	}
}

func TestParsePeerExe(t *testing.T) {
	if l, err := ParsePeerExe("any"); l != nil || err != nil {
		t.Fatalf("any = %v, %v; want no check", l, err)
	}
	l, err := ParsePeerExe("/usr/bin/qemu-system-*, /usr/libexec/qemu-kvm")
	if err != nil || l.String() != "/usr/bin/qemu-system-*,/usr/libexec/qemu-kvm" {
		t.Fatalf("list = %v, %v", l, err)
	}
	l.Close()
	for _, bad := range []string{"", ",", "qemu-system-x86_64", "/usr/bin/[", "any,/usr/bin/qemu"} {
		if l, err := ParsePeerExe(bad); err == nil {
			t.Errorf("ParsePeerExe(%q) = %v, want an error", bad, l)
		}
	}
}

// acceptFrom starts cmd, which connects to sock, and returns the server side
// of its connection.
func acceptFrom(t *testing.T, sock string, cmd *exec.Cmd) *net.UnixConn {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// No deadline on the accept (a loaded machine may take long to start the
	// client): a client that exits without connecting closes the listener.
	exited := make(chan error, 1)
	go func() {
		exited <- cmd.Wait()
		ln.Close()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	conn, err := ln.AcceptUnix()
	if err != nil {
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("accept: %v (the client exited first: %v)", err, werr)
		default:
			t.Fatalf("accept: %v", err)
		}
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
