package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/internal/store/storetest"
)

// TestRemovedUnderRunningStore is issue 12 item 5: the database file removed
// under a running helper kept acknowledging writes into the unlinked file (lost
// at restart, invisible to a second helper). The store notices that its path
// no longer names the file it opened and refuses every Update and Get with
// store.ErrGone; a new file at the path does not make it whole again.
func TestRemovedUnderRunningStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s := openT(t, path, sqlite.Options{})
	ctx := context.Background()
	if err := s.Update(ctx, "lu", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		os.Remove(f)
	}
	if err := s.Update(ctx, "lu", storetest.Increment); !errors.Is(err, store.ErrGone) {
		t.Fatalf("Update after the file was removed: %v, want ErrGone", err)
	}
	if _, err := s.Get(ctx, "lu"); !errors.Is(err, store.ErrGone) {
		t.Fatalf("Get after the file was removed: %v, want ErrGone", err)
	}
	other := openT(t, path, sqlite.Options{}) // a second helper makes a new file
	if err := other.Update(ctx, "lu", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "lu", storetest.Increment); !errors.Is(err, store.ErrGone) {
		t.Fatalf("Update once another file is at the path: %v, want ErrGone", err)
	}
	if v, _ := other.Get(ctx, "lu"); string(v) != "1" {
		t.Fatalf("new file's lu = %q, want 1 (nothing from the old store)", v)
	}
}

// TestFull: SQLITE_FULL (here from the connection's max_page_count, as a full
// disk gives it) is store.ErrFull, which the emulation answers as transient.
func TestFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s := openT(t, path, sqlite.Options{})
	ctx := context.Background()
	if err := s.Update(ctx, "a", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	if err := s.ExecWriter("PRAGMA max_page_count = 1"); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte{1}, 64<<10)
	err := s.Update(ctx, "b", func([]byte) ([]byte, bool, error) { return big, true, nil })
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("Update past max_page_count: %v, want ErrFull", err)
	}
}

// TestReadOnlyAtStart is issue 12 item 5: a database made immutable (chattr
// +i) was opened read-only by SQLite, the helper said "ready", and every PR OUT
// failed. Open now refuses it with store.ErrReadOnly and says so.
func TestReadOnlyAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pr.db")
	s, err := sqlite.Open(path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(context.Background(), "lu", storetest.Increment); err != nil {
		t.Fatal(err)
	}
	s.Close()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	flags, err := unix.IoctlGetUint32(int(f.Fd()), unix.FS_IOC_GETFLAGS)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags|fsImmutableFL))
	}
	if err != nil {
		t.Skipf("cannot make the file immutable here (needs CAP_LINUX_IMMUTABLE and ext4/xfs/btrfs): %v", err)
	}
	t.Cleanup(func() {
		if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.FS_IOC_SETFLAGS, int(flags)); err != nil {
			t.Errorf("chattr -i: %v", err)
		}
		f.Close()
	})
	s, err = sqlite.Open(path, sqlite.Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of an immutable database succeeded; want a refusal at start")
	}
	if !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("Open of an immutable database: %v, want ErrReadOnly", err)
	}
}

// fsImmutableFL is FS_IMMUTABLE_FL of <linux/fs.h>, the flag chattr +i sets.
const fsImmutableFL = 0x00000010
