package privilege

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// buildDropTest compiles internal/droptest with CGO_ENABLED=0 into a temporary
// directory. The test binary itself cannot be the subject: `go test -race` links
// cgo, and Drop refuses to run in such a binary.
func buildDropTest(t *testing.T) string {
	t.Helper()
	// go test puts the go command that runs it first in PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("find the go command: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "droptest")
	cmd := exec.Command(goTool, "build", "-o", bin, "./internal/droptest")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build droptest: %v\n%s", err, out)
	}
	return bin
}

// startDropTest runs the subject and waits for its verdict line. The subject keeps
// running (and its threads stay inspectable) until the returned stop is called.
func startDropTest(t *testing.T, bin string, args ...string) (pid int, verdict string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read droptest verdict: %v", err)
	}
	return cmd.Process.Pid, strings.TrimSpace(line)
}

func TestDropAllThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privilege drop test needs root: it switches a child process to uid/gid 65534 and clears its capabilities")
	}
	bin := buildDropTest(t)
	const rawio = uint64(1) << 17
	tests := []struct {
		name     string
		args     []string
		uid, gid int
		groups   bool
	}{
		{"to nobody", []string{"65534", "65534", "17"}, 65534, 65534, false},
		{"keep root ids", []string{"-1", "-1", "17"}, 0, 0, false},
		{"uid only", []string{"65534", "-1", "17"}, 65534, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pid, verdict := startDropTest(t, bin, tc.args...)
			if verdict != "ok" {
				t.Fatalf("droptest: %s", verdict)
			}
			threads, err := ReadThreadStatuses(pid)
			if err != nil {
				t.Fatal(err)
			}
			if len(threads) < 5 {
				t.Errorf("subject has %d threads, want at least 5 (the test must cover several)", len(threads))
			}
			for tid, s := range threads {
				if s.CapEff != rawio || s.CapPrm != rawio || s.CapBnd != rawio {
					t.Errorf("thread %d: CapEff %#x CapPrm %#x CapBnd %#x, want all %#x", tid, s.CapEff, s.CapPrm, s.CapBnd, rawio)
				}
				if s.CapInh != 0 || s.CapAmb != 0 {
					t.Errorf("thread %d: CapInh %#x CapAmb %#x, want 0", tid, s.CapInh, s.CapAmb)
				}
				for i := range 4 {
					if s.Uid[i] != tc.uid || s.Gid[i] != tc.gid {
						t.Errorf("thread %d: Uid %v Gid %v, want all %d / %d", tid, s.Uid, s.Gid, tc.uid, tc.gid)
						break
					}
				}
				if len(s.Groups) != 0 {
					t.Errorf("thread %d: supplementary groups %v, want none", tid, s.Groups)
				}
			}
		})
	}
}

func TestDropReportsUnknownCap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("privilege drop test needs root")
	}
	bin := buildDropTest(t)
	_, verdict := startDropTest(t, bin, "-1", "-1", "63")
	if !strings.Contains(verdict, "beyond cap_last_cap") {
		t.Errorf("verdict %q, want a beyond cap_last_cap error", verdict)
	}
}

// TestDropRefusesCgo runs only where the test binary links cgo (go test -race does):
// there Drop must refuse up front, with the message the daemon shows, and change
// nothing. In a cgo-free test binary Drop would really drop the test's privileges,
// so the test is skipped.
func TestDropRefusesCgo(t *testing.T) {
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_GETPID, 0, 0, 0); errno != syscall.ENOTSUP {
		t.Skip("test binary does not link cgo; the refusal path cannot be reached here")
	}
	before, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	err = Drop([]Cap{CapSysRawio}, 65534, 65534)
	if !errors.Is(err, ErrNeedsNoCgo) || !strings.Contains(err.Error(), "privilege drop needs a CGO_ENABLED=0 build") {
		t.Fatalf("Drop = %v, want ErrNeedsNoCgo", err)
	}
	after, err := ReadStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if before.CapEff != after.CapEff || before.CapBnd != after.CapBnd || before.Uid != after.Uid {
		t.Errorf("refused Drop changed the process: before %+v after %+v", before, after)
	}
}

func TestCapString(t *testing.T) {
	for c, want := range map[Cap]string{CapSysRawio: "cap_sys_rawio", CapSysAdmin: "cap_sys_admin", CapKill: "cap_kill", 3: "cap_3"} {
		if got := c.String(); got != want {
			t.Errorf("Cap(%d).String() = %q, want %q", int(c), got, want)
		}
	}
	if strconv.Itoa(int(CapSysRawio)) != "17" || int(CapSysAdmin) != 21 {
		t.Errorf("capability numbers %d %d, want 17 21 (linux/capability.h)", CapSysRawio, CapSysAdmin)
	}
}

// TestCapsetLayout checks the capset(2) version-3 data layout Drop passes to the
// kernel (linux/capability.h: struct __user_cap_header_struct { __u32 version;
// int pid; }, struct __user_cap_data_struct { __u32 effective, permitted,
// inheritable; }[_LINUX_CAPABILITY_U32S_3 = 2]).
func TestCapsetLayout(t *testing.T) {
	var hdr unix.CapUserHeader
	var data [2]unix.CapUserData
	if unsafe.Sizeof(hdr) != 8 || unsafe.Offsetof(hdr.Pid) != 4 {
		t.Errorf("header size %d pid@%d, want 8 and 4", unsafe.Sizeof(hdr), unsafe.Offsetof(hdr.Pid))
	}
	if unsafe.Sizeof(data) != 24 || unsafe.Offsetof(data[0].Permitted) != 4 || unsafe.Offsetof(data[0].Inheritable) != 8 {
		t.Errorf("data size %d permitted@%d inheritable@%d, want 24, 4, 8",
			unsafe.Sizeof(data), unsafe.Offsetof(data[0].Permitted), unsafe.Offsetof(data[0].Inheritable))
	}
	if unix.LINUX_CAPABILITY_VERSION_3 != 0x20080522 {
		t.Errorf("version 3 = %#x", unix.LINUX_CAPABILITY_VERSION_3)
	}
}
