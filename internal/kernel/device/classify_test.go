package device

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func blk(major, minor uint32) fileStat {
	return fileStat{mode: modeBlk | 0o660, rdev: mkdev(major, minor)}
}
func chr(major, minor uint32) fileStat {
	return fileStat{mode: modeChr | 0o660, rdev: mkdev(major, minor)}
}

// labTree is the storage lab as sysfs shows it with multipath up, plus an NVMe
// controller, LVM, a loop device, /dev/null and SCSI devices with unusual
// identities.
func labTree(t *testing.T) *tree {
	tr := newTree(t)
	naa := mustHex(t, labNAA)
	sda := tr.scsiDisk(0, "sda", 0, "sg0", 0, labWWID, lioVPD83(naa, "lab-disk0"))
	tr.scsiDisk(1, "sdb", 16, "sg1", 1, labWWID, lioVPD83(naa, "lab-disk0"))
	// A kernel without the wwid attribute: the id comes from vpd_pg83.
	tr.scsiDisk(2, "sdc", 32, "sg2", 2, "", lioVPD83(naa, "lab-disk0"))
	// No identity at all.
	tr.scsiDisk(3, "sdd", 48, "sg3", 3, "", nil)
	// An sg node with no sd (an enclosure), T10 vendor ID only.
	t10 := []byte{0x00, 0x83, 0x00, 0x14, 0x02, 0x01, 0x00, 0x10}
	t10 = append(t10, []byte("ACME    enc-0001")...)
	tr.scsiDisk(4, "", 0, "sg4", 4, "", t10)

	// Partition sda1 (8:1) inside sda's directory.
	tr.text(filepath.Join("devices", sda, "block/sda/sda1/partition"), "1")
	tr.text(filepath.Join("devices", sda, "block/sda/sda1/dev"), "8:1")
	tr.devLink("block", "8:1", sda+"/block/sda/sda1")

	// dm-0: the multipath map over sda and sdb.
	tr.text("devices/virtual/block/dm-0/dm/name", "mpatha")
	tr.text("devices/virtual/block/dm-0/dm/uuid", labUUID)
	tr.link("devices/virtual/block/dm-0/slaves/sda", "../../../../"+sda+"/block/sda")
	tr.link("devices/virtual/block/dm-0/slaves/sdb", "../../../../tcm_loop_0/tcm_loop_adapter_1/host1/target1:0:1/1:0:1:0/block/sdb")
	tr.devLink("block", "253:0", "virtual/block/dm-0")
	// dm-1: an LVM volume on sdc.
	tr.text("devices/virtual/block/dm-1/dm/name", "vg0-lv0")
	tr.text("devices/virtual/block/dm-1/dm/uuid", "LVM-Xk3dE0aq5dQ2nHcRc3Tq1t7ZP5wNqH0zqRrT9H3p3y0dVxY5Sg1Fq9zP3EoIxbXh")
	tr.link("devices/virtual/block/dm-1/slaves/sdc", "../../../../tcm_loop_0/tcm_loop_adapter_2/host2/target2:0:1/2:0:1:0/block/sdc")
	tr.devLink("block", "253:1", "virtual/block/dm-1")
	// dm-2: a multipath map over an NVMe-style WWID (uid_attribute = wwid).
	tr.text("devices/virtual/block/dm-2/dm/name", "mpathb")
	tr.text("devices/virtual/block/dm-2/dm/uuid", "mpath-eui.0025388b71b1c2d4")
	tr.dir("devices/virtual/block/dm-2/slaves")
	tr.devLink("block", "253:2", "virtual/block/dm-2")

	// NVMe: nvme0n1 with wwid, its partition and its generic node; nvme1n1
	// with only nguid.
	ctrl := "pci0000:00/0000:00:04.0/nvme/nvme0"
	tr.text("devices/"+ctrl+"/nvme0n1/wwid", "eui.0025388b71b1c2d4")
	tr.text("devices/"+ctrl+"/nvme0n1/nsid", "1")
	tr.devLink("block", "259:0", ctrl+"/nvme0n1")
	tr.blockLink("nvme0n1", ctrl+"/nvme0n1")
	tr.text("devices/"+ctrl+"/nvme0n1/nvme0n1p1/partition", "1")
	tr.devLink("block", "259:1", ctrl+"/nvme0n1/nvme0n1p1")
	tr.text("devices/"+ctrl+"/ng0n1/dev", "240:0")
	tr.devLink("char", "240:0", ctrl+"/ng0n1")
	ctrl1 := "pci0000:00/0000:00:05.0/nvme/nvme1"
	tr.text("devices/"+ctrl1+"/nvme1n1/nguid", "e4d25c13-0000-0000-0026-b7785afe9e50")
	tr.text("devices/"+ctrl1+"/nvme1n1/eui", "00 26 b7 78 5a fe 9e 50")
	tr.text("devices/"+ctrl1+"/nvme1n1/uuid", "00000000-0000-0000-0000-000000000000")
	tr.devLink("block", "259:2", ctrl1+"/nvme1n1")
	// ng9n9: a generic node whose block device is not where the name says.
	tr.text("devices/"+ctrl1+"/ng9n9/dev", "240:9")
	tr.devLink("char", "240:9", ctrl1+"/ng9n9")

	// loop0 and /dev/null: neither is a PR device.
	tr.text("devices/virtual/block/loop0/dev", "7:0")
	tr.devLink("block", "7:0", "virtual/block/loop0")
	tr.text("devices/virtual/mem/null/dev", "1:3")
	tr.devLink("char", "1:3", "virtual/mem/null")
	return tr
}

func TestClassifyLab(t *testing.T) {
	tr := labTree(t)
	const sdaDir = "tcm_loop_0/tcm_loop_adapter_0/host0/target0:0:1/0:0:1:0"
	tests := []struct {
		name string
		st   fileStat
		want Info
	}{
		{"sd with wwid", blk(8, 0), Info{Kind: SCSIDisk, Major: 8, Minor: 0, SysPath: "devices/" + sdaDir + "/block/sda",
			Name: "sda", Disk: "sda", ID: labWWID, LUID: labWWID}},
		{"second path, same LU", blk(8, 16), Info{Kind: SCSIDisk, Major: 8, Minor: 16,
			SysPath: "devices/tcm_loop_0/tcm_loop_adapter_1/host1/target1:0:1/1:0:1:0/block/sdb",
			Name:    "sdb", Disk: "sdb", ID: labWWID, LUID: labWWID}},
		{"sd without wwid: vpd_pg83", blk(8, 32), Info{Kind: SCSIDisk, Major: 8, Minor: 32,
			SysPath: "devices/tcm_loop_0/tcm_loop_adapter_2/host2/target2:0:1/2:0:1:0/block/sdc",
			Name:    "sdc", Disk: "sdc", ID: labWWID, LUID: labWWID}},
		{"sd without any identity", blk(8, 48), Info{Kind: SCSIDisk, Major: 8, Minor: 48,
			SysPath: "devices/tcm_loop_0/tcm_loop_adapter_3/host3/target3:0:1/3:0:1:0/block/sdd",
			Name:    "sdd", Disk: "sdd"}},
		{"sg with its sd", chr(21, 0), Info{Kind: SCSIGeneric, Char: true, Major: 21, Minor: 0,
			SysPath: "devices/" + sdaDir + "/scsi_generic/sg0", Name: "sg0", Disk: "sda", ID: labWWID, LUID: labWWID}},
		{"sg without sd, T10 id", chr(21, 4), Info{Kind: SCSIGeneric, Char: true, Major: 21, Minor: 4,
			SysPath: "devices/tcm_loop_0/tcm_loop_adapter_4/host4/target4:0:1/4:0:1:0/scsi_generic/sg4", Name: "sg4",
			ID: "t10.ACME    enc-0001", LUID: "t10.ACME    enc-0001"}},
		{"partition", blk(8, 1), Info{Kind: Partition, Major: 8, Minor: 1, SysPath: "devices/" + sdaDir + "/block/sda/sda1",
			Name: "sda1", Disk: "sda"}},
		{"multipath map", blk(253, 0), Info{Kind: DMMultipath, Major: 253, Minor: 0, SysPath: "devices/virtual/block/dm-0",
			Name: "dm-0", Disk: "dm-0", DMName: "mpatha", DMUUID: labUUID, Slaves: []string{"sda", "sdb"},
			ID: labUUID, LUID: labWWID}},
		{"lvm", blk(253, 1), Info{Kind: DM, Major: 253, Minor: 1, SysPath: "devices/virtual/block/dm-1",
			Name: "dm-1", Disk: "dm-1", DMName: "vg0-lv0",
			DMUUID: "LVM-Xk3dE0aq5dQ2nHcRc3Tq1t7ZP5wNqH0zqRrT9H3p3y0dVxY5Sg1Fq9zP3EoIxbXh", Slaves: []string{"sdc"},
			ID: "LVM-Xk3dE0aq5dQ2nHcRc3Tq1t7ZP5wNqH0zqRrT9H3p3y0dVxY5Sg1Fq9zP3EoIxbXh"}},
		{"multipath map of nvme", blk(253, 2), Info{Kind: DMMultipath, Major: 253, Minor: 2, SysPath: "devices/virtual/block/dm-2",
			Name: "dm-2", Disk: "dm-2", DMName: "mpathb", DMUUID: "mpath-eui.0025388b71b1c2d4", Slaves: []string{},
			ID: "mpath-eui.0025388b71b1c2d4", LUID: "eui.0025388b71b1c2d4"}},
		{"nvme namespace", blk(259, 0), Info{Kind: NVMeNamespace, Major: 259, Minor: 0,
			SysPath: "devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", Name: "nvme0n1", Disk: "nvme0n1",
			ID: "eui.0025388b71b1c2d4", LUID: "eui.0025388b71b1c2d4"}},
		{"nvme partition", blk(259, 1), Info{Kind: Partition, Major: 259, Minor: 1,
			SysPath: "devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p1", Name: "nvme0n1p1", Disk: "nvme0n1"}},
		{"nvme generic", chr(240, 0), Info{Kind: NVMeNamespace, Char: true, Major: 240, Minor: 0,
			SysPath: "devices/pci0000:00/0000:00:04.0/nvme/nvme0/ng0n1", Name: "ng0n1", Disk: "nvme0n1",
			ID: "eui.0025388b71b1c2d4", LUID: "eui.0025388b71b1c2d4"}},
		{"nvme without wwid: nguid", blk(259, 2), Info{Kind: NVMeNamespace, Major: 259, Minor: 2,
			SysPath: "devices/pci0000:00/0000:00:05.0/nvme/nvme1/nvme1n1", Name: "nvme1n1", Disk: "nvme1n1",
			ID:   "eui.e4d25c13000000000026b7785afe9e50",
			LUID: "eui.e4d25c13000000000026b7785afe9e50"}},
		{"nvme generic, block name elsewhere", chr(240, 9), Info{Kind: NVMeNamespace, Char: true, Major: 240, Minor: 9,
			SysPath: "devices/pci0000:00/0000:00:05.0/nvme/nvme1/ng9n9", Name: "ng9n9"}},
		{"loop", blk(7, 0), Info{Kind: Other, Major: 7, Minor: 0, SysPath: "devices/virtual/block/loop0", Name: "loop0", Disk: "loop0"}},
		{"/dev/null", chr(1, 3), Info{Kind: Other, Char: true, Major: 1, Minor: 3, SysPath: "devices/virtual/mem/null", Name: "null"}},
		{"regular file", fileStat{mode: modeReg | 0o600, dev: mkdev(254, 1), ino: 131077}, Info{Kind: RegularFile,
			Major: 254, Minor: 1, Inode: 131077, ID: "file:254:1:131077", LUID: "file:254:1:131077"}},
		{"regular file with a birth time", fileStat{mode: modeReg | 0o600, dev: mkdev(254, 1), ino: 131077, birth: 1733540000_012345678}, Info{Kind: RegularFile,
			Major: 254, Minor: 1, Inode: 131077, ID: "file:254:1:131077:1733540000.012345678", LUID: "file:254:1:131077:1733540000.012345678"}},
		{"huge device numbers", fileStat{mode: modeReg, dev: mkdev(4095+1, 1<<19), ino: 1}, Info{Kind: RegularFile,
			Major: 4096, Minor: 1 << 19, Inode: 1, ID: "file:4096:524288:1", LUID: "file:4096:524288:1"}},
		{"fifo", fileStat{mode: 0o010000 | 0o600}, Info{Kind: Other}},
		{"socket", fileStat{mode: 0o140000 | 0o600}, Info{Kind: Other}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := classify(tc.st, tr.sys())
			if err != nil {
				t.Fatalf("classify: %v", err)
			}
			want := tc.want
			if want.SysPath != "" {
				want.SysPath = filepath.Join(evalRoot(t, tr.root), want.SysPath)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("classify =\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

// evalRoot resolves the temp dir itself (it may sit behind a symlink).
func evalRoot(t *testing.T, root string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(root)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSameLUEveryView checks the property the emulation relies on: every node
// that reaches the lab LU (two sd paths, their sg nodes, the multipath map, a
// path without wwid) yields one key.
func TestSameLUEveryView(t *testing.T) {
	tr := labTree(t)
	for _, st := range []fileStat{blk(8, 0), blk(8, 16), blk(8, 32), chr(21, 0), chr(21, 1), chr(21, 2), blk(253, 0)} {
		info, err := classify(st, tr.sys())
		if err != nil {
			t.Fatalf("classify %d:%d: %v", devMajor(st.rdev), devMinor(st.rdev), err)
		}
		key, err := info.Key()
		if err != nil || key != labWWID {
			t.Errorf("%s: Key() = %q, %v; want %q", info, key, err, labWWID)
		}
	}
}

func TestKeyWithoutIdentity(t *testing.T) {
	tr := labTree(t)
	for _, st := range []fileStat{blk(8, 48), blk(8, 1), chr(1, 3)} {
		info, err := classify(st, tr.sys())
		if err != nil {
			t.Fatal(err)
		}
		key, err := info.Key()
		if !errors.Is(err, ErrNoIdentity) || key != "" {
			t.Errorf("%s: Key() = %q, %v; want ErrNoIdentity", info, key, err)
		}
		if err != nil && !strings.Contains(err.Error(), info.Name) {
			t.Errorf("error %q does not name %s", err, info.Name)
		}
	}
}

// TestClassifyOddTrees: broken or hostile trees give an error naming the
// device, never a panic and never a wrong kind.
func TestClassifyOddTrees(t *testing.T) {
	tests := []struct {
		name    string
		build   func(tr *tree)
		st      fileStat
		wantErr string
		is      error
	}{
		{"no sysfs at all", func(tr *tree) {}, blk(8, 0), "block device 8:0", fs.ErrNotExist},
		{"unknown char device", func(tr *tree) { tr.dir("dev/char") }, chr(21, 7), "character device 21:7", fs.ErrNotExist},
		{"dangling link", func(tr *tree) { tr.devLink("block", "8:0", "gone/block/sda") }, blk(8, 0), "8:0", fs.ErrNotExist},
		{"link loop", func(tr *tree) {
			tr.link("dev/block/8:0", "8:0")
		}, blk(8, 0), "8:0", nil},
		{"wwid is a directory", func(tr *tree) {
			tr.scsiDisk(0, "sda", 0, "", 0, "", nil)
			tr.dir("devices/tcm_loop_0/tcm_loop_adapter_0/host0/target0:0:1/0:0:1:0/wwid")
		}, blk(8, 0), "(sda)", nil},
		{"vpd_pg83 malformed", func(tr *tree) {
			tr.scsiDisk(0, "sda", 0, "", 0, "", []byte{0, 0x83, 0, 9, 1, 3, 0, 16, 0x60})
		}, blk(8, 0), "vpd_pg83", ErrBadVPD},
		{"dm is a file", func(tr *tree) {
			tr.text("devices/virtual/block/dm-0/dm", "garbage")
			tr.devLink("block", "253:0", "virtual/block/dm-0")
		}, blk(253, 0), "(dm-0)", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTree(t)
			tc.build(tr)
			_, err := classify(tc.st, tr.sys())
			if err == nil {
				t.Fatal("classify succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q does not contain %q", err, tc.wantErr)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	want := map[Kind]string{Other: "other", RegularFile: "file", SCSIDisk: "scsi-disk", SCSIGeneric: "scsi-generic",
		DMMultipath: "dm-multipath", DM: "dm", NVMeNamespace: "nvme", Partition: "partition", Kind(42): "kind(42)"}
	for k, s := range want {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}

func TestDevNumbers(t *testing.T) {
	for _, c := range []struct{ maj, min uint32 }{{0, 0}, {8, 0}, {253, 255}, {259, 256}, {4095, 1<<20 - 1}, {4096, 1 << 19}, {1<<32 - 1, 1<<32 - 1}} {
		d := mkdev(c.maj, c.min)
		if devMajor(d) != c.maj || devMinor(d) != c.min {
			t.Errorf("dev %d:%d -> %#x -> %d:%d", c.maj, c.min, d, devMajor(d), devMinor(d))
		}
	}
}
