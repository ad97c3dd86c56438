package detach

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Environment variables the parent sets for the child.
const (
	// envReadyFD is the child's descriptor number of the ready pipe's write end.
	envReadyFD = "PRHELPER_DETACH_READY_FD"
	// envListenPID asks the child to set LISTEN_PID to its own pid (the parent
	// cannot know the child's pid before it runs).
	envListenPID = "PRHELPER_DETACH_LISTEN_PID"
)

// Socket activation variables (sd_listen_fds(3)), passed through to the child.
const (
	listenPID    = "LISTEN_PID"
	listenFDs    = "LISTEN_FDS"
	firstListen  = 3
	maxPassedFDs = 1024
)

// reapWait bounds how long the parent waits for a child that closed the ready pipe
// to be reaped, to report its exit status.
const reapWait = 2 * time.Second

// IsChild reports whether this process is the detached child started by Start and
// has not yet called Ready.
func IsChild() bool {
	return os.Getenv(envReadyFD) != ""
}

// Start detaches the program. In the parent it starts the child and waits up to
// ready for it to call Ready (ready <= 0 waits without limit); it returns done =
// true, with err nil when the child is serving (exit 0) or non-nil when it is not
// (print err, exit 1; a child that did not become ready in time is killed). In the
// child it completes the detachment and returns done = false; a non-nil err there
// means the child could not detach (print err, exit 1).
func Start(ready time.Duration) (done bool, err error) {
	if IsChild() {
		return false, setupChild()
	}
	return true, runParent(ready)
}

func runParent(ready time.Duration) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemonize: find own executable: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemonize: ready pipe: %w", err)
	}
	defer r.Close()

	passed := activationFDs(os.Getenv(listenPID), os.Getenv(listenFDs), os.Getpid())
	env := childEnv(os.Environ(), firstListen+len(passed), len(passed) > 0)
	files := make([]*os.File, 0, len(passed)+1)
	for _, fd := range passed {
		files = append(files, os.NewFile(uintptr(fd), "listen-fd-"+strconv.Itoa(fd)))
	}
	files = append(files, w)

	cmd := &exec.Cmd{
		Path:        exe,
		Args:        os.Args,
		Env:         env,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setsid: true},
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return fmt.Errorf("daemonize: start %s: %w", exe, err)
	}
	pid := cmd.Process.Pid

	if ready > 0 {
		if err := r.SetReadDeadline(time.Now().Add(ready)); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("daemonize: ready pipe deadline: %w", err)
		}
	}
	var b [1]byte
	n, rerr := io.ReadFull(r, b[:])
	switch {
	case n == 1:
		return nil // serving; the child lives on without us
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("daemonize: process %d was not ready after %v; killed it", pid, ready)
	case rerr != nil && !errors.Is(rerr, io.EOF):
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("daemonize: read ready pipe of process %d: %w", pid, rerr)
	}
	// EOF: the child exited, or closed the pipe without saying it was ready.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case werr := <-exited:
		if werr == nil {
			werr = errors.New("exit status 0")
		}
		return fmt.Errorf("daemonize: process %d exited before it was ready: %w", pid, werr)
	case <-time.After(reapWait):
		cmd.Process.Kill()
		<-exited
		return fmt.Errorf("daemonize: process %d closed its ready pipe without signalling; killed it", pid)
	}
}

// activationFDs returns the socket-activation descriptors to pass to the child:
// FirstFD.. when LISTEN_PID names this process and LISTEN_FDS is a sane count.
// Anything else passes nothing and the child sees the variables as they were
// (naming the parent, so not activated), which is what the activation package
// would have concluded in the parent.
func activationFDs(pidStr, fdsStr string, pid int) []int {
	if p, err := strconv.Atoi(pidStr); err != nil || p != pid {
		return nil
	}
	n, err := strconv.Atoi(fdsStr)
	if err != nil || n <= 0 || n > maxPassedFDs {
		return nil
	}
	fds := make([]int, n)
	for i := range fds {
		fds[i] = firstListen + i
	}
	return fds
}

// childEnv is the child's environment: env without our markers (and without
// LISTEN_PID when descriptors are passed), plus the ready fd number and, when
// descriptors are passed, the request to set LISTEN_PID.
func childEnv(env []string, readyFD int, activated bool) []string {
	out := make([]string, 0, len(env)+2)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == envReadyFD || k == envListenPID || (activated && k == listenPID) {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, envReadyFD+"="+strconv.Itoa(readyFD))
	if activated {
		out = append(out, envListenPID+"=1")
	}
	return out
}

// readyFD returns the ready pipe descriptor named by the environment.
func readyFD() (int, error) {
	s := os.Getenv(envReadyFD)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return -1, fmt.Errorf("daemonize: %s=%q is not a descriptor", envReadyFD, s)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return -1, fmt.Errorf("daemonize: ready pipe fd %d: %w", fd, err)
	}
	return fd, nil
}

func setupChild() error {
	fd, err := readyFD()
	if err != nil {
		return err
	}
	// Children the daemon may start must not hold the pipe open.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fmt.Errorf("daemonize: ready pipe fd %d: set close-on-exec: %w", fd, err)
	}
	if os.Getenv(envListenPID) != "" {
		if err := os.Setenv(listenPID, strconv.Itoa(os.Getpid())); err != nil {
			return fmt.Errorf("daemonize: set %s: %w", listenPID, err)
		}
		os.Unsetenv(envListenPID)
	}
	// The parent started us with Setsid; a child started some other way still
	// gets its own session.
	if sid, err := unix.Getsid(0); err != nil || sid != os.Getpid() {
		if _, err := unix.Setsid(); err != nil {
			return fmt.Errorf("daemonize: setsid: %w", err)
		}
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("daemonize: chdir /: %w", err)
	}
	return redirect(0)
}

// redirect points the given standard descriptors at /dev/null.
func redirect(fds ...int) error {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("daemonize: open %s: %w", os.DevNull, err)
	}
	defer null.Close()
	for _, fd := range fds {
		if err := unix.Dup3(int(null.Fd()), fd, 0); err != nil {
			return fmt.Errorf("daemonize: redirect fd %d to %s: %w", fd, os.DevNull, err)
		}
	}
	return nil
}

// Ready tells the waiting parent that the daemon is serving: stdout and stderr
// move to /dev/null, one byte is written to the ready pipe and the pipe is
// closed, so the parent exits 0. Outside a detached child (IsChild false) it does
// nothing. Call it once the listener accepts connections, after the pid file and
// the privilege drop, so the parent's exit status means "started".
func Ready() error {
	if !IsChild() {
		return nil
	}
	fd, err := readyFD()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	os.Unsetenv(envReadyFD)
	// Before the byte: the parent's exit must not race with our last writes to
	// its terminal, and whoever reads the parent's output sees EOF when it exits.
	if err := redirect(1, 2); err != nil {
		return err
	}
	for {
		_, err := unix.Write(fd, []byte{1})
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("daemonize: write ready pipe: %w", err)
		}
		return nil
	}
}
