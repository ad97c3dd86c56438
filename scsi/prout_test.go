package scsi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestPROutParamsEncode(t *testing.T) {
	tests := []struct {
		name string
		p    PROutParams
		want string
	}{
		{"spc-pr 3.1 example: REGISTER SARK K1 from an unregistered nexus", PROutParams{SAKey: k1},
			zeros(8) + `11 11 11 11 11 11 11 11` + zeros(8)},
		{"RESERVE with key 0x1 (lab pr-two-paths)", PROutParams{Key: 1}, `00 00 00 00 00 00 00 01` + zeros(16)},
		{"APTPL is bit 0 of byte 20", PROutParams{SAKey: 0xabc, APTPL: true},
			zeros(8) + `00 00 00 00 00 00 0a bc 00 00 00 00 01 00 00 00`},
		{"ALL_TG_PT is bit 2 of byte 20", PROutParams{SAKey: 2, AllTgPt: true},
			zeros(8) + `00 00 00 00 00 00 00 02 00 00 00 00 04 00 00 00`},
		{"SPEC_I_PT: TPDL at 24, TransportIDs at 28", PROutParams{SAKey: k1, SpecIPT: true,
			TransportIDs: []TransportID{ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}},
			zeros(8) + `11 11 11 11 11 11 11 11 00 00 00 00 08 00 00 00 00 00 00 30 ` + lioISCSIPortTID},
		{"SPEC_I_PT with an empty list", PROutParams{SpecIPT: true}, zeros(20) + `08 00 00 00 00 00 00 00`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Encode()
			if err != nil {
				t.Fatal(err)
			}
			want := hx(t, tc.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("Encode =\n% x\nwant\n% x", got, want)
			}
			back, err := DecodePROutParams(got)
			if err != nil {
				t.Fatal(err)
			}
			for i := range back.TransportIDs {
				back.TransportIDs[i].Raw = nil
			}
			back.TransportIDData = nil
			if len(back.TransportIDs) == 0 {
				back.TransportIDs = tc.p.TransportIDs
			}
			if !reflect.DeepEqual(back, tc.p) {
				t.Fatalf("round trip = %+v, want %+v", back, tc.p)
			}
		})
	}
	if _, err := (PROutParams{TransportIDs: []TransportID{SASTransportID(1)}}).Encode(); err == nil {
		t.Fatal("TransportIDs without SPEC_I_PT encoded")
	}
	if _, err := (PROutParams{SpecIPT: true, TransportIDs: []TransportID{{Protocol: ProtoSRP}}}).Encode(); !errors.Is(err, ErrTransportID) {
		t.Fatalf("unencodable TransportID: %v", err)
	}
}

func TestDecodePROutParamsErrors(t *testing.T) {
	for name, in := range map[string]string{
		"23 bytes (LIO 05/1A/00)":                     zeros(23),
		"25 bytes without SPEC_I_PT (LIO 05/1A/00)":   zeros(25),
		"SPEC_I_PT in a 24-byte list":                 zeros(20) + `08 00 00 00`,
		"SPEC_I_PT, TPDL + 28 != length (LIO 05/26)":  zeros(20) + `08 00 00 00 00 00 00 18` + labSASTID + `00 00 00 00`,
		"SPEC_I_PT, TPDL overflows":                   zeros(20) + `08 00 00 00 ff ff ff ff` + labSASTID,
		"SPEC_I_PT, TransportID list does not parse":  zeros(20) + `08 00 00 00 00 00 00 08 05 00 00 08 00 00 00 00`,
		"SPEC_I_PT, TransportID longer than the list": zeros(20) + `08 00 00 00 00 00 00 04 06 00 00 00`,
	} {
		if p, err := DecodePROutParams(hx(t, in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodePROutParams = %+v, %v; want ErrMalformed", name, p, err)
		}
	}
	// The fields read before the error are returned: an engine can tell SPEC_I_PT.
	p, err := DecodePROutParams(hx(t, `00 00 00 00 00 00 00 05`+zeros(12)+`08 00 00 00`))
	if err == nil || !p.SpecIPT || p.Key != 5 {
		t.Fatalf("partial decode = %+v, %v", p, err)
	}
}

func TestRegisterMoveParams(t *testing.T) {
	p := RegisterMoveParams{Key: k1, SAKey: 0x2222222222222222, Unreg: true, RelativeTargetPort: 1,
		TransportID: ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}
	want := hx(t, `11 11 11 11 11 11 11 11 22 22 22 22 22 22 22 22 00 02 00 01 00 00 00 30 `+lioISCSIPortTID)
	got, err := p.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Encode =\n% x\nwant\n% x", got, want)
	}
	back, err := DecodeRegisterMoveParams(got)
	if err != nil {
		t.Fatal(err)
	}
	back.TransportID.Raw = nil
	if !reflect.DeepEqual(back, p) {
		t.Fatalf("round trip = %+v, want %+v", back, p)
	}

	sas := RegisterMoveParams{Key: 1, SAKey: 2, APTPL: true, RelativeTargetPort: 0x7777, TransportID: SASTransportID(0x5001405b00000002)}
	got, err = sas.Encode()
	if want := hx(t, `00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 01 77 77 00 00 00 18 06 00 00 00 50 01 40 5b 00 00 00 02`+zeros(12)); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("Encode(SAS) = % x, %v; want % x", got, err, want)
	}
	if _, err := (RegisterMoveParams{TransportID: TransportID{Protocol: ProtoSRP}}).Encode(); !errors.Is(err, ErrTransportID) {
		t.Fatalf("unencodable TransportID: %v", err)
	}

	for name, in := range map[string]string{
		"23 bytes":                           zeros(23),
		"no TransportID":                     zeros(24),
		"PLL != 24 + TPDL (scenario 106)":    zeros(20) + `00 00 00 18 ` + labSASTID + `00 00 00 00`,
		"TransportID shorter than TPDL":      zeros(20) + `00 00 00 1c ` + labSASTID + `00 00 00 00`,
		"TransportID that does not parse":    zeros(20) + `00 00 00 08 45 00 00 04 "iqn."`,
		"iSCSI TransportID longer than TPDL": zeros(20) + `00 00 00 04 05 00 00 04`,
	} {
		if p, err := DecodeRegisterMoveParams(hx(t, in)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeRegisterMoveParams = %+v, %v; want ErrMalformed", name, p, err)
		}
	}
}

func FuzzDecodePROutParams(f *testing.F) {
	for _, s := range []string{
		`00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 11` + zeros(8), // qemu-pr-helper.txt: register 0 0x111
		`00 00 00 00 00 00 01 11` + zeros(16),                        // reserve 0x111
		`00 00 00 00 00 00 02 22 00 00 00 00 00 00 01 11` + zeros(8), // preempt 0x222 0x111
		zeros(8) + `00 00 00 00 00 00 0a bc 00 00 00 00 01 00 00 00`,
		zeros(8) + `11 11 11 11 11 11 11 11 00 00 00 00 08 00 00 00 00 00 00 30 ` + lioISCSIPortTID,
		zeros(20) + `08 00 00 00 00 00 00 18` + labSASTID,
		zeros(23),
	} {
		f.Add(hx(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePROutParams(b)
		if err != nil {
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("Encode of decoded %+v: %v", p, err)
		}
		back, err := DecodePROutParams(enc)
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, p)
		}
	})
}

func FuzzDecodeRegisterMoveParams(f *testing.F) {
	for _, s := range []string{
		`11 11 11 11 11 11 11 11 22 22 22 22 22 22 22 22 00 02 00 01 00 00 00 30 ` + lioISCSIPortTID,
		`00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02 00 01 77 77 00 00 00 18 ` + labSASTID,
		zeros(24),
	} {
		f.Add(hx(f, s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeRegisterMoveParams(b)
		if err != nil {
			return
		}
		enc, err := p.Encode()
		if err != nil {
			t.Fatalf("Encode of decoded %+v: %v", p, err)
		}
		if !bytes.Equal(enc[RegisterMoveHdrLen:], b[RegisterMoveHdrLen:]) {
			t.Fatalf("TransportID bytes changed: % x -> % x", b[RegisterMoveHdrLen:], enc[RegisterMoveHdrLen:])
		}
		back, err := DecodeRegisterMoveParams(enc)
		if err != nil || !reflect.DeepEqual(back, p) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, p)
		}
	})
}
