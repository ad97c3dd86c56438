package mpathconf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Default locations, as multipath-tools builds them by default
// (multipath.conf(5) NAME: "/etc/multipath.conf, /etc/multipath/conf.d/*.conf";
// the prkeys file sits in the state directory, /etc/multipath).
const (
	DefaultConfigFile = "/etc/multipath.conf"
	DefaultConfigDir  = "/etc/multipath/conf.d"
	DefaultPRKeysFile = "/etc/multipath/prkeys"
)

// Load reads the main configuration file at path, then the drop-in files of
// DefaultConfigDir, as multipathd does.
//
// A missing main file is an empty configuration, as multipathd runs on its
// built-in defaults without one; a missing directory has no drop-ins. Any
// other error reading them, or a syntax error in any file, is an error.
//
// config_dir is not honoured: multipath-tools 0.9.4 (Debian 12) logs
// "ignoring deprecated option "config_dir"" (checked in the storage lab) and
// multipath.conf(5) of later releases says "(Deprecated) This option is not
// supported any more, and the value is ignored". Older releases (RHEL 8's
// 0.8.4, for one) still read it; use LoadDir for those.
func Load(path string) (*Config, error) {
	return LoadDir(path, DefaultConfigDir)
}

// LoadDir reads the main configuration file at path, then the drop-in files
// of dir (none if dir is ""). A relative dir is ignored with a warning, as
// libmultipath ignores a relative config_dir.
func LoadDir(path, dir string) (*Config, error) {
	c := &Config{}
	if err := c.loadMain(path); err != nil {
		return nil, err
	}
	if err := c.loadDir(dir); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) loadMain(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return c.parse(f, path)
}

// loadDir reads dir's files whose names end in ".conf" in byte order
// (multipath.conf(5): "Files ending in .conf in this directory are read in
// alphabetical order, after reading /etc/multipath.conf"; libmultipath
// sorts with alphasort, which is byte order in the C locale). Older
// releases took any name containing ".conf" (strstr); the suffix is the
// documented rule and that of current releases. A dangling symbolic link is
// skipped with a warning, as libmultipath skips a drop-in it cannot open.
func (c *Config) loadDir(dir string) error {
	if dir == "" {
		return nil
	}
	if !filepath.IsAbs(dir) {
		c.Warnings = append(c.Warnings, fmt.Sprintf("drop-in directory %q is not an absolute path: no drop-in files read, as multipath-tools does", dir))
		return nil
	}
	ents, err := os.ReadDir(dir) // sorted by name
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read config dir: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".conf") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s: dangling link skipped", p))
			continue
		}
		if err != nil {
			return fmt.Errorf("stat %s: %w", p, err)
		}
		if !st.Mode().IsRegular() {
			continue
		}
		if err := c.loadFile(p); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return c.parse(f, path)
}

// LoadPRKeys reads the prkeys file at path (see ParsePRKeys). A missing file
// holds no keys: multipathd creates it on the first setprkey.
func LoadPRKeys(path string) (map[string]Key, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]Key{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	return ParsePRKeys(f, path)
}
