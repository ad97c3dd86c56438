package device

import (
	"os"
	"path/filepath"
	"testing"
)

// tree builds a fake sysfs under t.TempDir(). Links are relative, as the
// kernel's are, so they resolve inside the fake root.
type tree struct {
	t    *testing.T
	root string
}

func newTree(t *testing.T) *tree {
	t.Helper()
	return &tree{t: t, root: t.TempDir()}
}

func (tr *tree) sys() Sysfs { return Sysfs{Root: tr.root} }

func (tr *tree) file(path string, content []byte) {
	tr.t.Helper()
	p := filepath.Join(tr.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		tr.t.Fatal(err)
	}
}

func (tr *tree) text(path, content string) { tr.file(path, []byte(content+"\n")) }

func (tr *tree) dir(path string) {
	tr.t.Helper()
	if err := os.MkdirAll(filepath.Join(tr.root, path), 0o755); err != nil {
		tr.t.Fatal(err)
	}
}

// link makes path a symlink to target, which is relative to path's directory.
func (tr *tree) link(path, target string) {
	tr.t.Helper()
	p := filepath.Join(tr.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		tr.t.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		tr.t.Fatal(err)
	}
}

// devLink makes <root>/dev/<class>/<majmin> point at devices/<devpath>, as
// /sys/dev/block/8:0 -> ../../devices/.../block/sda does.
func (tr *tree) devLink(class, majmin, devpath string) {
	tr.link(filepath.Join("dev", class, majmin), "../../devices/"+devpath)
}

// blockLink makes <root>/block/<name> point at devices/<devpath>.
func (tr *tree) blockLink(name, devpath string) {
	tr.link(filepath.Join("block", name), "../devices/"+devpath)
}

// The LU of the storage lab (lab/transcripts/multipath.txt): LIO fileio
// backstore disk0 behind tcm_loop, seen as sda (0:0:1:0) and sdb (1:0:1:0);
// multipath names it mpatha (36001405abd0000000000000000000000) on dm-0.
const (
	labNAA  = "6001405abd0000000000000000000000"
	labWWID = "naa." + labNAA
	labUUID = "mpath-3" + labNAA
)

// lioVPD83 is a Device Identification page as LIO builds it
// (target_core_spc.c spc_emulate_evpd_83): NAA IEEE Registered Extended, T10
// vendor ID "LIO-ORG " + unit serial, relative target port, target port group,
// LU group, and the target port's SCSI name string (association 10b, so not
// the LU's). Only the first two are LU designators.
func lioVPD83(naa []byte, serial string) []byte {
	var body []byte
	add := func(cs, typ byte, v []byte) {
		body = append(body, cs, typ, 0, byte(len(v)))
		body = append(body, v...)
	}
	add(0x01, 0x03, naa)                            // binary, LU, NAA
	add(0x02, 0x01, []byte("LIO-ORG "+serial))      // ASCII, LU, T10 vendor ID
	add(0x61, 0x94, []byte{0, 0, 0, 1})             // SAS, PIV, target port, relative port
	add(0x61, 0x95, []byte{0, 0, 0, 0})             // target port group
	add(0x01, 0x06, []byte{0, 0, 0, 0})             // LU group
	name := []byte("naa.5001405a00000001,t,0x0001") // target port name, NUL padded to 4
	name = append(name, make([]byte, 4-len(name)%4)...)
	add(0x63, 0xa8, name)
	page := []byte{0x00, 0x83, byte(len(body) >> 8), byte(len(body))}
	return append(page, body...)
}

func mustHex(t testing.TB, s string) []byte {
	b := make([]byte, len(s)/2)
	for i := range b {
		var v byte
		for _, c := range []byte(s[2*i : 2*i+2]) {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= c - '0'
			case c >= 'a' && c <= 'f':
				v |= c - 'a' + 10
			default:
				t.Fatalf("bad hex %q", s)
			}
		}
		b[i] = v
	}
	return b
}

// scsiDisk lays out one tcm_loop SCSI disk: its SCSI device directory with
// wwid/vpd_pg83, the sd block device (and scsi_disk class device), the sg
// node, and the /sys/dev and /sys/block links. wwid "" omits the attribute,
// vpd nil omits vpd_pg83.
func (tr *tree) scsiDisk(host int, sd string, sdMinor int, sg string, sgMinor int, wwid string, vpd []byte) string {
	hctl := itoa(host) + ":0:1:0"
	dev := "tcm_loop_0/tcm_loop_adapter_" + itoa(host) + "/host" + itoa(host) + "/target" + itoa(host) + ":0:1/" + hctl
	full := filepath.Join("devices", dev)
	tr.text(filepath.Join(full, "vendor"), "LIO-ORG ")
	tr.text(filepath.Join(full, "model"), "FILEIO          ")
	tr.text(filepath.Join(full, "type"), "0")
	if wwid != "" {
		tr.text(filepath.Join(full, "wwid"), wwid)
	}
	if vpd != nil {
		tr.file(filepath.Join(full, "vpd_pg83"), vpd)
	}
	tr.dir(filepath.Join(full, "scsi_device", hctl))
	if sd != "" {
		tr.dir(filepath.Join(full, "scsi_disk", hctl))
		tr.text(filepath.Join(full, "block", sd, "dev"), "8:"+itoa(sdMinor))
		tr.link(filepath.Join(full, "block", sd, "device"), "../../../"+hctl)
		tr.devLink("block", "8:"+itoa(sdMinor), dev+"/block/"+sd)
		tr.blockLink(sd, dev+"/block/"+sd)
	}
	if sg != "" {
		tr.text(filepath.Join(full, "scsi_generic", sg, "dev"), "21:"+itoa(sgMinor))
		tr.link(filepath.Join(full, "scsi_generic", sg, "device"), "../../../"+hctl)
		tr.devLink("char", "21:"+itoa(sgMinor), dev+"/scsi_generic/"+sg)
	}
	return dev
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
