package device

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	dir := t.TempDir()
	a, _ := os.Create(filepath.Join(dir, "a.img"))
	b, _ := os.Create(filepath.Join(dir, "b.img"))
	defer a.Close()
	defer b.Close()
	now := time.Unix(1000, 0)
	c := NewCache(Sysfs{}, 2*time.Second, func() time.Time { return now }, "")
	ia, err := c.Classify(int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := c.Classify(int(b.Fd()))
	if ia.ID == "" || ia.ID == ib.ID || ia.Kind != RegularFile {
		t.Fatalf("a %+v b %+v", ia, ib)
	}
	// A second descriptor of the same file hits the entry (marked here, so
	// that a fresh classification would show).
	for k, e := range c.entries {
		e.info.Name = "cached"
		c.entries[k] = e
	}
	a2, _ := os.Open(a.Name())
	defer a2.Close()
	if got, _ := c.Classify(int(a2.Fd())); got.ID != ia.ID || got.Name != "cached" || len(c.entries) != 2 {
		t.Fatalf("same file via another fd: %+v, %d entries", got, len(c.entries))
	}
	// A file replaced at the same path is another inode: another entry.
	os.Remove(a.Name())
	a3, _ := os.Create(a.Name())
	defer a3.Close()
	if got, _ := c.Classify(int(a3.Fd())); got.ID == ia.ID {
		t.Fatalf("replaced file kept the old identity %q", got.ID)
	}
	// An entry is used until its TTL ends, then classified anew.
	expiry := func() time.Time {
		for _, e := range c.entries {
			if e.info.ID == ib.ID {
				return e.expires
			}
		}
		t.Fatal("b not cached")
		return time.Time{}
	}
	first := expiry()
	now = now.Add(time.Second)
	c.Classify(int(b.Fd()))
	if expiry() != first {
		t.Fatal("entry refreshed within its TTL")
	}
	now = now.Add(2 * time.Second)
	c.Classify(int(b.Fd()))
	if !expiry().After(first) {
		t.Fatal("expired entry not classified anew")
	}
	if _, err := c.Classify(-1); err == nil {
		t.Fatal("fd -1 classified")
	}
}

// TestMultipathByTable: only a plain DM device is looked at, and a control
// node that cannot be opened (no CAP_SYS_ADMIN, no device-mapper) leaves it a
// plain DM device. The positive case needs a real map: the lab's mpath test
// serves a map whose uuid is not "mpath-…" through the mpath backend.
func TestMultipathByTable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "control")
	for _, info := range []Info{{Kind: DM, Major: 253}, {Kind: SCSIDisk, Major: 8}, {Kind: RegularFile}} {
		if got := MultipathByTable(info, missing); got.Kind != info.Kind {
			t.Errorf("%v with no control node became %v", info.Kind, got.Kind)
		}
	}
}
