package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// descriptorsPerConn is what one connection can hold at once: its socket and
// the descriptor its request carries.
const descriptorsPerConn = 2

// reservedDescriptors are kept out of the connection budget for the process's
// own files (listeners, the state store, sysfs and /proc reads, the log).
const reservedDescriptors = 64

// maxAcceptBackoff bounds the pause between accept attempts while descriptors
// are exhausted.
const maxAcceptBackoff = time.Second

// RaiseFileLimit raises the soft RLIMIT_NOFILE to the hard limit and returns the
// new soft limit (getrlimit(2)). The Go runtime does the same at start since Go
// 1.19; doing it here makes the daemon's limit explicit and logged, whatever
// started it.
func RaiseFileLimit() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit RLIMIT_NOFILE: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, nil
}

// defaultMaxConns is the connection budget the descriptor limit allows: each
// connection may hold descriptorsPerConn, after reservedDescriptors for the
// process. At least 1.
func defaultMaxConns() int {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	cur := min(rl.Cur, 1<<22)
	if cur <= reservedDescriptors+descriptorsPerConn {
		return 1
	}
	return int((cur - reservedDescriptors) / descriptorsPerConn)
}

// outOfDescriptors reports whether an accept failed for want of descriptors or
// memory: transient, and retried after a pause.
func outOfDescriptors(err error) bool {
	return errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) ||
		errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM)
}

// sleepCtx waits d or until ctx is done; false means ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
