package device

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestClassifyRealFile classifies a regular file through a real fd and checks
// the id against an independent stat.
func TestClassifyRealFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	info, err := Classify(int(f.Fd()), Sysfs{Root: "/nonexistent"}) // files need no sysfs
	if err != nil {
		t.Fatalf("Classify: %v", err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_BTIME, &stx); err != nil {
		t.Fatal(err)
	}
	var birth int64
	if stx.Mask&unix.STATX_BTIME != 0 {
		birth = stx.Btime.Sec*1e9 + int64(stx.Btime.Nsec)
	}
	want := FileID(devMajor(uint64(st.Dev)), devMinor(uint64(st.Dev)), st.Ino, birth)
	if info.Kind != RegularFile || info.ID != want || info.Inode != st.Ino {
		t.Errorf("Classify = %+v, want file with ID %s", info, want)
	}
}

// TestClassifyDevNull classifies /dev/null against the machine's /sys.
func TestClassifyDevNull(t *testing.T) {
	if _, err := os.Stat("/sys/dev/char/1:3"); err != nil {
		t.Skipf("no sysfs here: %v", err)
	}
	f, err := os.Open("/dev/null")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	info, err := Classify(int(f.Fd()), Sysfs{})
	if err != nil {
		t.Fatalf("Classify /dev/null: %v", err)
	}
	if info.Kind != Other || !info.Char || info.Major != 1 || info.Minor != 3 || info.Name != "null" || info.ID != "" {
		t.Errorf("Classify /dev/null = %+v", info)
	}
}

func TestClassifyBadFD(t *testing.T) {
	_, err := Classify(-1, Sysfs{})
	if err == nil || err.Error() != "statx fd -1: bad file descriptor" {
		t.Errorf("Classify(-1) error = %v", err)
	}
}
