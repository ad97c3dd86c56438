package scsi

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// hx builds a byte vector from hex pairs (spaces ignored) and, for readability,
// quoted ASCII runs: hx(`45 00 00 2c "iqn.x" 00`).
func hx(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for i, part := range strings.Split(s, `"`) {
		if i%2 == 1 {
			out = append(out, part...)
			continue
		}
		b, err := hex.DecodeString(strings.Join(strings.Fields(part), ""))
		if err != nil {
			t.Fatalf("bad test vector %q: %v", part, err)
		}
		out = append(out, b...)
	}
	return out
}

func zeros(n int) string { return strings.Repeat("00 ", n) }

// The LIO worked example of docs/spc4-pr.md §4.4 / scenario 122: iSCSI initiator port
// iqn.1994-05.com.example:i1 with ISID 00 02 3d 00 00 01. 26 + 5 + 12 + NUL = 44
// bytes, already a multiple of 4, so ADDITIONAL LENGTH = 2Ch and 48 bytes in all.
const lioISCSIPortTID = `45 00 00 2c "iqn.1994-05.com.example:i1,i,0x00023d000001" 00`

// The SAS initiator port of lab path 1 (naa.5001405b00000001), as LIO reports it:
// protocol 6 at byte 0, address at bytes 4-11, 24 bytes.
const labSASTID = `06 00 00 00 50 01 40 5b 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00`

func TestTransportIDEncode(t *testing.T) {
	tests := []struct {
		name string
		tid  TransportID
		want string
	}{
		{"SPC-4 7.6.4.7 SAS address at bytes 4-11", SASTransportID(0x5001405b00000001), labSASTID},
		{"SPC-4 7.6.4.2 FC N_Port name at bytes 8-15", FCTransportID(0x21000024ff3a8b2c),
			`00 00 00 00 00 00 00 00 21 00 00 24 ff 3a 8b 2c 00 00 00 00 00 00 00 00`},
		{"SPC-4 7.6.4.6 iSCSI port format 01b (LIO example)",
			ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001"), lioISCSIPortTID},
		{"iSCSI name format 00b, 27 chars + NUL = 28", ISCSITransportID("iqn.1994-05.com.example:i12"),
			`05 00 00 1c "iqn.1994-05.com.example:i12" 00`},
		{"iSCSI name padded to a multiple of 4", ISCSITransportID("iqn.1994-05.com.example:i1"),
			`05 00 00 1c "iqn.1994-05.com.example:i1" 00 00`},
		{"iSCSI ADDITIONAL LENGTH at least 20", ISCSITransportID("iqn.x"),
			`05 00 00 14 "iqn.x"` + zeros(15)},
		{"Raw wins", TransportID{Protocol: ProtoSAS, Addr: 1, Raw: []byte{6, 1, 2}}, `06 01 02`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.tid.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := hx(t, tc.want); !bytes.Equal(got, want) {
				t.Fatalf("Encode =\n% x\nwant\n% x", got, want)
			}
			if tc.tid.Raw != nil {
				return
			}
			back, n, err := DecodeTransportID(got)
			if err != nil || n != len(got) {
				t.Fatalf("DecodeTransportID = n %d, %v", n, err)
			}
			back.Raw = nil
			if !reflect.DeepEqual(back, tc.tid) {
				t.Fatalf("round trip = %+v, want %+v", back, tc.tid)
			}
		})
	}
}

func TestTransportIDEncodeErrors(t *testing.T) {
	for name, tid := range map[string]TransportID{
		"empty iSCSI name":       ISCSITransportID(""),
		"NUL in iSCSI name":      ISCSITransportID("iqn.a\x00b"),
		"short ISID":             ISCSIPortTransportID("iqn.x", "0002"),
		"ISID not hex":           ISCSIPortTransportID("iqn.x", "00023d00000g"),
		"iSCSI reserved format":  {Protocol: ProtoISCSI, Format: 2, Name: "iqn.x"},
		"SAS with format 1":      {Protocol: ProtoSAS, Format: 1},
		"SRP without raw bytes":  {Protocol: ProtoSRP},
		"format out of range":    {Protocol: ProtoSAS, Format: 4},
		"protocol out of range":  {Protocol: 0x10},
		"iSCSI name over 64 KiB": ISCSITransportID("iqn." + strings.Repeat("a", 70000)),
	} {
		if b, err := tid.Encode(); !errors.Is(err, ErrTransportID) {
			t.Errorf("%s: Encode = % x, %v; want ErrTransportID", name, b, err)
		}
	}
}

func TestDecodeTransportID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    TransportID
		n       int
		wantErr bool
	}{
		{"SAS", labSASTID + " ff ff", TransportID{Protocol: ProtoSAS, Addr: 0x5001405b00000001}, 24, false},
		{"FC", `00` + zeros(7) + `21 00 00 24 ff 3a 8b 2c` + zeros(8), TransportID{Protocol: ProtoFC, Addr: 0x21000024ff3a8b2c}, 24, false},
		{"iSCSI port", lioISCSIPortTID, ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001"), 48, false},
		{"iSCSI port, upper-case separator", `45 00 00 18 "iqn.a,I,0X0123456789ab" 00 00`,
			ISCSIPortTransportID("iqn.a", "0123456789ab"), 28, false},
		{"iSCSI name without NUL runs to the length", `05 00 00 04 "iqn.x"`, ISCSITransportID("iqn."), 8, false},
		{"SRP is kept raw", `04` + zeros(23), TransportID{Protocol: ProtoSRP}, 24, false},
		{"empty", ``, TransportID{}, 0, true},
		{"iSCSI header cut", `05 00 00`, TransportID{}, 0, true},
		{"iSCSI length beyond data", `05 00 00 14 "iqn.x" 00`, TransportID{}, 0, true},
		{"SAS shorter than 24", `06 00 00 00 50 01`, TransportID{}, 0, true},
		{"iSCSI port without separator", `45 00 00 08 "iqn.abc" 00`, TransportID{}, 0, true},
		{"iSCSI reserved format 10b", `85 00 00 08 "iqn.abc" 00`, TransportID{}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := hx(t, tc.in)
			got, n, err := DecodeTransportID(in)
			if tc.wantErr {
				if !errors.Is(err, ErrTransportID) {
					t.Fatalf("DecodeTransportID = %+v, %v; want ErrTransportID", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.n {
				t.Fatalf("n = %d, want %d", n, tc.n)
			}
			if !bytes.Equal(got.Raw, in[:n]) {
				t.Fatalf("Raw = % x, want % x", got.Raw, in[:n])
			}
			got.Raw = nil
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestTransportIDString(t *testing.T) {
	tests := []struct {
		tid  TransportID
		want string
	}{
		{SASTransportID(0x5001405b00000001), "SAS address: 0x5001405b00000001"},
		{FCTransportID(0x21000024ff3a8b2c), "FCP-2 World Wide Name: 0x21000024ff3a8b2c"},
		{ISCSITransportID("iqn.2003-01.org.linux-iscsi:h1"), "iSCSI name: iqn.2003-01.org.linux-iscsi:h1"},
		{ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001"),
			"iSCSI name and session id: iqn.1994-05.com.example:i1,i,0x00023d000001"},
		{TransportID{Protocol: ProtoSRP, Raw: []byte{4, 0, 1}}, "RDMA format code 0: 04 00 01"},
	}
	for _, tc := range tests {
		if got := tc.tid.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func TestTransportIDList(t *testing.T) {
	list := []TransportID{SASTransportID(0x5001405b00000002), ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}
	b, err := EncodeTransportIDs(list)
	if err != nil {
		t.Fatal(err)
	}
	if want := hx(t, `06 00 00 00 50 01 40 5b 00 00 00 02`+zeros(12)+lioISCSIPortTID); !bytes.Equal(b, want) {
		t.Fatalf("EncodeTransportIDs =\n% x\nwant\n% x", b, want)
	}
	got, err := DecodeTransportIDs(b)
	if err != nil || len(got) != 2 || got[0].Addr != 0x5001405b00000002 || got[1].ISID != "00023d000001" {
		t.Fatalf("DecodeTransportIDs = %+v, %v", got, err)
	}
	if _, err := DecodeTransportIDs(b[:len(b)-1]); !errors.Is(err, ErrTransportID) {
		t.Fatalf("DecodeTransportIDs of a cut list: %v, want ErrTransportID", err)
	}
	if _, err := EncodeTransportIDs([]TransportID{{Protocol: ProtoSRP}}); !errors.Is(err, ErrTransportID) {
		t.Fatalf("EncodeTransportIDs(SRP without raw) = %v", err)
	}
}

func FuzzDecodeTransportID(f *testing.F) {
	for _, s := range []string{lioISCSIPortTID, labSASTID, `05 00 00 14 "iqn.x"` + zeros(15), `45 00 00 08 "iqn.abc" 00`, ``, `05 ff ff`} {
		f.Add(hx(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tid, n, err := DecodeTransportID(b)
		if err != nil {
			return
		}
		if n < 4 || n > len(b) {
			t.Fatalf("n = %d for %d bytes", n, len(b))
		}
		_ = tid.String()
		enc, err := tid.Encode()
		if err != nil || !bytes.Equal(enc, b[:n]) {
			t.Fatalf("Encode of decoded = % x, %v; want % x", enc, err, b[:n])
		}
		// Re-encoding from the fields (Raw dropped) must decode to the same fields.
		tid.Raw = nil
		if enc, err = tid.Encode(); err != nil {
			return // e.g. SRP, which is only kept raw
		}
		back, _, err := DecodeTransportID(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded % x: %v", enc, err)
		}
		back.Raw = nil
		if !reflect.DeepEqual(back, tid) {
			t.Fatalf("fields round trip: %+v != %+v", back, tid)
		}
	})
}
