package device

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// DefaultSysfsRoot is where sysfs is mounted on Linux.
const DefaultSysfsRoot = "/sys"

// maxAttr bounds how much of one sysfs attribute is read: text attributes are
// at most a page, and vpd_pg83 at most 64 KiB + 4 (SPC-4 §7.8.1 PAGE LENGTH).
const maxAttr = 1<<16 + 4

// Sysfs is a sysfs tree to look devices up in. The zero value is the real one
// at DefaultSysfsRoot; tests point Root at a fake tree.
type Sysfs struct {
	Root string
}

func (s Sysfs) root() string {
	if s.Root == "" {
		return DefaultSysfsRoot
	}
	return s.Root
}

func (s Sysfs) path(elem ...string) string {
	return filepath.Join(append([]string{s.root()}, elem...)...)
}

// resolve follows the /sys/dev/{block,char}/M:m symlink into /sys/devices.
func (s Sysfs) resolve(class string, major, minor uint32) (string, error) {
	link := s.path("dev", class, fmt.Sprintf("%d:%d", major, minor))
	p, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", link, err)
	}
	return p, nil
}

// readAttr reads a sysfs attribute, bounded by maxAttr.
func readAttr(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAttr))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

// readText reads a text attribute without its trailing newline and
// surrounding blanks. A missing attribute is ("", nil): many are optional.
func readText(path string) (string, error) {
	b, err := readAttr(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b)), nil
}

// exists reports whether path exists; errors other than "not there" count as
// present so that an unreadable tree is reported by the read that follows.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil || !errors.Is(err, fs.ErrNotExist)
}

// listDir returns the entry names of dir, sorted; a missing dir is empty.
func listDir(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names, nil
}
