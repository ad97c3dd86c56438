package pr

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

const (
	k1 = 0x1111111111111111
	k2 = 0x2222222222222222
	k3 = 0x3333333333333333
)

// hx decodes space-separated hex; "'text'" inserts ASCII.
func hx(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, f := range strings.Fields(s) {
		if strings.HasPrefix(f, "'") {
			out = append(out, strings.Trim(f, "'")...)
			continue
		}
		b, err := hex.DecodeString(f)
		if err != nil {
			t.Fatalf("bad hex %q", f)
		}
		out = append(out, b...)
	}
	return out
}

var (
	nx1 = Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", "00023D000001"), RTPI: 1}
	nx2 = Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i2", "00023d000002"), RTPI: 1}
	nx3 = Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i3", "00023d000003"), RTPI: 1}
)

// tidI1 is I1's LIO TransportID from docs/spc4-pr.md §4.4: 45 00 00 2C, the name,
// ",i,0x", the ISID in lower case, a NUL; 48 bytes.
const tidI1 = `45 00 00 2c 'iqn.1994-05.com.example:i1,i,0x00023d000001' 00`

func reg(n Nexus, key uint64) Registration { return Registration{Nexus: n, Key: key} }

// TestPRInPayloads checks PR IN data byte for byte against layouts derived by
// hand from docs/spc4-pr.md §4 (and the SPC-4 truncation rules for the spc4 profile).
func TestPRInPayloads(t *testing.T) {
	one := State{Generation: 1, Registrations: []Registration{reg(nx1, k1)}}
	three := State{Generation: 3, Registrations: []Registration{reg(nx1, k1), reg(nx2, k2), reg(nx3, k3)}}
	ea := State{Generation: 1, Registrations: []Registration{reg(nx1, k1)}, Reservation: &Reservation{Holder: nx1, Type: 3}}
	wear := State{Generation: 2, Registrations: []Registration{reg(nx1, k1), reg(nx2, k2)}, Reservation: &Reservation{Holder: nx1, Type: 7}}
	we := State{Generation: 1, Registrations: []Registration{reg(nx1, k1)}, Reservation: &Reservation{Holder: nx1, Type: 1}}
	atp := State{Generation: 2, Registrations: []Registration{
		{Nexus: nx1, Key: k1, AllTgPt: true}, {Nexus: Nexus{Initiator: nx1.Initiator, RTPI: 2}, Key: k1, AllTgPt: true}}}
	noISID := State{Generation: 1, Registrations: []Registration{reg(Nexus{Initiator: ISCSIInitiator("iqn.x", ""), RTPI: 7}, k2)}}
	sas := State{Generation: 1, Registrations: []Registration{reg(Nexus{Initiator: SASInitiator(0x5001405b00000001), RTPI: 3}, k1)}}
	aptpl := State{APTPL: true}
	tests := []struct {
		name    string
		p       Profile
		st      State
		sa      byte
		alloc   uint16
		want    string
		wantErr bool
	}{
		{"RK §4.1 example", LIO(), one, 0, 8192, `00 00 00 01 00 00 00 08 11 11 11 11 11 11 11 11`, false},
		{"RK fresh", LIO(), State{}, 0, 8192, `00 00 00 00 00 00 00 00`, false},
		{"RK alloc 8: full ADDITIONAL LENGTH, no keys", LIO(), three, 0, 8, `00 00 00 03 00 00 00 18`, false},
		{"RK alloc 12 LIO: whole keys only", LIO(), one, 0, 12, `00 00 00 01 00 00 00 08 00 00 00 00`, false},
		{"RK alloc 12 SPC-4: plain truncation", SPC4(), one, 0, 12, `00 00 00 01 00 00 00 08 11 11 11 11`, false},
		{"RK alloc 20 of 3 keys LIO", LIO(), three, 0, 20, `00 00 00 03 00 00 00 18 11 11 11 11 11 11 11 11 00 00 00 00`, false},
		{"RK alloc 20 of 3 keys SPC-4", SPC4(), three, 0, 20, `00 00 00 03 00 00 00 18 11 11 11 11 11 11 11 11 22 22 22 22`, false},
		{"RK registration order", LIO(), three, 0, 100, `00 00 00 03 00 00 00 18 11 11 11 11 11 11 11 11 22 22 22 22 22 22 22 22 33 33 33 33 33 33 33 33`, false},
		{"RK alloc 7 LIO", LIO(), one, 0, 7, ``, true},
		{"RK alloc 7 SPC-4", SPC4(), one, 0, 7, `00 00 00 01 00 00 00`, false},
		{"RR none", LIO(), three, 1, 8192, `00 00 00 03 00 00 00 00`, false},
		{"RR §4.2 example", LIO(), ea, 1, 8192, `00 00 00 01 00 00 00 10 11 11 11 11 11 11 11 11 00 00 00 00 00 03 00 00`, false},
		{"RR WEAR key 0", LIO(), wear, 1, 8192, `00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00 07 00 00`, false},
		{"RR alloc 12 LIO: header only, whole allocation", LIO(), ea, 1, 12, `00 00 00 01 00 00 00 10 00 00 00 00`, false},
		{"RR alloc 21 LIO", LIO(), ea, 1, 21, `00 00 00 01 00 00 00 10 00 00 00 00 00 00 00 00 00 00 00 00 00`, false},
		{"RR alloc 22 LIO: filled", LIO(), ea, 1, 22, `00 00 00 01 00 00 00 10 11 11 11 11 11 11 11 11 00 00 00 00 00 03`, false},
		{"RR alloc 12 SPC-4: truncated", SPC4(), ea, 1, 12, `00 00 00 01 00 00 00 10 11 11 11 11`, false},
		{"RR alloc 4 LIO", LIO(), ea, 1, 4, ``, true},
		{"RCAP LIO", LIO(), State{}, 2, 8192, `00 08 1d 90 ea 01 00 00`, false},
		{"RCAP PTPL_A", LIO(), aptpl, 2, 8192, `00 08 1d 91 ea 01 00 00`, false},
		{"RCAP alloc 6", LIO(), State{}, 2, 6, `00 08 1d 90 ea 01`, false},
		{"RCAP alloc 5 LIO", LIO(), State{}, 2, 5, ``, true},
		{"RCAP alloc 5 SPC-4", SPC4(), State{}, 2, 5, `00 08 1d 90 ea`, false},
		{"RFS §4.4 worked example", LIO(), we, 3, 8192,
			`00 00 00 01 00 00 00 48  11 11 11 11 11 11 11 11  00 00 00 00  01 01  00 00 00 00  00 01  00 00 00 30 ` + tidI1, false},
		{"RFS ALL_TG_PT: byte 12 = 02, RTPI 0", LIO(), atp, 3, 8192,
			`00 00 00 02 00 00 00 90` +
				` 11 11 11 11 11 11 11 11 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 30 ` + tidI1 +
				` 11 11 11 11 11 11 11 11 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 30 ` + tidI1, false},
		{"RFS WEAR: every registrant a holder", LIO(), wear, 3, 8192,
			`00 00 00 02 00 00 00 90` +
				` 11 11 11 11 11 11 11 11 00 00 00 00 01 07 00 00 00 00 00 01 00 00 00 30 ` + tidI1 +
				` 22 22 22 22 22 22 22 22 00 00 00 00 01 07 00 00 00 00 00 01 00 00 00 30 45 00 00 2c 'iqn.1994-05.com.example:i2,i,0x00023d000002' 00`, false},
		{"RFS format 00b, padded to 4 only", LIO(), noISID, 3, 8192,
			`00 00 00 01 00 00 00 24 22 22 22 22 22 22 22 22 00 00 00 00 00 00 00 00 00 00 00 07 00 00 00 0c 05 00 00 08 'iqn.x' 00 00 00`, false},
		{"RFS SAS", LIO(), sas, 3, 8192,
			`00 00 00 01 00 00 00 30 11 11 11 11 11 11 11 11 00 00 00 00 00 00 00 00 00 00 00 03 00 00 00 18 06 00 00 00 50 01 40 5b 00 00 00 01` + strings.Repeat(" 00", 12), false},
		{"RFS LIO alloc 79: TransportID + 0 fits, descriptor cut by the transfer", LIO(), we, 3, 79,
			`00 00 00 01 00 00 00 48  11 11 11 11 11 11 11 11  00 00 00 00  01 01  00 00 00 00  00 01  00 00 00 30 45 00 00 2c 'iqn.1994-05.com.example:i1,i,0x00023d000001'`, false},
		{"RFS LIO alloc 47: nothing fits, ADDITIONAL LENGTH 0", LIO(), we, 3, 47, `00 00 00 01 00 00 00 00`, false},
		{"RFS SPC-4 alloc 12: full ADDITIONAL LENGTH", SPC4(), we, 3, 12, `00 00 00 01 00 00 00 48 11 11 11 11`, false},
		{"RFS alloc 0 LIO", LIO(), we, 3, 0, ``, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st.Clone()
			before := st.Clone()
			c := scsi.PRInCDB(tc.sa, tc.alloc)
			r := Execute(tc.p, &st, nx1, c[:], nil)
			if tc.wantErr {
				if r.Status != scsi.StatusCheckCondition || !bytes.Equal(r.Sense, scsi.SenseInvalidField.Fixed()) {
					t.Fatalf("got %s, want CC 5/24/00", describe(r))
				}
				return
			}
			if r.Status != scsi.StatusGood {
				t.Fatalf("got %s", describe(r))
			}
			if want := hx(t, tc.want); !bytes.Equal(r.Data, want) {
				t.Fatalf("data\n got % x\nwant % x", r.Data, want)
			}
			if !equalState(before, st) {
				t.Fatalf("PR IN changed the state")
			}
		})
	}
}

func equalState(a, b State) bool {
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	return bytes.Equal(x, y)
}

// TestTransportID checks the engine's LIO TransportID encoder, and that it
// agrees with the scsi package's SPC-4 encoder where LIO and SPC-4 agree (names
// of 19 characters or more), and that parseTransportID reads both back.
func TestTransportID(t *testing.T) {
	tests := []struct {
		name string
		in   Initiator
		want string
	}{
		{"iSCSI port", nx1.Initiator, tidI1},
		{"iSCSI name", ISCSIInitiator("iqn.1994-05.com.example:i1", ""), `05 00 00 1c 'iqn.1994-05.com.example:i1' 00 00`},
		{"iSCSI short name: no 20-byte minimum", ISCSIInitiator("iqn.ab", ""), `05 00 00 08 'iqn.ab' 00 00`},
		{"iSCSI name length multiple of 4 minus 1", ISCSIInitiator("iqn", ""), `05 00 00 04 'iqn' 00`},
		{"SAS", SASInitiator(0x5001405b00000001), `06 00 00 00 50 01 40 5b 00 00 00 01` + strings.Repeat(" 00", 12)},
		{"FC", FCInitiator(0x21000024ff000001), `00` + strings.Repeat(" 00", 7) + ` 21 00 00 24 ff 00 00 01` + strings.Repeat(" 00", 8)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.in.TransportID()
			if want := hx(t, tc.want); !bytes.Equal(got, want) {
				t.Fatalf("TransportID\n got % x\nwant % x", got, want)
			}
			back, n, err := parseTransportID(append(got, 0xee))
			if err != nil || n != len(got) || !back.Equal(tc.in) {
				t.Fatalf("parse = %+v, %d, %v", back, n, err)
			}
			if len(tc.in.Name) >= 19 {
				var st scsi.TransportID
				if tc.in.ISID != "" {
					st = scsi.ISCSIPortTransportID(tc.in.Name, tc.in.ISID)
				} else {
					st = scsi.ISCSITransportID(tc.in.Name)
				}
				if b, _ := st.Encode(); !bytes.Equal(b, got) {
					t.Fatalf("scsi encoder disagrees:\n% x\n% x", b, got)
				}
			}
		})
	}
	if _, _, err := parseTransportID(hx(t, `04`+strings.Repeat(" 00", 23))); err == nil {
		t.Fatal("SRP TransportID accepted")
	}
	if _, _, err := parseTransportID(hx(t, `45 00 00 08 'iqn.x' 00 00 00`)); err == nil {
		t.Fatal("iSCSI port TransportID without ,i,0x accepted")
	}
}

// TestNexusMatching pins the identity rules: iSCSI names compare byte for byte
// (LIO strcmp; callers normalise per RFC 3722), ISIDs compare as hex, a
// registration without ISID covers every ISID of its node.
func TestNexusMatching(t *testing.T) {
	a := ISCSIInitiator("iqn.1994-05.com.example:i1", "00023D000001")
	if !a.Equal(nx1.Initiator) {
		t.Error("ISIDs should compare as hex, ignoring case")
	}
	if ISCSIInitiator("IQN.1994-05.com.example:i1", "00023d000001").Equal(nx1.Initiator) {
		t.Error("iSCSI names should compare byte for byte, like LIO")
	}
	if a.Equal(ISCSIInitiator("iqn.1994-05.com.example:i1", "00023d000002")) {
		t.Error("different ISIDs compared equal")
	}
	node := Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", ""), RTPI: 1}
	if !node.covers(nx1) || nx1.covers(node) {
		t.Error("a registration without ISID should cover every ISID, not the reverse")
	}
	if (Nexus{Initiator: nx1.Initiator, RTPI: 2}).Equal(nx1) {
		t.Error("different target ports compared equal")
	}
	if SASInitiator(1).Equal(FCInitiator(1)) {
		t.Error("SAS and FC with one address compared equal")
	}
}
