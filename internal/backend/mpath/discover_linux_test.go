package mpath

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/kernel/device"
)

// TestDiscoverer reads a fake sysfs tree: dm-0 over sdb (running), sdc
// (offline) and sdd (running, but failed by dm-multipath).
func TestDiscoverer(t *testing.T) {
	root := t.TempDir()
	for dev, state := range map[string]string{"sdb": "running\n", "sdc": "offline\n", "sdd": "running\n"} {
		must(t, os.MkdirAll(filepath.Join(root, "block", "dm-0", "slaves", dev), 0o755))
		must(t, os.MkdirAll(filepath.Join(root, "block", dev, "device"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "block", dev, "device", "state"), []byte(state), 0o644))
	}
	mpathInfo := device.Info{Kind: device.DMMultipath, Name: "dm-0", DMName: "mpatha", DMUUID: "mpath-36001405abc"}
	info := mpathInfo
	d := &Discoverer{SysfsRoot: root,
		Classify: func(int) (device.Info, error) { return info, nil },
		Failed:   func(device.Info) (map[string]bool, error) { return map[string]bool{"sdd": true}, nil }}
	m, err := d.Discover(3)
	if err != nil {
		t.Fatal(err)
	}
	want := Map{Name: "mpatha", WWID: "36001405abc", Paths: []Path{
		{Dev: "sdb", Usable: true, State: "usable", Reachable: true},
		{Dev: "sdc", Why: "(SCSI device offline)", State: "scsi_offline"},
		{Dev: "sdd", Why: "(failed by dm-multipath)", State: "dm_failed", Reachable: true},
	}}
	if m.Name != want.Name || m.WWID != want.WWID || len(m.Paths) != 3 {
		t.Fatalf("%+v", m)
	}
	for i := range want.Paths {
		if m.Paths[i] != want.Paths[i] {
			t.Errorf("path %d: %+v, want %+v", i, m.Paths[i], want.Paths[i])
		}
	}
	// Without device-mapper's view, sysfs decides.
	d.Failed = func(device.Info) (map[string]bool, error) { return nil, errors.New("EPERM") }
	if m, err := d.Discover(3); err != nil || !m.Paths[2].Usable {
		t.Fatalf("%+v %v", m, err)
	}
	// Not a map, or a map without paths: errors.
	info = device.Info{Kind: device.SCSIDisk, Name: "sdb"}
	if _, err := d.Discover(3); err == nil {
		t.Fatal("an sd accepted as a map")
	}
	info = mpathInfo
	info.Name = "dm-9"
	if _, err := d.Discover(3); err == nil {
		t.Fatal("a map without slaves/ accepted")
	}

	// With a TTL, a map is looked at again only once the TTL has passed.
	info = mpathInfo
	now := time.Unix(1000, 0)
	d.TTL, d.Now, d.Failed = time.Second, func() time.Time { return now }, nil
	if m, err := d.Discover(3); err != nil || len(m.Paths) != 3 {
		t.Fatalf("%+v %v", m, err)
	}
	must(t, os.MkdirAll(filepath.Join(root, "block", "dm-0", "slaves", "sde"), 0o755))
	now = now.Add(500 * time.Millisecond)
	if m, _ := d.Discover(3); len(m.Paths) != 3 {
		t.Fatalf("looked again within the TTL: %+v", m)
	}
	now = now.Add(600 * time.Millisecond)
	if m, _ := d.Discover(3); len(m.Paths) != 4 || m.Paths[3].Usable {
		t.Fatalf("not looked again after the TTL: %+v", m)
	}
	// What metrics read: the paths of the cached map by state (sde has no
	// SCSI device state: not a SCSI path).
	got := d.PathStates()
	if len(got) != 3 || got["usable"] != 2 || got["scsi_offline"] != 1 || got["not_scsi"] != 1 {
		t.Fatalf("PathStates = %v", got)
	}
	// Look reads sysfs within the TTL too (sdc back), and Discover then
	// answers with what it read.
	must(t, os.WriteFile(filepath.Join(root, "block", "sdc", "device", "state"), []byte("running\n"), 0o644))
	now = now.Add(100 * time.Millisecond)
	if m, _ := d.Discover(3); m.Paths[1].Usable {
		t.Fatalf("looked again within the TTL: %+v", m)
	}
	if m, err := d.Look(3); err != nil || !m.Paths[1].Usable {
		t.Fatalf("Look did not read sysfs: %+v %v", m, err)
	}
	if m, _ := d.Discover(3); !m.Paths[1].Usable {
		t.Fatalf("Discover after Look: %+v", m)
	}
	info = device.Info{Kind: device.SCSIDisk, Name: "sdb"}
	if _, err := d.Look(3); err == nil {
		t.Fatal("Look accepted an sd as a map")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
