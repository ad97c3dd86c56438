package fence

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// SelfID names this helper process on this host: "<pid>.<start time>", so that
// a later process with the same pid is another helper.
func SelfID() string {
	pid := os.Getpid()
	st, _ := startTime(pid)
	return fmt.Sprintf("%d.%s", pid, st)
}

// ProcessAlive reports whether the helper named id (SelfID form) still runs on
// this host: its pid exists with the same start time.
func ProcessAlive(id string) bool {
	p, st, ok := strings.Cut(id, ".")
	pid, err := strconv.Atoi(p)
	if !ok || err != nil || pid <= 0 {
		return false
	}
	now, err := startTime(pid)
	return err == nil && now == st
}

// userHZ is the unit of /proc/<pid>/stat's start time (sysconf(_SC_CLK_TCK),
// 100 on every Linux architecture).
const userHZ = 100

// processStart returns when pid started, as a wall-clock time: its start time
// after boot (ticks) and the system's uptime now, both on the boot clock.
func processStart(pid int, now time.Time) (time.Time, error) {
	st, err := startTime(pid)
	if err != nil {
		return time.Time{}, err
	}
	ticks, err := strconv.ParseInt(st, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/%d/stat: start time %q", pid, st)
	}
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, err
	}
	up, _, _ := strings.Cut(string(b), " ")
	secs, err := strconv.ParseFloat(up, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("/proc/uptime: %q", b)
	}
	age := time.Duration(secs*float64(time.Second)) - time.Duration(ticks)*time.Second/userHZ
	return now.Add(-age), nil
}

// startTime returns field 22 of /proc/<pid>/stat, counted after the last ')'
// because the command name may hold spaces and parentheses (proc(5)).
func startTime(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return "", fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return f[19], nil
}
