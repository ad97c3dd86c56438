package etcdtest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// owner names the member whose process owns the socket at the other end of a
// loopback connection: the socket's inode from /proc/net/tcp by its local port, then
// the member whose /proc/<pid>/fd holds that inode. "" when not found.
func (c *Cluster) owner(remote net.Addr) string {
	for range 5 {
		if name := c.ownerOnce(remote); name != "" {
			return name
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

func (c *Cluster) ownerOnce(remote net.Addr) string {
	ta, ok := remote.(*net.TCPAddr)
	if !ok {
		return ""
	}
	inode := socketInode(ta.Port)
	if inode == "" {
		return ""
	}
	want := "socket:[" + inode + "]"
	c.mu.Lock()
	pids := map[int]string{}
	for _, m := range c.Members {
		if m.cmd != nil && m.cmd.Process != nil {
			pids[m.cmd.Process.Pid] = m.Name
		}
	}
	c.mu.Unlock()
	for pid, name := range pids {
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && l == want {
				return name
			}
		}
	}
	return ""
}

// socketInode finds the inode of the IPv4 TCP socket bound to 127.0.0.1:port.
func socketInode(port int) string {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return ""
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == local {
			if _, err := strconv.ParseUint(fields[9], 10, 64); err == nil {
				return fields[9]
			}
		}
	}
	return ""
}
