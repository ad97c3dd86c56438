package device

import (
	"testing"
)

// TestPresent: the lab's LU, seen as sda, sdb and their sg nodes, is present
// under its wwid (once, named by the first device), and a device without an
// identity is left out.
func TestPresent(t *testing.T) {
	tr := newTree(t)
	tr.scsiDisk(0, "sda", 0, "sg0", 0, labWWID, nil)
	tr.scsiDisk(1, "sdb", 16, "sg1", 1, labWWID, nil)
	tr.scsiDisk(2, "sdc", 32, "", 0, "naa.600140511110000000000000000000000", nil)
	tr.dir("dev/block/not-a-number")
	got, err := Present(tr.sys())
	if err != nil {
		t.Fatal(err)
	}
	if got[labWWID] != "sda" || got["naa.600140511110000000000000000000000"] != "sdc" || len(got) != 2 {
		t.Fatalf("Present = %v", got)
	}
	if m, n := devMajor(mkdev(259, 70000)), devMinor(mkdev(259, 70000)); m != 259 || n != 70000 {
		t.Fatalf("mkdev round trip: %d:%d", m, n)
	}
}
