package device

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/kernel/dm"
)

// fakeBlockSysfs builds the parts of sysfs PathName and PathState read, laid out
// as a 6.1 kernel does for a SCSI disk behind tcm_loop:
// dev/block/8:16 -> ../../devices/.../block/sdb, block/sdb -> the same
// directory, whose device/ holds state.
func fakeBlockSysfs(t *testing.T) Sysfs {
	t.Helper()
	root := t.TempDir()
	mk := func(disk, hctl, state string, maj, min int) {
		dir := filepath.Join(root, "devices/tcm_loop_0/tcm_loop_adapter_0/host2/target2:0:1", hctl)
		bdir := filepath.Join(dir, "block", disk)
		if err := os.MkdirAll(bdir, 0o755); err != nil {
			t.Fatal(err)
		}
		if state != "" {
			if err := os.WriteFile(filepath.Join(dir, "state"), []byte(state+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink("../../../"+hctl, filepath.Join(bdir, "device")); err != nil {
			t.Fatal(err)
		}
		for _, l := range []struct{ dir, name, target string }{
			{"dev/block", strings.Join([]string{itoa(maj), itoa(min)}, ":"), "../../devices/tcm_loop_0/tcm_loop_adapter_0/host2/target2:0:1/" + hctl + "/block/" + disk},
			{"block", disk, "../devices/tcm_loop_0/tcm_loop_adapter_0/host2/target2:0:1/" + hctl + "/block/" + disk},
		} {
			if err := os.MkdirAll(filepath.Join(root, l.dir), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(l.target, filepath.Join(root, l.dir, l.name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("sdb", "2:0:1:0", "running", 8, 16)
	mk("sdc", "2:0:1:1", "transport-offline", 8, 32)
	mk("vda", "virtio0", "", 254, 0)
	return Sysfs{Root: root}
}

func TestPathNameAndState(t *testing.T) {
	sys := fakeBlockSysfs(t)
	for _, c := range []struct {
		dev         dm.Dev
		name, state string
	}{
		{dm.Dev{Major: 8, Minor: 16}, "sdb", "running"},
		{dm.Dev{Major: 8, Minor: 32}, "sdc", "transport-offline"},
	} {
		name, err := PathName(sys, c.dev)
		if err != nil || name != c.name {
			t.Fatalf("PathName(%s) = %q, %v, want %q", c.dev, name, err, c.name)
		}
		state, err := PathState(sys, name)
		if err != nil || state != c.state {
			t.Fatalf("PathState(%s) = %q, %v, want %q", name, state, err, c.state)
		}
	}
	if name, err := PathName(sys, dm.Dev{Major: 8, Minor: 48}); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PathName(8:48) = %q, %v, want not-exist", name, err)
	}
	if state, err := PathState(sys, "vda"); err == nil || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("PathState(vda) = %q, %v, want not-exist", state, err)
	}
	for _, bad := range []string{"", ".", "..", "../sdb", "sd\x00b"} {
		if state, err := PathState(sys, bad); err == nil {
			t.Errorf("PathState(%q) = %q, want an error", bad, state)
		}
	}
}
