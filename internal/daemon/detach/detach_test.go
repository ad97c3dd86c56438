package detach

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Environment of the re-executed test binary acting as a daemon program.
const (
	modeEnv    = "DETACH_TEST_MODE"    // ready, fail, hang, activated, closepipe
	reportEnv  = "DETACH_TEST_REPORT"  // file the child writes its observations to
	timeoutEnv = "DETACH_TEST_TIMEOUT" // Start's ready argument
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(modeEnv); mode != "" {
		os.Exit(program(mode))
	}
	os.Exit(m.Run())
}

// program is main() of a daemon using detach, as cmd/prhelper would write it.
func program(mode string) int {
	timeout, _ := time.ParseDuration(os.Getenv(timeoutEnv))
	done, err := Start(timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "program:", err)
		return 1
	}
	if done {
		return 0
	}
	report := os.Getenv(reportEnv)
	write := func(lines ...string) {
		os.WriteFile(report+".tmp", []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		os.Rename(report+".tmp", report)
	}
	pid := strconv.Itoa(os.Getpid())
	switch mode {
	case "ready":
		fmt.Fprintln(os.Stderr, "child says hello before Ready")
		isChild := IsChild()
		if err := Ready(); err != nil {
			fmt.Fprintln(os.Stderr, "program: ready:", err)
			return 1
		}
		fmt.Fprintln(os.Stderr, "child writes after Ready") // must be lost
		sid, _ := unix.Getsid(0)
		cwd, _ := os.Getwd()
		var links []string
		for fd := 0; fd < 3; fd++ {
			l, _ := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
			links = append(links, l)
		}
		write(pid, strconv.Itoa(sid), cwd, strings.Join(links, ","), fmt.Sprint(isChild, IsChild()))
		time.Sleep(time.Minute)
	case "fail":
		fmt.Fprintln(os.Stderr, "child failing on purpose")
		return 7
	case "hang", "closepipe":
		write(pid)
		if mode == "closepipe" {
			fd, _ := strconv.Atoi(os.Getenv(envReadyFD))
			unix.Close(fd)
		}
		time.Sleep(time.Minute)
	case "activated":
		typ, err := unix.GetsockoptInt(3, unix.SOL_SOCKET, unix.SO_TYPE)
		write(pid, os.Getenv(listenPID), os.Getenv(listenFDs), fmt.Sprint(typ, err))
		Ready()
		time.Sleep(time.Minute)
	}
	return 0
}

// runProgram runs the test binary as the daemon program and returns its exit
// code, stderr and how long it took.
func runProgram(t *testing.T, cmd *exec.Cmd, mode, timeout, report string) (int, string, time.Duration) {
	t.Helper()
	cmd.Env = append(os.Environ(), modeEnv+"="+mode, timeoutEnv+"="+timeout, reportEnv+"="+report)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), stderr.String(), took
	}
	if err != nil {
		t.Fatalf("run program: %v", err)
	}
	return 0, stderr.String(), took
}

// readReport waits for the child's report and arranges for the child to be killed.
func readReport(t *testing.T, path string) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if pid, err := strconv.Atoi(lines[0]); err == nil {
				t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
			}
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("child wrote no report: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// State is the field after the parenthesised command name; Z is a zombie.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestStartReady(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Dir = t.TempDir()
	code, stderr, _ := runProgram(t, cmd, "ready", "20s", report)
	if code != 0 {
		t.Fatalf("parent exit %d, stderr %q; want 0", code, stderr)
	}
	if !strings.Contains(stderr, "child says hello before Ready") {
		t.Errorf("stderr %q: the child's output before Ready did not reach the parent's stderr", stderr)
	}
	if strings.Contains(stderr, "after Ready") {
		t.Errorf("stderr %q: the child's output after Ready was not redirected", stderr)
	}
	got := readReport(t, report)
	if len(got) != 5 {
		t.Fatalf("report %q", got)
	}
	pid, _ := strconv.Atoi(got[0])
	if pid == 0 || pid == cmd.Process.Pid {
		t.Errorf("child pid %q, parent pid %d: want a different process", got[0], cmd.Process.Pid)
	}
	if got[1] != got[0] {
		t.Errorf("child session id %s, want its own pid %s (setsid)", got[1], got[0])
	}
	if got[2] != "/" {
		t.Errorf("child cwd %q, want /", got[2])
	}
	if got[3] != "/dev/null,/dev/null,/dev/null" {
		t.Errorf("child fds 0,1,2 -> %q, want /dev/null each", got[3])
	}
	if got[4] != "true false" {
		t.Errorf("IsChild before/after Ready = %q, want true false", got[4])
	}
	if !alive(pid) {
		t.Errorf("child %d is not running after the parent exited", pid)
	}
}

func TestStartChildFails(t *testing.T) {
	report := filepath.Join(t.TempDir(), "report")
	code, stderr, _ := runProgram(t, exec.Command(os.Args[0], "-test.run=^$"), "fail", "20s", report)
	if code != 1 {
		t.Errorf("parent exit %d, want 1", code)
	}
	for _, want := range []string{"child failing on purpose", "exited before it was ready: exit status 7"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

func TestStartTimeoutKillsChild(t *testing.T) {
	// The child's pid comes from the parent's error message, not from the
	// child's report: on a loaded machine a "hang" child may be killed
	// before it wrote one. No bound on how long the parent took: a wall-clock
	// limit is what failed under load.
	tests := []struct{ mode, timeout, wantErr string }{
		{"hang", "300ms", "was not ready after 300ms; killed it"},
		{"closepipe", "0", "closed its ready pipe without signalling; killed it"},
	}
	pidRe := regexp.MustCompile(`process (\d+) `)
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			report := filepath.Join(t.TempDir(), "report")
			code, stderr, _ := runProgram(t, exec.Command(os.Args[0], "-test.run=^$"), tc.mode, tc.timeout, report)
			if code != 1 || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("parent exit %d, stderr %q; want 1 and %q", code, stderr, tc.wantErr)
			}
			m := pidRe.FindStringSubmatch(stderr)
			if m == nil {
				t.Fatalf("no child pid in %q", stderr)
			}
			pid, _ := strconv.Atoi(m[1])
			if alive(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Errorf("child %d still running after the parent gave up on it", pid)
			}
		})
	}
}

// TestStartPassesActivation runs the program as systemd would for a socket unit
// (listener at fd 3, LISTEN_PID = the program's pid via sh's exec) and checks that
// the child receives fd 3 with LISTEN_PID naming the child.
func TestStartPassesActivation(t *testing.T) {
	ln, err := listenFile(t)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	report := filepath.Join(t.TempDir(), "report")
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" -test.run='^$'`, os.Args[0])
	cmd.ExtraFiles = []*os.File{ln}
	code, stderr, _ := runProgram(t, cmd, "activated", "20s", report)
	if code != 0 {
		t.Fatalf("parent exit %d, stderr %q", code, stderr)
	}
	got := readReport(t, report)
	want := []string{got[0], got[0], "1", fmt.Sprint(unix.SOCK_STREAM, nil)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("child report %q, want %q (pid, LISTEN_PID = pid, LISTEN_FDS, fd 3 a stream socket)", got, want)
	}
}

// listenFile makes a listening Unix socket as an *os.File.
func listenFile(t *testing.T) (*os.File, error) {
	s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Bind(s, &unix.SockaddrUnix{Name: filepath.Join(t.TempDir(), "s")}); err != nil {
		unix.Close(s)
		return nil, err
	}
	if err := unix.Listen(s, 1); err != nil {
		unix.Close(s)
		return nil, err
	}
	return os.NewFile(uintptr(s), "listener"), nil
}

func TestActivationFDs(t *testing.T) {
	tests := []struct {
		pid, fds string
		want     []int
	}{
		{"100", "1", []int{3}},
		{"100", "3", []int{3, 4, 5}},
		{"101", "1", nil},
		{"", "1", nil},
		{"100", "", nil},
		{"100", "0", nil},
		{"100", "-2", nil},
		{"100", "x", nil},
		{"100", "100000", nil},
	}
	for _, tc := range tests {
		if got := activationFDs(tc.pid, tc.fds, 100); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("activationFDs(%q, %q) = %v, want %v", tc.pid, tc.fds, got, tc.want)
		}
	}
}

func TestChildEnv(t *testing.T) {
	in := []string{"PATH=/bin", "LISTEN_PID=9", "LISTEN_FDS=1", envReadyFD + "=7", envListenPID + "=1"}
	tests := []struct {
		activated bool
		readyFD   int
		want      []string
	}{
		{false, 3, []string{"PATH=/bin", "LISTEN_PID=9", "LISTEN_FDS=1", envReadyFD + "=3"}},
		{true, 4, []string{"PATH=/bin", "LISTEN_FDS=1", envReadyFD + "=4", envListenPID + "=1"}},
	}
	for _, tc := range tests {
		if got := childEnv(in, tc.readyFD, tc.activated); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("childEnv(activated=%v) = %q, want %q", tc.activated, got, tc.want)
		}
	}
}

func TestNotChild(t *testing.T) {
	if IsChild() {
		t.Fatal("test process claims to be a detached child")
	}
	if err := Ready(); err != nil {
		t.Errorf("Ready outside a child: %v", err)
	}
	t.Setenv(envReadyFD, "not-a-number")
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "is not a descriptor") {
		t.Errorf("Ready with a bad marker: %v", err)
	}
	if done, err := Start(time.Second); done || err == nil {
		t.Errorf("Start with a bad marker = %v, %v; want false and an error", done, err)
	}
}

func FuzzActivationFDs(f *testing.F) {
	f.Add("100", "1")
	f.Add("100", "1025")
	f.Add("x", "1")
	f.Fuzz(func(t *testing.T, pid, fds string) {
		got := activationFDs(pid, fds, 100)
		if len(got) > maxPassedFDs {
			t.Fatalf("%d descriptors", len(got))
		}
		for i, fd := range got {
			if fd != firstListen+i {
				t.Fatalf("descriptor %d at %d", fd, i)
			}
		}
	})
}
