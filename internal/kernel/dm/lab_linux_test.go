//go:build lab

package dm_test

// This test runs inside the storage lab VM (test/lab, Linux 6.1), driven by
// testdata/lab.sh: DM_LAB_MPATH is a dm-multipath map (multipathd) over two
// tcm_loop nexuses of one LIO LU, DM_LAB_OTHER a third nexus outside the map,
// DM_LAB_DMSETUP_TABLE and DM_LAB_DMSETUP_STATUS what `dmsetup table` and
// `dmsetup status` (libdevmapper, an independent reader of the same ioctl)
// printed for the map. It checks the ioctl codec against the real kernel, and
// that a path taken offline shows up failed in MultipathPaths and PathState.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/dm"
)

func labDev(t *testing.T, env string) dm.Dev {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Skipf("%s not set: run through testdata/lab.sh in the lab VM", env)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	d := dm.DevFromRdev(st.Rdev)
	t.Logf("%s: st_rdev %#x = %s, dm dev %#x", p, st.Rdev, d, d.Encode())
	return d
}

// dmsetupLine is how dmsetup prints one target: start, length, type, params.
func dmsetupLine(tg dm.Target) string {
	return strings.TrimSpace(fmt.Sprintf("%d %d %s %s", tg.Start, tg.Length, tg.Type, tg.Params))
}

func TestLab(t *testing.T) {
	mp := labDev(t, "DM_LAB_MPATH")
	other := labDev(t, "DM_LAB_OTHER")
	c, err := dm.Open(dm.ControlPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Version()
	if err != nil || v[0] != 4 {
		t.Fatalf("DM_VERSION = %v, %v", v, err)
	}
	t.Logf("dm ioctl interface %d.%d.%d", v[0], v[1], v[2])

	tt, err := c.TableStatus(mp, true)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.TableStatus(mp, false)
	if err != nil {
		t.Fatal(err)
	}
	if !dm.IsMultipath(tt) || !dm.IsMultipath(st) || len(tt) != 1 || len(st) != 1 {
		t.Fatalf("table %+v, status %+v: want one multipath target", tt, st)
	}
	t.Logf("table:  %q", tt[0].Params)
	t.Logf("status: %q", st[0].Params)
	for _, c := range []struct {
		env string
		got dm.Target
	}{{"DM_LAB_DMSETUP_TABLE", tt[0]}, {"DM_LAB_DMSETUP_STATUS", st[0]}} {
		if want := strings.TrimSpace(os.Getenv(c.env)); dmsetupLine(c.got) != want {
			t.Errorf("%s:\n got  %q\n want %q", c.env, dmsetupLine(c.got), want)
		}
	}
	if _, err := dm.ParseMultipathTable(tt[0].Params); err != nil {
		t.Errorf("table: %v", err)
	}
	if _, err := dm.ParseMultipathStatus(st[0].Params); err != nil {
		t.Errorf("status: %v", err)
	}

	if _, err := c.TableStatus(other, false); !errors.Is(err, unix.ENXIO) {
		t.Errorf("TableStatus(%s, a plain sd) = %v, want ENXIO", other, err)
	}
	if _, err := c.MultipathPaths(other); !errors.Is(err, unix.ENXIO) {
		t.Errorf("MultipathPaths(%s) = %v, want ENXIO", other, err)
	}

	paths, err := c.MultipathPaths(mp)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("paths: %+v", paths)
	sys := device.Sysfs{}
	info, err := device.Classify(mustOpen(t, os.Getenv("DM_LAB_MPATH")), sys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		if !p.Active || p.Failures != 0 {
			t.Errorf("path %+v: want active, no failures", p)
		}
		name, err := device.PathName(sys, p.Dev)
		if err != nil {
			t.Fatal(err)
		}
		state, err := device.PathState(sys, name)
		if err != nil || state != "running" {
			t.Errorf("PathState(%s) = %q, %v, want running", name, state, err)
		}
		names = append(names, name)
	}
	slices.Sort(names)
	if !slices.Equal(names, info.Slaves) || len(names) != 2 {
		t.Errorf("path names %v, sysfs slaves of %s %v", names, info.Name, info.Slaves)
	}

	// Take the first path's SCSI device offline: I/O to it fails, multipathd's
	// checker fails the path, and the kernel's status says so.
	victim, err := device.PathName(sys, paths[0].Dev)
	if err != nil {
		t.Fatal(err)
	}
	stateFile := filepath.Join("/sys/block", victim, "device", "state")
	if err := os.WriteFile(stateFile, []byte("offline\n"), 0); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(stateFile, []byte("running\n"), 0)
	if s, err := device.PathState(sys, victim); err != nil || s != "offline" {
		t.Errorf("PathState(%s) = %q, %v, want offline", victim, s, err)
	}
	failed := waitPath(t, c, mp, paths[0].Dev, false)
	t.Logf("after offline: table %q", mustParams(t, c, mp, true))
	t.Logf("after offline: status %q", mustParams(t, c, mp, false))
	if failed.Failures < 1 {
		t.Errorf("failed path %+v: fail count %d, want >= 1", failed, failed.Failures)
	}
	if err := os.WriteFile(stateFile, []byte("running\n"), 0); err != nil {
		t.Fatal(err)
	}
	back := waitPath(t, c, mp, paths[0].Dev, true)
	t.Logf("after running: status %q; path %+v", mustParams(t, c, mp, false), back)
}

// waitPath polls MultipathPaths until dev's Active is want (60 s).
func waitPath(t *testing.T, c *dm.Control, mp, dev dm.Dev, want bool) dm.Path {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		paths, err := c.MultipathPaths(mp)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if p.Dev == dev && p.Active == want {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("path %s never became active=%v: %+v", dev, want, paths)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func mustParams(t *testing.T, c *dm.Control, mp dm.Dev, table bool) string {
	t.Helper()
	ts, err := c.TableStatus(mp, table)
	if err != nil || len(ts) != 1 {
		t.Fatalf("TableStatus: %v, %v", ts, err)
	}
	return ts[0].Params
}

func mustOpen(t *testing.T, p string) int {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
