package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// socketFile is a listening socket prhelper created at a path of its own. It is
// bound under a temporary name and renamed into place by publish, so that the
// path appears only when the helper is about to serve: libvirt polls for the file
// and connects as soon as it sees it.
type socketFile struct {
	l    *net.UnixListener
	tmp  string
	path string
	dev  uint64
	ino  uint64
}

// listenSocket prepares a listener for path, whose file gets mode and, unless
// gid is -1, group gid, whatever the umask (docs/security.md §2). A stale
// socket file (nobody accepts on it) is replaced, as qemu-pr-helper does; a
// socket another process still serves, or a file that is not a socket, is an
// error rather than a silent unlink.
func listenSocket(path string, mode os.FileMode, gid int) (*socketFile, error) {
	if err := checkStale(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(filepath.Dir(path), fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	os.Remove(tmp)
	// Bound with no permission at all, so that nobody but root connects before
	// the mode and group are set; the helper starts single-threaded enough that
	// no other file is created meanwhile.
	old := unix.Umask(0o777)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The file is renamed and removed by this code, not by the listener.
	l.SetUnlinkOnClose(false)
	s := &socketFile{l: l, tmp: tmp, path: path}
	if gid != -1 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			s.discard()
			return nil, fmt.Errorf("socket %s: group %d: %w", path, gid, err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		s.discard()
		return nil, fmt.Errorf("socket %s: mode %#o: %w", path, mode, err)
	}
	return s, nil
}

func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("socket path %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("socket path %s exists and is not a socket", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("socket %s is in use by another running helper", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}

// publish renames the socket into place.
func (s *socketFile) publish() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		os.Remove(s.tmp)
		return fmt.Errorf("publish socket %s: %w", s.path, err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.path, &st); err == nil {
		s.dev, s.ino = st.Dev, st.Ino
	}
	return nil
}

// remove deletes the socket file if it is still ours: a helper started after us
// on the same path (a restart) must keep its socket.
func (s *socketFile) remove() error {
	var st unix.Stat_t
	if err := unix.Stat(s.path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove socket %s: %w", s.path, err)
	}
	if s.ino == 0 || st.Dev != s.dev || st.Ino != s.ino {
		return nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove socket %s: %w", s.path, err)
	}
	return nil
}

// discard cleans up a socket that was never published.
func (s *socketFile) discard() {
	s.l.Close()
	os.Remove(s.tmp)
}
