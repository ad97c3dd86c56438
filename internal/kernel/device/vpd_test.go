package device

import (
	"errors"
	"strings"
	"testing"
)

// desig builds one designation descriptor.
func desig(codeSet, piAssocType byte, v []byte) []byte {
	return append([]byte{codeSet, piAssocType, 0, byte(len(v))}, v...)
}

func page83(descs ...[]byte) []byte {
	var body []byte
	for _, d := range descs {
		body = append(body, d...)
	}
	return append([]byte{0x00, 0x83, byte(len(body) >> 8), byte(len(body))}, body...)
}

func TestLunID(t *testing.T) {
	naa6 := mustHex(t, labNAA)
	naa5 := mustHex(t, "5000c500a1b2c3d4")
	naa2 := mustHex(t, "2000001b32a1b2c3")
	naa3 := mustHex(t, "3000000000000001")
	eui8 := mustHex(t, "0025388b71b1c2d4")
	eui12 := mustHex(t, "0025388b71b1c2d400000001")
	eui16 := mustHex(t, "0025388b71b1c2d40000000000000001")
	t10 := desig(0x02, 0x01, []byte("LIO-ORG lab-disk0"))
	name := desig(0x03, 0x08, []byte("iqn.2003-01.org.example:lu0\x00\x00\x00\x00\x00"))
	tests := []struct {
		name string
		page []byte
		want string
	}{
		{"LIO page: NAA 6 wins over T10 and port designators", lioVPD83(naa6, "lab-disk0"), labWWID},
		{"T10 before NAA in the page: NAA still wins (Hitachi case)",
			page83(desig(0x02, 0x01, []byte("HITACHI 5030C3502025")), desig(0x01, 0x00, []byte{8, 3}), desig(0x01, 0x03, mustHex(t, "60060e8007c350000030c35000002025"))),
			"naa.60060e8007c350000030c35000002025"},
		{"T10 only", page83(t10), "t10.LIO-ORG lab-disk0"},
		{"T10 trailing blanks and control bytes", page83(desig(0x02, 0x01, []byte("ACME\x00\t\x7f\x1b\xff  "))), `t10.ACME\0\t\177\e\377`},
		{"NAA 5 over EUI-64 8", page83(desig(0x01, 0x02, eui8), desig(0x01, 0x03, naa5)), "naa.5000c500a1b2c3d4"},
		{"EUI-64 12 over NAA 5", page83(desig(0x01, 0x03, naa5), desig(0x01, 0x02, eui12)), "eui.0025388b71b1c2d400000001"},
		{"EUI-64 16 below NAA 6", page83(desig(0x01, 0x02, eui16), desig(0x01, 0x03, naa6)), labWWID},
		{"NAA 2 (IEEE extended) over EUI-64 8", page83(desig(0x01, 0x02, eui8), desig(0x01, 0x03, naa2)), "naa.2000001b32a1b2c3"},
		{"NAA 3 (local) ties with T10: the later equal-or-longer wins", page83(desig(0x01, 0x03, naa3), t10), "t10.LIO-ORG lab-disk0"},
		{"SCSI name string of the LU beats NAA", page83(desig(0x01, 0x03, naa6), name), "iqn.2003-01.org.example:lu0"},
		{"SCSI name string of the target port is ignored", page83(desig(0x53, 0xa8, []byte("naa.5001405a00000001,t,0x0001\x00\x00\x00")), t10), "t10.LIO-ORG lab-disk0"},
		{"NAA of the target port is ignored", page83(desig(0x61, 0x93, naa5)), ""},
		{"NAA with a length its type does not have", page83(desig(0x01, 0x03, naa6[:8]), t10), "t10.LIO-ORG lab-disk0"},
		{"EUI-64 of odd length", page83(desig(0x01, 0x02, eui8[:5])), ""},
		{"zero-length designators", page83(desig(0x01, 0x03, nil), desig(0x02, 0x01, nil)), ""},
		{"empty page", page83(), ""},
		{"bytes after PAGE LENGTH ignored", append(page83(t10), 0xde, 0xad), "t10.LIO-ORG lab-disk0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LunID(tc.page)
			if err != nil {
				t.Fatalf("LunID: %v", err)
			}
			if got != tc.want {
				t.Errorf("LunID = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestLunIDErrors(t *testing.T) {
	tests := []struct {
		name string
		page []byte
		msg  string
	}{
		{"nil", nil, "0 bytes"},
		{"short header", []byte{0, 0x83, 0}, "3 bytes"},
		{"other page", []byte{0, 0x80, 0, 0}, "not page 83h"},
		{"page length past the data", []byte{0, 0x83, 0, 8, 1, 3, 0, 0}, "page length 8, only 4"},
		{"descriptor header truncated", []byte{0, 0x83, 0, 2, 1, 3}, "header at byte 4"},
		{"descriptor past the page", []byte{0, 0x83, 0, 6, 1, 3, 0, 8, 0x60, 0}, "runs past the page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LunID(tc.page)
			if !errors.Is(err, ErrBadVPD) || got != "" {
				t.Fatalf("LunID = %q, %v; want ErrBadVPD", got, err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}
		})
	}
}

// FuzzLunID: any bytes give an id or an error, never a panic; an id never
// carries a NUL or a line break (it becomes a store key and a log field).
func FuzzLunID(f *testing.F) {
	f.Add(lioVPD83(mustHex(f, labNAA), "lab-disk0"))
	f.Add(page83(desig(0x02, 0x01, []byte("HITACHI 5030C3502025")), desig(0x01, 0x03, mustHex(f, "60060e8007c350000030c35000002025"))))
	f.Add(page83(desig(0x03, 0x08, []byte("iqn.2003-01.org.example:lu0\x00\x00\x00\x00\x00"))))
	f.Add([]byte{0, 0x83, 0xff, 0xff})
	f.Add([]byte{0, 0x83, 0, 6, 1, 3, 0, 8, 0x60, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, page []byte) {
		id, err := LunID(page)
		if err != nil {
			if id != "" {
				t.Fatalf("id %q with error %v", id, err)
			}
			return
		}
		if strings.Contains(id, "\x00") {
			t.Fatalf("id %q contains NUL", id)
		}
		if strings.HasPrefix(id, "t10.") && strings.ContainsAny(id, "\x00\n\r") {
			t.Fatalf("t10 id %q not escaped", id)
		}
	})
}

func TestMultipathLUID(t *testing.T) {
	tests := []struct{ uuid, want string }{
		{labUUID, labWWID},
		{"mpath-36001405ABD0000000000000000000000", labWWID},
		{"mpath-35000c500a1b2c3d4", "naa.5000c500a1b2c3d4"},
		{"mpath-20025388b71b1c2d4", "eui.0025388b71b1c2d4"},
		{"mpath-2002538", ""},
		{"mpath-3600140", ""},
		{"mpath-36001405abd00000000000000000000zz", ""},
		{"mpath-8iqn.2003-01.org.example:lu0", "iqn.2003-01.org.example:lu0"},
		{"mpath-1LIO-ORG_FILEIO_lab-disk0", ""},
		{"mpath-eui.0025388b71b1c2d4", "eui.0025388b71b1c2d4"},
		{"mpath-uuid.3fa85f64-5717-4562-b3fc-2c963f66afa6", "uuid.3fa85f64-5717-4562-b3fc-2c963f66afa6"},
		{"mpath-", ""},
		{"mpath-8", ""},
		{"part1-mpath-36001405abd0000000000000000000000", ""},
		{"LVM-abc", ""},
		{"", ""},
	}
	for _, tc := range tests {
		if got := MultipathLUID(tc.uuid); got != tc.want {
			t.Errorf("MultipathLUID(%q) = %q, want %q", tc.uuid, got, tc.want)
		}
	}
}
