package mpathconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDir(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // under a temporary root; main is "multipath.conf", drop-ins in "conf.d"
		want  map[string]string // wwid ("" = any other) -> Key.String() and where, "0x1 @ conf.d/20-b.conf:2"
		read  []string          // files read, relative to root
	}{
		{
			name:  "no files at all",
			files: map[string]string{},
			want:  map[string]string{"": "unset @ "},
			read:  nil,
		},
		{
			name: "drop-ins without main file",
			files: map[string]string{
				"conf.d/10-key.conf": "defaults {\n reservation_key 0x10\n}\n",
			},
			want: map[string]string{"": "0x10 @ conf.d/10-key.conf:2"},
			read: []string{"conf.d/10-key.conf"},
		},
		{
			name: "drop-ins in alphabetical order after the main file",
			files: map[string]string{
				"multipath.conf":     "defaults {\n reservation_key 0x1\n}\nmultipaths {\n multipath {\n  wwid " + wwidA + "\n  reservation_key 0xa1\n }\n}\n",
				"conf.d/20-b.conf":   "defaults {\n reservation_key 0x20\n}\n",
				"conf.d/10-a.conf":   "defaults {\n reservation_key 0x10\n}\nmultipaths {\n multipath {\n  wwid " + wwidA + "\n  reservation_key file\n }\n}\n",
				"conf.d/30-c.conf":   "multipaths {\n multipath {\n  wwid " + wwidA + "\n  alias keeps-key\n }\n multipath {\n  wwid " + wwidB + "\n  reservation_key 0xb:aptpl\n }\n}\n",
				"conf.d/Z.conf":      "defaults {\n reservation_key 0x5a\n}\n", // byte order: digits < 'Z' < lower case
				"conf.d/99.conf.bak": "defaults {\n reservation_key 0x99\n}\n",
				"conf.d/notes.txt":   "defaults {\n reservation_key 0x98\n}\n",
				"conf.d/dir.conf/x":  "not read",
			},
			want: map[string]string{
				"":    "0x5a @ conf.d/Z.conf:2",
				wwidA: "file @ conf.d/10-a.conf:7",
				wwidB: "0xb:aptpl @ conf.d/30-c.conf:8",
			},
			read: []string{"multipath.conf", "conf.d/10-a.conf", "conf.d/20-b.conf", "conf.d/30-c.conf", "conf.d/Z.conf"},
		},
		{
			// Each file starts at the top level (lab: "missing '}' at end
			// of 10.conf", and 20.conf's multipath entry applies).
			name: "a drop-in left open ends with its file",
			files: map[string]string{
				"multipath.conf": "defaults {\n reservation_key 0x1a2b\n}\n",
				"conf.d/10.conf": "defaults {\n reservation_key 0x64\n",
				"conf.d/20.conf": "multipaths {\n multipath {\n  wwid " + wwidA + "\n  reservation_key 0x65\n }\n}\n",
			},
			want: map[string]string{
				"":    "0x64 @ conf.d/10.conf:2",
				wwidA: "0x65 @ conf.d/20.conf:4",
			},
			read: []string{"multipath.conf", "conf.d/10.conf", "conf.d/20.conf"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tt.files)
			c, err := LoadDir(filepath.Join(root, "multipath.conf"), filepath.Join(root, "conf.d"))
			if err != nil {
				t.Fatalf("LoadDir: %v", err)
			}
			for wwid, want := range tt.want {
				k := c.ReservationKey(wwid)
				got := k.String() + " @ " + strings.TrimPrefix(k.Where, root+"/")
				if k.Source == None {
					got = k.String() + " @ " + k.Where
				}
				if got != want {
					t.Errorf("ReservationKey(%q) = %s, want %s", wwid, got, want)
				}
			}
			var read []string
			for _, f := range c.Files {
				read = append(read, strings.TrimPrefix(f, root+"/"))
			}
			if strings.Join(read, ",") != strings.Join(tt.read, ",") {
				t.Errorf("Files = %q, want %q", read, tt.read)
			}
		})
	}
}

// TestLoadIgnoresConfigDir: multipath-tools 0.9.4 logs "ignoring deprecated
// option "config_dir"" and reads /etc/multipath/conf.d (storage lab).
func TestLoadIgnoresConfigDir(t *testing.T) {
	root := t.TempDir()
	drop := filepath.Join(root, "drop")
	writeFiles(t, root, map[string]string{
		"drop/a.conf":    "defaults {\n reservation_key 0xd\n}\n",
		"multipath.conf": "defaults {\n config_dir " + drop + "\n reservation_key 0x3\n}\n",
	})
	c, err := Load(filepath.Join(root, "multipath.conf"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, f := range c.Files {
		if strings.HasPrefix(f, drop) {
			t.Errorf("Load read %s from config_dir", f)
		}
	}
	if c.Files[0] != filepath.Join(root, "multipath.conf") {
		t.Errorf("Files = %q, want the main file first", c.Files)
	}
	if len(c.Files) == 1 { // no /etc/multipath/conf.d on this machine
		if v, _ := c.ReservationKey(wwidA).FixedKey(); v != 0x3 {
			t.Errorf("key = %#x, want 0x3 from the main file", v)
		}
	}
	if len(c.Warnings) == 0 || !strings.Contains(c.Warnings[0], "multipath.conf:2: config_dir ignored") {
		t.Errorf("Warnings = %q, want one about config_dir", c.Warnings)
	}
	// LoadDir reads the directory an older release would.
	c, err = LoadDir(filepath.Join(root, "multipath.conf"), drop)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if v, _ := c.ReservationKey(wwidA).FixedKey(); v != 0xd || len(c.Files) != 2 {
		t.Errorf("LoadDir: key %#x from %q, want 0xd from drop/a.conf", v, c.Files)
	}
	// A relative directory is ignored, as libmultipath ignores a relative config_dir.
	c, err = LoadDir(filepath.Join(root, "multipath.conf"), "drop")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if len(c.Files) != 1 || len(c.Warnings) != 2 || !strings.Contains(c.Warnings[1], `"drop" is not an absolute path`) {
		t.Errorf("relative dir: Files %q, Warnings %q", c.Files, c.Warnings)
	}
}

func TestLoadErrors(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"good.conf":            "defaults {\n reservation_key 0x1\n}\n",
		"bad.conf":             "defaults {\n reservation_key nope\n}\n",
		"conf.d/10-fine.conf":  "defaults {\n}\n",
		"conf.d/20-break.conf": "multipaths {\n multipath { wwid x\n",
	})
	_, err := LoadDir(filepath.Join(root, "bad.conf"), "")
	var se *SyntaxError
	if !errors.As(err, &se) || se.File != filepath.Join(root, "bad.conf") || se.Line != 2 {
		t.Errorf("bad main file: error %v, want a SyntaxError at bad.conf:2", err)
	}
	_, err = LoadDir(filepath.Join(root, "good.conf"), filepath.Join(root, "conf.d"))
	if !errors.As(err, &se) || se.File != filepath.Join(root, "conf.d/20-break.conf") || se.Line != 2 {
		t.Errorf("bad drop-in: error %v, want a SyntaxError at conf.d/20-break.conf:2", err)
	}
	// A directory where the main file should be cannot be read.
	if _, err := LoadDir(filepath.Join(root, "conf.d"), ""); err == nil {
		t.Errorf("LoadDir(directory) succeeded, want an error")
	}
	// A file where the drop-in directory should be cannot be listed.
	if _, err := LoadDir(filepath.Join(root, "good.conf"), filepath.Join(root, "good.conf")); err == nil {
		t.Errorf("LoadDir with a file as directory succeeded, want an error")
	}
}

func TestLoadDanglingLink(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"conf.d/a.conf": "defaults {\n reservation_key 0xa\n}\n"})
	if err := os.Symlink(filepath.Join(root, "gone"), filepath.Join(root, "conf.d/b.conf")); err != nil {
		t.Skip(err)
	}
	c, err := LoadDir(filepath.Join(root, "multipath.conf"), filepath.Join(root, "conf.d"))
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	if v, ok := c.ReservationKey("").FixedKey(); !ok || v != 0xa {
		t.Errorf("key = %#x %v, want 0xa", v, ok)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "dangling link") {
		t.Errorf("Warnings = %q, want one about the dangling link", c.Warnings)
	}
}

func TestLoadPRKeys(t *testing.T) {
	root := t.TempDir()
	keys, err := LoadPRKeys(filepath.Join(root, "prkeys"))
	if err != nil || len(keys) != 0 {
		t.Fatalf("missing file: %v, %v; want no keys and no error", keys, err)
	}
	writeFiles(t, root, map[string]string{"prkeys": prkeysHeader + "0X0000000000c0ffee " + wwidA + "\n"})
	keys, err = LoadPRKeys(filepath.Join(root, "prkeys"))
	if err != nil {
		t.Fatal(err)
	}
	want := Key{Source: File, Value: 0xc0ffee, APTPL: true, Where: filepath.Join(root, "prkeys") + ":7"}
	if len(keys) != 1 || keys[wwidA] != want {
		t.Errorf("LoadPRKeys = %+v, want %s: %+v", keys, wwidA, want)
	}
	if _, err := LoadPRKeys(root); err == nil {
		t.Errorf("LoadPRKeys(directory) succeeded, want an error")
	}
}
