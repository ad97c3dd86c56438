package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMountPoints: mountinfo's device numbers and escaped mount points
// (proc(5)), as purge reads them to find a disk image's filesystem.
func TestMountPoints(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mountinfo")
	os.WriteFile(p, []byte(`22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
35 22 0:45 / /var/lib/my\040images rw shared:20 - tmpfs tmpfs rw
36 22 0:45 /sub /mnt/again rw - tmpfs tmpfs rw
bad line
`), 0o600)
	m, err := mountPoints(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := m[[2]uint32{254, 0}]; len(got) != 1 || got[0] != "/" {
		t.Errorf("254:0 -> %q", got)
	}
	if got := m[[2]uint32{0, 45}]; len(got) != 2 || got[0] != "/var/lib/my images" || got[1] != "/mnt/again" {
		t.Errorf("0:45 -> %q", got)
	}
}

// TestVerdictByName: which LU names purge can judge, and how.
func TestVerdictByName(t *testing.T) {
	p := &presence{devices: map[string]string{"naa.6001405abd": "sda"}, inodes: map[[2]uint32]*inodeIndex{},
		mounts: map[[2]uint32][]string{}}
	for _, c := range []struct{ name, verdict string }{
		{"naa.6001405abd", verdictPresent},
		{"naa.60014050000", verdictGone},
		{"mpath-3600140511", verdictGone},
		{"shared-disk-1", verdictUnknown},
		{"part1-mpath-3600140511", verdictGone},
		{"partner-disk", verdictUnknown}, // an id=, not a partition's uuid
		{"file:7:7:12", verdictUnknown},  // filesystem 7:7 not mounted
		{"file:7:7", verdictUnknown},     // not a file identity: an id= name
	} {
		if v, why := p.check(c.name); v != c.verdict {
			t.Errorf("%s: %s (%s), want %s", c.name, v, why, c.verdict)
		}
	}
}

// TestReusedInodeIsStale: an LU named with a birth time whose inode now holds
// a file born at another time (a reused inode) is gone; the file's own name is
// present.
func TestReusedInodeIsStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "disk.img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	id, err := fileIDOf(path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Split(id, ":")
	if len(f) != 5 {
		t.Skipf("the filesystem of %s reports no birth time (LU name %s)", dir, id)
	}
	p := &presence{search: []string{dir}, inodes: map[[2]uint32]*inodeIndex{}, mounts: map[[2]uint32][]string{}}
	if v, why := p.check(id); v != verdictPresent {
		t.Errorf("%s: %s (%s), want %s", id, v, why, verdictPresent)
	}
	older := strings.Join(append(f[:4:4], "1000000000.000000001"), ":")
	if v, why := p.check(older); v != verdictGone {
		t.Errorf("%s: %s (%s), want %s", older, v, why, verdictGone)
	}
}
