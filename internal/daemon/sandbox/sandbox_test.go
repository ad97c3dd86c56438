//go:build amd64 || arm64

package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// childEnv makes the test binary the sandboxed child: it applies the
// sandbox the variable names, tries calls and files, and prints one line per
// try, "NAME ok" or "NAME ERRNO-NAME".
const childEnv = "SANDBOX_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(child(v))
	}
	os.Exit(m.Run())
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return "error:" + err.Error()
}

func errnoOf(e unix.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func child(mode string) int {
	dir := os.Getenv("SANDBOX_TEST_DIR")
	out := func(name string, err error) { fmt.Printf("%s %s\n", name, result(err)) }
	switch mode {
	case "filter", "filter-exec":
		rep, err := Apply(Config{DBDir: dir, Exec: mode == "filter-exec"})
		if err != nil {
			fmt.Println("apply", err)
			return 1
		}
		fmt.Println("report", rep.Seccomp, "|", rep.Landlock)
	case "landlock":
		// The race detector links cgo, so this child confines its locked
		// thread only, and tries everything from that thread.
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			out("nnp", err)
			return 1
		}
		fd, err := buildRuleset(handledFS(min(ABI(), maxKnown)), Rules(Config{DBDir: dir}))
		if err != nil {
			out("ruleset", err)
			return 1
		}
		if _, _, e := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(fd), 0, 0); e != 0 {
			out("restrict", e)
			return 1
		}
	}
	// Allowed everywhere.
	_, _, e := unix.Syscall(unix.SYS_GETPID, 0, 0, 0)
	out("getpid", errnoOf(e))
	out("write-db", os.WriteFile(filepath.Join(dir, "pr.db"), []byte("x"), 0o600))
	_, err := os.ReadFile("/proc/self/status")
	out("read-proc", err)
	// Refused by the filter (each succeeds without it: unshare(0) changes
	// nothing, PTRACE_TRACEME in a child of the test).
	_, _, e = unix.Syscall(unix.SYS_UNSHARE, 0, 0, 0)
	out("unshare", errnoOf(e))
	if mode != "landlock" {
		// Allowed, PTRACE_TRACEME would stop this child at its next signal.
		_, _, e = unix.Syscall(unix.SYS_PTRACE, unix.PTRACE_TRACEME, 0, 0)
		out("ptrace", errnoOf(e))
	}
	if x32 {
		_, _, e = unix.Syscall(unix.SYS_GETPID|x32SyscallBit, 0, 0, 0)
		out("x32-getpid", errnoOf(e))
	}
	out("exec", exec.Command("/bin/true").Run())
	// Refused by Landlock (where it applies): a file outside the rules.
	_, err = os.ReadFile(os.Getenv("SANDBOX_TEST_OUTSIDE"))
	out("read-outside", err)
	return 0
}

func runChild(t *testing.T, mode string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.timeout=60s")
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "SANDBOX_TEST_DIR="+dir, "SANDBOX_TEST_OUTSIDE="+outside)
	b, err := cmd.CombinedOutput()
	t.Logf("child %s:\n%s", mode, b)
	if err != nil {
		t.Fatalf("child %s: %v (a filter must not kill the process)", mode, err)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			got[k] = v
		}
	}
	return got
}

func check(t *testing.T, mode string, got, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s = %q, want %q", mode, k, got[k], w)
		}
	}
}

// TestFilterInChild: the daemon's allow-list, loaded in a child process:
// allowed calls work, forbidden ones (unshare, ptrace, an x32 call, execve
// without a fence agent) fail with EPERM, and the process lives on to say so.
func TestFilterInChild(t *testing.T) {
	got := runChild(t, "filter")
	want := map[string]string{"getpid": "ok", "write-db": "ok", "read-proc": "ok",
		"unshare": "EPERM", "ptrace": "EPERM", "exec": "EPERM"}
	if x32 {
		want["x32-getpid"] = "EPERM"
	}
	check(t, "filter", got, want)
}

// TestFilterExecInChild: with a fence agent the filter is a deny-list:
// execve works, ptrace and unshare still fail.
func TestFilterExecInChild(t *testing.T) {
	got := runChild(t, "filter-exec")
	check(t, "filter-exec", got, map[string]string{"getpid": "ok", "write-db": "ok", "exec": "ok",
		"unshare": "EPERM", "ptrace": "EPERM", "read-outside": "ok"})
}

// TestLandlockInChild: the daemon's Landlock rules on one thread: the
// database directory and /proc are reachable, a file elsewhere is not.
func TestLandlockInChild(t *testing.T) {
	if ABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	got := runChild(t, "landlock")
	check(t, "landlock", got, map[string]string{"getpid": "ok", "write-db": "ok", "read-proc": "ok",
		"read-outside": "EACCES", "unshare": "ok"})
}

// TestProgramShape: the program checks the architecture, then (x86-64) the
// x32 bit, then each listed call, and ends with the default; every jump is
// short.
func TestProgramShape(t *testing.T) {
	p := Program(auditArch, true, []uint32{1, 2}, Allow, Deny)
	want := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 4},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: auditArch},
		{Code: unix.BPF_RET | unix.BPF_K, K: uint32(Deny)},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: 0},
		{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jf: 1, K: x32SyscallBit},
		{Code: unix.BPF_RET | unix.BPF_K, K: uint32(Deny)},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 1, K: 1},
		{Code: unix.BPF_RET | unix.BPF_K, K: uint32(Allow)},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 1, K: 2},
		{Code: unix.BPF_RET | unix.BPF_K, K: uint32(Allow)},
		{Code: unix.BPF_RET | unix.BPF_K, K: uint32(Deny)},
	}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		t.Fatalf("program\n%v\nwant\n%v", p, want)
	}
	if Deny != 0x50001 {
		t.Fatalf("Deny = %#x, want SECCOMP_RET_ERRNO|EPERM", uint32(Deny))
	}
}

// TestSockFilterLayout: struct sock_filter is 8 bytes (linux/filter.h),
// struct sock_fprog a length and a pointer.
func TestSockFilterLayout(t *testing.T) {
	var f unix.SockFilter
	if unsafe.Sizeof(f) != 8 || unsafe.Offsetof(f.K) != 4 {
		t.Fatalf("sock_filter size %d, k at %d", unsafe.Sizeof(f), unsafe.Offsetof(f.K))
	}
	var a rulesetAttr
	if unsafe.Sizeof(a) != 8 {
		t.Fatalf("landlock_ruleset_attr prefix %d bytes", unsafe.Sizeof(a))
	}
}

// TestCallsLists: the allow-list holds no denied call, and the deny-list holds
// what must never run.
func TestCallsLists(t *testing.T) {
	allow, _, _ := Calls(Config{Connect: true})
	deny, listed, other := Calls(Config{Exec: true})
	if listed != Deny || other != Allow {
		t.Fatal("Exec does not give a deny-list")
	}
	for _, d := range deny {
		for _, a := range allow {
			if a == d {
				t.Errorf("call %d is both allowed and denied", a)
			}
		}
	}
	for _, must := range []uint32{unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PIDFD_GETFD, unix.SYS_MOUNT, unix.SYS_BPF} {
		found := false
		for _, d := range deny {
			found = found || d == must
		}
		if !found {
			t.Errorf("call %d is not denied", must)
		}
	}
}
