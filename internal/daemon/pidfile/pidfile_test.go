package pidfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// childEnv makes the re-executed test binary act as a second process that tries
// to take the pid file named by the variable's value.
const childEnv = "PIDFILE_TEST_CHILD_PATH"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		p, err := Create(path)
		if err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(3)
		}
		p.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runChild tries Create(path) in another process; it returns the exit code and stderr.
func runChild(t *testing.T, path string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stderr.String()
	}
	if err != nil {
		t.Fatalf("run child: %v", err)
	}
	return 0, stderr.String()
}

func TestCreateContentModeAndLock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prhelper.pid")
	p, err := Create(path)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer p.Close()

	// Check the lock before reading the file: closing any descriptor of the
	// file drops this process's POSIX locks on it (fcntl(2)), the read below included.
	code, stderr := runChild(t, path)
	if code != 3 || !strings.Contains(stderr, "cannot lock pid file "+path+": held by another process") {
		t.Errorf("second process: exit %d, stderr %q; want exit 3 and the held-by-another-process error", code, stderr)
	}

	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(os.Getpid()) + "\n"; string(got) != want {
		t.Errorf("content = %q, want %q", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v, want 0600", st.Mode().Perm())
	}

	if err := p.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("after Remove, stat err = %v, want not-exist", err)
	}
	if code, stderr := runChild(t, path); code != 0 {
		t.Errorf("after Remove, second process: exit %d, stderr %q; want success", code, stderr)
	}
}

func TestCreateTruncatesStaleContent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prhelper.pid")
	if err := os.WriteFile(path, []byte("999999999999999999999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Create(path)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer p.Remove()
	got, _ := os.ReadFile(path)
	if want := strconv.Itoa(os.Getpid()) + "\n"; string(got) != want {
		t.Errorf("content = %q, want %q", got, want)
	}
}

func TestCloseReleasesLockKeepsFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prhelper.pid")
	p, err := Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("Close removed the file: %v", err)
	}
	if code, stderr := runChild(t, path); code != 0 {
		t.Errorf("after Close, second process: exit %d, stderr %q", code, stderr)
	}
}

// TestCreateRetriesWhenReplaced plays the racing process of qemu_write_pidfile's
// comment: the file is replaced between our lock and our check, so the lock is on
// an orphaned inode and Create must start over on the new file.
func TestCreateRetriesWhenReplaced(t *testing.T) {
	tests := []struct {
		name    string
		race    func(path string) error
		races   int
		wantErr string
	}{
		{"replaced once", func(path string) error {
			os.Remove(path)
			return os.WriteFile(path, nil, 0o600)
		}, 1, ""},
		{"removed once", func(path string) error { return os.Remove(path) }, 1, ""},
		{"replaced forever", func(path string) error {
			os.Remove(path)
			return os.WriteFile(path, nil, 0o600)
		}, 1 << 30, "replaced by another process"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "prhelper.pid")
			calls := 0
			p, err := create(path, func() {
				calls++
				if calls <= tc.races {
					if err := tc.race(path); err != nil {
						t.Errorf("race: %v", err)
					}
				}
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			defer p.Close()
			if calls != tc.races+1 {
				t.Errorf("lock attempts = %d, want %d", calls, tc.races+1)
			}
			// The surviving lock must be on the file the path names now.
			st1, _ := os.Stat(path)
			st2, _ := p.f.Stat()
			if !os.SameFile(st1, st2) {
				t.Errorf("locked file %v is not the file at the path %v", st2, st1)
			}
			if code, stderr := runChild(t, path); code != 3 {
				t.Errorf("second process got the lock: exit %d, stderr %q", code, stderr)
			}
		})
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Create(filepath.Join(dir, "missing", "x.pid")); err == nil || !strings.Contains(err.Error(), "open pid file") {
		t.Errorf("missing dir: err = %v, want open pid file error", err)
	}
	if _, err := Create(dir); err == nil {
		t.Errorf("directory: err = nil, want error")
	}
	var p *File
	if err := p.Remove(); err != nil {
		t.Errorf("nil Remove: %v", err)
	}
}
