package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// helperPID is the process listening on sock (SO_PEERCRED of a connection to
// it), or 0 when it cannot be told.
func helperPID(sock string) int {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return 0
	}
	defer c.Close()
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	pid := 0
	rc.Control(func(fd uintptr) {
		if cred, err := unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); err == nil {
			pid = int(cred.Pid)
		}
	})
	return pid
}

// cpuTime is the CPU time, in nanoseconds, that the threads of process pid
// have run so far: the sum of the first field of each
// /proc/PID/task/TID/schedstat (threads that have exited are not counted, so a
// helper's figure is a lower bound). -1 when it cannot be read.
func cpuTime(pid int) int64 {
	if pid <= 0 {
		return -1
	}
	tasks, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
	if err != nil || len(tasks) == 0 {
		return -1
	}
	var sum int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
