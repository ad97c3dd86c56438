package pidfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxAttempts bounds the open-lock-verify loop. Each retry means another process
// removed or replaced the file between our open and our lock; QEMU loops forever,
// a bound turns a pathological race into an error instead of a spin.
const maxAttempts = 16

// File is a created, locked pid file. Its descriptor holds the lock; keep the
// File until the process ends, then call Remove.
type File struct {
	path string
	f    *os.File
}

// Create creates or opens path (O_WRONLY|O_CREAT|O_CLOEXEC, mode 0600), takes a
// whole-file F_SETLK write lock on it, verifies that path still names the locked
// inode (retrying when a racing process replaced it, as qemu_write_pidfile does),
// truncates it and writes the current pid followed by a newline.
//
// If another process holds the lock the error is
// "cannot lock pid file PATH: held by another process".
func Create(path string) (*File, error) {
	return create(path, nil)
}

// create is Create with a hook run after the lock is taken and before the inode
// check, so tests can play the racing process.
func create(path string, afterLock func()) (*File, error) {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		f, ok, err := openLocked(path, afterLock)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if err := f.Truncate(0); err != nil {
			f.Close()
			return nil, fmt.Errorf("truncate pid file %s: %w", path, err)
		}
		if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
			f.Close()
			return nil, fmt.Errorf("write pid file %s: %w", path, err)
		}
		return &File{path: path, f: f}, nil
	}
	return nil, fmt.Errorf("lock pid file %s: file replaced by another process %d times in a row", path, maxAttempts)
}

// openLocked opens and locks path. ok is false when the locked file is no longer
// the one path names (removed or replaced after our open); the caller retries.
func openLocked(path string, afterLock func()) (f *os.File, ok bool, err error) {
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("open pid file %s: %w", path, err)
	}
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 0} // Len 0: to EOF and beyond.
	if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
		f.Close()
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
			return nil, false, fmt.Errorf("cannot lock pid file %s: held by another process", path)
		}
		return nil, false, fmt.Errorf("lock pid file %s: %w", path, err)
	}
	if afterLock != nil {
		afterLock()
	}
	var byFD, byPath unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &byFD); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("stat pid file %s: %w", path, err)
	}
	if err := unix.Stat(path, &byPath); err != nil {
		f.Close()
		if errors.Is(err, unix.ENOENT) {
			return nil, false, nil // removed under us: someone is racing, try again
		}
		return nil, false, fmt.Errorf("stat pid file %s: %w", path, err)
	}
	if byFD.Dev != byPath.Dev || byFD.Ino != byPath.Ino {
		f.Close()
		return nil, false, nil // replaced under us: try again
	}
	return f, true, nil
}

// Path returns the path the file was created at.
func (p *File) Path() string { return p.path }

// Remove unlinks the pid file, if the path still names the file this process
// locked (so a successor's file is never removed), and then closes it, which
// releases the lock. It is safe to call on a nil *File. After a privilege drop
// the unlink may fail with EACCES (the directory, normally /var/run, belongs to
// root); the lock is still released and the error says so, and a daemon may
// treat it as a warning.
func (p *File) Remove() error {
	if p == nil || p.f == nil {
		return nil
	}
	var errUnlink error
	var byFD, byPath unix.Stat_t
	if err := unix.Fstat(int(p.f.Fd()), &byFD); err != nil {
		errUnlink = fmt.Errorf("stat pid file %s: %w", p.path, err)
	} else if err := unix.Stat(p.path, &byPath); err == nil && byFD.Dev == byPath.Dev && byFD.Ino == byPath.Ino {
		if err := os.Remove(p.path); err != nil {
			errUnlink = fmt.Errorf("remove pid file %s: %w", p.path, err)
		}
	}
	return errors.Join(errUnlink, p.Close())
}

// Close closes the file without removing it, releasing the lock. It is safe to
// call more than once and on a nil *File.
func (p *File) Close() error {
	if p == nil || p.f == nil {
		return nil
	}
	f := p.f
	p.f = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("close pid file %s: %w", p.path, err)
	}
	return nil
}
