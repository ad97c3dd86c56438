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
	refined := 0
	c := NewCache(Sysfs{}, 2*time.Second, func() time.Time { return now }, func(i Info) Info {
		refined++
		i.Name = "refined"
		return i
	})
	ia, err := c.Classify(int(a.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	ib, _ := c.Classify(int(b.Fd()))
	if ia.ID == "" || ia.ID == ib.ID || ia.Kind != RegularFile || ia.Name != "refined" {
		t.Fatalf("a %+v b %+v", ia, ib)
	}
	// A second descriptor of the same file hits the entry.
	a2, _ := os.Open(a.Name())
	defer a2.Close()
	if got, _ := c.Classify(int(a2.Fd())); got.ID != ia.ID || got.Name != "refined" || len(c.entries) != 2 || refined != 2 {
		t.Fatalf("same file via another fd: %+v, %d entries, refined %d times", got, len(c.entries), refined)
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
