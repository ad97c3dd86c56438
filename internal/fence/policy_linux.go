package fence

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/daemon/identity"
)

// Target is what a policy fences: the processes of one evicted initiator that
// this helper serves, with the eviction that asks for it.
type Target struct {
	// Victim is the evicted initiator; Evictor the one whose command evicted it.
	Victim, Evictor string
	// LU is the logical unit of the eviction.
	LU string
	// Procs are the victim's processes known from its live connections to this
	// helper (accepted before the eviction). Empty when no helper serves the
	// victim: kill then has nothing to do, exec still runs its agent.
	Procs []Proc
}

// Policy fences the processes of an evicted initiator. Fence returns nil only
// when none of them can write to the logical unit any more.
type Policy interface {
	// String is the policy as --fence names it.
	String() string
	Fence(ctx context.Context, t Target) error
}

// ParsePolicy parses --fence: none, kill or exec:PATH (PATH absolute).
func ParsePolicy(s string) (Policy, error) {
	switch {
	case s == "" || s == "none":
		return nil, nil
	case s == "kill":
		return Kill{}, nil
	case strings.HasPrefix(s, "exec:"):
		p := strings.TrimPrefix(s, "exec:")
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("fence %q: exec: needs an absolute path", s)
		}
		return Exec{Path: p}, nil
	}
	return nil, fmt.Errorf("fence %q: want none, kill or exec:PATH", s)
}

// Kill fences by SIGKILL to every process of the victim, through the pidfds
// taken when its connections were accepted, and waits until each has exited:
// once a process has exited its in-flight I/O has completed (exit waits for
// outstanding AIO), so no write of it can reach the disk afterwards.
type Kill struct{}

func (Kill) String() string { return "kill" }

// Fence signals and waits; ctx bounds the wait.
func (Kill) Fence(ctx context.Context, t Target) error {
	for _, p := range t.Procs {
		if p.pidfd < 0 {
			return fmt.Errorf("kill %s pid %d: no pidfd (Linux < 5.3): refusing to signal a pid that may have been reused", t.Victim, p.PID)
		}
		err := unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill %s pid %d: pidfd_send_signal: %w", t.Victim, p.PID, err)
		}
	}
	for _, p := range t.Procs {
		if err := waitExit(ctx, p.pidfd); err != nil {
			return fmt.Errorf("kill %s pid %d: %w", t.Victim, p.PID, err)
		}
	}
	return nil
}

// waitExit waits until the process of pidfd has exited (the pidfd polls
// readable, pidfd_open(2)) or ctx ends.
func waitExit(ctx context.Context, pidfd int) error {
	for {
		ms := 100
		if d, ok := ctx.Deadline(); ok {
			left := time.Until(d)
			if left <= 0 {
				return fmt.Errorf("still running after the fence timeout: %w", context.DeadlineExceeded)
			}
			if left < 100*time.Millisecond {
				ms = int(left/time.Millisecond) + 1
			}
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("waiting for exit: %w", err)
		}
	}
}

// Exec fences by running a program (a fence agent, a script around `virsh
// destroy`) with the victim's identity in its environment; exit status 0 means
// fenced. It runs in its own process group, killed as a whole when ctx ends.
type Exec struct{ Path string }

func (e Exec) String() string { return "exec:" + e.Path }

// Environment variables an exec: agent receives (docs/fencing.md).
const (
	EnvInitiator = "PRHELPER_FENCE_INITIATOR"
	EnvUUID      = "PRHELPER_FENCE_UUID"
	EnvName      = "PRHELPER_FENCE_NAME"
	EnvPID       = "PRHELPER_FENCE_PID"
	EnvLU        = "PRHELPER_FENCE_LU"
	EnvEvictor   = "PRHELPER_FENCE_EVICTOR"
)

// Env returns the environment entries describing t for an agent: the pids are
// space-separated; UUID and name come from the VM's command line, or, with no
// live process, the UUID from a peer initiator name (…:vm:<uuid>).
func (t Target) Env() []string {
	var pids []string
	uuid, name := "", ""
	for _, p := range t.Procs {
		pids = append(pids, strconv.Itoa(p.PID))
		if uuid == "" {
			uuid = p.UUID
		}
		if name == "" {
			name = p.Name
		}
	}
	if uuid == "" {
		uuid, _ = strings.CutPrefix(t.Victim, identity.Prefix+":vm:")
		if uuid == t.Victim {
			uuid = ""
		}
	}
	return []string{
		EnvInitiator + "=" + t.Victim,
		EnvUUID + "=" + uuid,
		EnvName + "=" + name,
		EnvPID + "=" + strings.Join(pids, " "),
		EnvLU + "=" + t.LU,
		EnvEvictor + "=" + t.Evictor,
	}
}

// Fence runs the agent and waits for it, at most until ctx ends.
func (e Exec) Fence(ctx context.Context, t Target) error {
	cmd := exec.CommandContext(ctx, e.Path)
	cmd.Env = append(os.Environ(), t.Env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return unix.Kill(-cmd.Process.Pid, unix.SIGKILL) }
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if len(msg) > 512 {
			msg = msg[:512] + "…"
		}
		if ctx.Err() != nil {
			return fmt.Errorf("fence agent %s for %s: did not finish within the fence timeout (%w): %s", e.Path, t.Victim, ctx.Err(), msg)
		}
		return fmt.Errorf("fence agent %s for %s: %w: %s", e.Path, t.Victim, err, msg)
	}
	return nil
}
