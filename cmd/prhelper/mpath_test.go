package main

import (
	"testing"
	"time"

	"github.com/prhelper/prhelper/device"
)

// TestClassifierRefinesDMOnce: only device-mapper devices are refined, and a
// device's answer is reused within the TTL, then asked for again.
func TestClassifierRefinesDMOnce(t *testing.T) {
	infos := map[int]device.Info{
		3: {Kind: device.DM, Major: 254, Minor: 1},
		4: {Kind: device.SCSIDisk, Major: 8, Minor: 0},
		5: {Kind: device.DM, Major: 254, Minor: 2},
	}
	calls := map[uint32]int{}
	refine := func(i device.Info) device.Info {
		calls[i.Minor]++
		if i.Minor == 1 {
			i.Kind = device.DMMultipath
		}
		return i
	}
	c := classifier(func(fd int) (device.Info, error) { return infos[fd], nil }, refine, time.Hour)
	for range 3 {
		for fd, want := range map[int]device.Kind{3: device.DMMultipath, 4: device.SCSIDisk, 5: device.DM} {
			if i, err := c(fd); err != nil || i.Kind != want {
				t.Fatalf("fd %d: %v %v, want %v", fd, i.Kind, err, want)
			}
		}
	}
	if calls[1] != 1 || calls[2] != 1 || calls[0] != 0 {
		t.Fatalf("refine calls %v, want once per dm device", calls)
	}
	c = classifier(func(fd int) (device.Info, error) { return infos[fd], nil }, refine, 0)
	c(3)
	c(3)
	if calls[1] != 3 {
		t.Fatalf("with no TTL refine ran %d times in all, want 3", calls[1])
	}
}
