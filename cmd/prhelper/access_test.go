package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// peerEnv makes the test binary a bare peer: it connects to the socket in the
// variable and prints "admitted" when the helper's handshake arrives,
// "refused" when the connection is closed without it.
const peerEnv = "PRHELPER_TEST_PEER"

func peer(sock string) int {
	c, err := net.Dial("unix", sock)
	if err != nil {
		os.Stdout.WriteString("error " + err.Error() + "\n")
		return 1
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
		os.Stdout.WriteString("refused\n")
		return 0
	}
	os.Stdout.WriteString("admitted\n")
	return 0
}

// openDir is a directory every user may enter, with a copy of the test binary
// (the build's directory is private) for peers of other uids.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "prhelper-access")
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

func connectAs(t *testing.T, dir, sock string, cred *syscall.Credential) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, "peer.test"), "-test.run=^$")
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
		t.Skip("needs root: peers of other uids, socket groups")
	}
}

// TestSocketModeIgnoresUmask: under umask 000 the socket file is 0600 by
// default, 0660 with --socket-group, and what --socket-mode says otherwise.
func TestSocketModeIgnoresUmask(t *testing.T) {
	needRoot(t)
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		mode os.FileMode
		gid  uint32
	}{
		{nil, 0o600, 0},
		{[]string{"--socket-group=65100"}, 0o660, 65100},
		{[]string{"--socket-mode=0640", "--socket-group=65100"}, 0o640, 65100},
		{[]string{"--socket-mode=666"}, 0o666, 0},
	} {
		sock := filepath.Join(dir, "m.sock")
		p := startHelper(t, append([]string{"-k", sock}, tc.args...)...)
		waitSocket(t, sock)
		var st unix.Stat_t
		if err := unix.Stat(sock, &st); err != nil {
			t.Fatal(err)
		}
		if got := os.FileMode(st.Mode & 0o777); got != tc.mode || st.Gid != tc.gid {
			t.Errorf("%v: socket mode %#o gid %d, want %#o gid %d", tc.args, got, st.Gid, tc.mode, tc.gid)
		}
		if code := p.stop(t); code != 0 {
			t.Fatalf("%v: exit %d\n%s", tc.args, code, p.stderr)
		}
	}
	for _, bad := range []string{"--socket-mode=999", "--socket-mode=rw", "--socket-mode=01777"} {
		p := startHelper(t, "-k", filepath.Join(dir, "bad.sock"), bad)
		if code := p.wait(t); code == 0 || !strings.Contains(p.stderr.String(), "--socket-mode") {
			t.Errorf("%s: exit %d, stderr %s", bad, code, p.stderr)
		}
	}
}

// TestAllowList: a helper with --allow-uid/--allow-gid serves listed peers and
// closes the others' connections without a reply, logging one line per uid
// for a burst of refusals; the same lists from the configuration file.
func TestAllowList(t *testing.T) {
	needRoot(t)
	dir := openDir(t)
	conf := filepath.Join(dir, "prhelper.conf")
	if err := os.WriteFile(conf, []byte("allow-uid 65001\nallow-gid 65100\nsocket-mode 0666\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--allow-uid=65001", "--allow-gid=65100", "--socket-mode=0666"},
		{"--config=" + conf},
	} {
		sock := filepath.Join(dir, "a.sock")
		p := startHelper(t, append([]string{"-k", sock}, args...)...)
		waitSocket(t, sock)
		for _, tc := range []struct {
			cred *syscall.Credential
			want string
		}{
			{&syscall.Credential{Uid: 65001, Gid: 65001}, "admitted"},
			{&syscall.Credential{Uid: 65002, Gid: 65002}, "refused"},
			{&syscall.Credential{Uid: 65002, Gid: 65002}, "refused"},
			{&syscall.Credential{Uid: 65003, Gid: 65003, Groups: []uint32{65100}}, "admitted"},
			{nil, "refused"}, // root is not implied
		} {
			if got := connectAs(t, dir, sock, tc.cred); got != tc.want {
				t.Errorf("%v: peer %+v says %q, want %q", args, tc.cred, got, tc.want)
			}
		}
		p.stop(t)
		log := p.stderr.String()
		if n := strings.Count(log, "peer refused"); n != 2 {
			t.Errorf("%v: %d refusal lines for uids 65002 (twice) and 0, want 2:\n%s", args, n, log)
		}
		if !strings.Contains(log, "peer_uid=65002") {
			t.Errorf("%v: refusal of uid 65002 not logged:\n%s", args, log)
		}
	}
}

// TestPeerExeCheck: under --initiator=peer a peer whose executable is not on
// the --peer-exe list (here the test binary, a fake QEMU, under the default
// list) gets no identity and emulation refuses its commands; the same peer is
// served when its binary is listed, and with --peer-exe=any.
func TestPeerExeCheck(t *testing.T) {
	dir := t.TempDir()
	disk := diskFile(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "CHECK_CONDITION"},
		{[]string{"--peer-exe=/bin/sh," + os.Args[0]}, "GOOD"},
		{[]string{"--peer-exe=any"}, "GOOD"},
	} {
		sock := filepath.Join(dir, "p.sock")
		db := filepath.Join(dir, "pr.db")
		os.Remove(db)
		p := startHelper(t, append([]string{"--backend=emulate", "--db=" + db, "--initiator=peer", "-k", sock}, tc.args...)...)
		waitSocket(t, sock)
		v := startVM(t, sock, disk, uuid1, "vm1", "register:0:a1:0", false)
		st := v.steps(t)["register"]
		if st[0] != tc.want {
			t.Errorf("%v: REGISTER from the fake QEMU: %v, want %s", tc.args, st, tc.want)
		}
		if tc.want != "GOOD" && st[1] != scsi.SenseIOError.String() {
			t.Errorf("%v: sense %s, want %s", tc.args, st[1], scsi.SenseIOError)
		}
		v.stdin.Close()
		p.stop(t)
		if tc.want != "GOOD" && !strings.Contains(p.stderr.String(), "not a QEMU binary") {
			t.Errorf("%v: refusal not logged:\n%s", tc.args, p.stderr)
		}
	}
}

// TestSandboxOnByDefault: a running helper has no_new_privs and a seccomp
// filter on every thread (/proc/PID/task/TID/status) and logs what it applied;
// --sandbox=off leaves it without either.
func TestSandboxOnByDefault(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args           []string
		nnp, seccompOn string
		logged         string
	}{
		{nil, "1", "2", "msg=sandbox seccomp=\"allow-list"},
		{[]string{"--sandbox=off"}, "0", "0", "sandbox off"},
	} {
		sock := filepath.Join(dir, "s.sock")
		p := startHelper(t, append([]string{"-k", sock}, tc.args...)...)
		waitSocket(t, sock)
		readKeysOnFile(t, sock)
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", p.cmd.Process.Pid, task.Name()))
			if err != nil {
				t.Fatal(err)
			}
			st := string(b)
			if !strings.Contains(st, "NoNewPrivs:\t"+tc.nnp+"\n") || !strings.Contains(st, "Seccomp:\t"+tc.seccompOn+"\n") {
				t.Errorf("%v: thread %s: want NoNewPrivs %s Seccomp %s:\n%s", tc.args, task.Name(), tc.nnp, tc.seccompOn, st)
			}
		}
		if code := p.stop(t); code != 0 {
			t.Fatalf("%v: exit %d:\n%s", tc.args, code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), tc.logged) {
			t.Errorf("%v: log lacks %q:\n%s", tc.args, tc.logged, p.stderr)
		}
	}
}
