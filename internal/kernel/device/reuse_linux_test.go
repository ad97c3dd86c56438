package device

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReusedInodeIsAnotherLU is issue 12 item 4: the LU of a regular file was
// named by device and inode, so a new image that got a deleted one's inode
// inherited its registrations and reservation. Deleting an image and creating
// another until the filesystem hands out the same inode number (ext4 does at
// once, in the same directory), the new file must get another identity, through
// Classify and through a Cache that saw the old file.
func TestReusedInodeIsAnotherLU(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "disk.img")
	cache := NewCache(Sysfs{Root: "/nonexistent"}, time.Hour, nil, "")
	classifyPath := func() (Info, Info) {
		f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		a, err := Classify(int(f.Fd()), Sysfs{Root: "/nonexistent"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := cache.Classify(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return a, b
	}
	old, oldCached := classifyPath()
	for try := 0; try < 50; try++ {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
		// btime has a clock tick's resolution on some filesystems: let it move.
		time.Sleep(20 * time.Millisecond)
		cur, curCached := classifyPath()
		if cur.Inode != old.Inode {
			continue
		}
		t.Logf("inode %d reused after %d deletions: old %s, new %s", cur.Inode, try+1, old.LUID, cur.LUID)
		if cur.LUID == old.LUID || curCached.LUID == oldCached.LUID {
			t.Fatalf("a new file with a deleted one's inode has the same LU identity %s (cache %s)", cur.LUID, curCached.LUID)
		}
		return
	}
	var sfs unix.Statfs_t
	unix.Statfs(dir, &sfs)
	t.Skipf("the filesystem of %s (type %#x) did not reuse inode %d in 50 tries", dir, sfs.Type, old.Inode)
}
