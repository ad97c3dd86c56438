package scsi

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

const k1 = 0x1111111111111111

func TestDecodeKeys(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Keys
		wantErr bool
	}{
		{"spc-pr 4.1 example: one key, generation 1", `00 00 00 01 00 00 00 08 11 11 11 11 11 11 11 11`,
			Keys{Generation: 1, AdditionalLength: 8, Keys: []uint64{k1}}, false},
		{"lab pr-two-paths: gen 2, keys 0x1 0x2", `00 00 00 02 00 00 00 10 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 02`,
			Keys{Generation: 2, AdditionalLength: 16, Keys: []uint64{1, 2}}, false},
		{"no registrations", `00 00 00 04 00 00 00 00`, Keys{Generation: 4, Keys: []uint64{}}, false},
		{"padding after ADDITIONAL LENGTH ignored", `00 00 00 01 00 00 00 08 00 00 00 00 00 00 0a bc` + zeros(16),
			Keys{Generation: 1, AdditionalLength: 8, Keys: []uint64{0xabc}}, false},
		{"allocation length 8: full count, no keys", `00 00 00 07 00 00 00 10`,
			Keys{Generation: 7, AdditionalLength: 16, Keys: []uint64{}, Truncated: true}, false},
		{"LIO allocation length 12: whole keys only, bytes 8-11 zero", `00 00 00 01 00 00 00 08 00 00 00 00`,
			Keys{Generation: 1, AdditionalLength: 8, Keys: []uint64{}, Truncated: true}, false},
		{"allocation length 20 of 3 keys", `00 00 00 03 00 00 00 18 00 00 00 00 00 00 00 77 00 00 00 00`,
			Keys{Generation: 3, AdditionalLength: 24, Keys: []uint64{0x77}, Truncated: true}, false},
		{"header cut", `00 00 00 01 00 00 00`, Keys{}, true},
		{"ADDITIONAL LENGTH not a multiple of 8", `00 00 00 01 00 00 00 0c 00 00 00 00 00 00 00 01 00 00 00 00`, Keys{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeKeys(hx(t, tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeKeys = %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestKeysEncode(t *testing.T) {
	got := Keys{Generation: 1, AdditionalLength: 999, Keys: []uint64{k1}, Truncated: true}.Encode()
	if want := hx(t, `00 00 00 01 00 00 00 08 11 11 11 11 11 11 11 11`); !bytes.Equal(got, want) {
		t.Fatalf("Encode = % x, want % x", got, want)
	}
	if got, want := (Keys{Generation: 6}).Encode(), hx(t, `00 00 00 06 00 00 00 00`); !bytes.Equal(got, want) {
		t.Fatalf("Encode(no keys) = % x, want % x", got, want)
	}
}

func TestDecodeReservation(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Reservation
		wantErr bool
	}{
		{"none: 8 bytes", `00 00 00 03 00 00 00 00`, Reservation{Generation: 3}, false},
		{"spc-pr 4.2 example: EA by K1", `00 00 00 01 00 00 00 10 11 11 11 11 11 11 11 11 00 00 00 00 00 03 00 00`,
			Reservation{Generation: 1, AdditionalLength: 16, Held: true, Key: k1, Type: TypeExclusiveAccess}, false},
		{"WEAR: key 0, type 7", `00 00 00 06 00 00 00 10` + zeros(13) + `07 00 00`,
			Reservation{Generation: 6, AdditionalLength: 16, Held: true, Type: TypeWriteExclusiveAllRegs}, false},
		{"scope nibble", `00 00 00 01 00 00 00 10 00 00 00 00 00 00 00 05 00 00 00 00 00 21 00 00`,
			Reservation{Generation: 1, AdditionalLength: 16, Held: true, Key: 5, Scope: 2, Type: 1}, false},
		{"allocation length 16: key, no type", `00 00 00 01 00 00 00 10 00 00 00 00 00 00 01 11`,
			Reservation{Generation: 1, AdditionalLength: 16, Held: true, Key: 0x111, Truncated: true}, false},
		{"allocation length 8 while held", `00 00 00 01 00 00 00 10`,
			Reservation{Generation: 1, AdditionalLength: 16, Held: true, Truncated: true}, false},
		{"ADDITIONAL LENGTH 8", `00 00 00 01 00 00 00 08 00 00 00 00 00 00 00 01`, Reservation{}, true},
		{"header cut", `00 00 00`, Reservation{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeReservation(hx(t, tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeReservation = %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReservationEncode(t *testing.T) {
	if got, want := (Reservation{Generation: 3}).Encode(), hx(t, `00 00 00 03 00 00 00 00`); !bytes.Equal(got, want) {
		t.Fatalf("Encode(none) = % x, want % x", got, want)
	}
	got := Reservation{Generation: 1, Held: true, Key: k1, Type: TypeExclusiveAccess}.Encode()
	if want := hx(t, `00 00 00 01 00 00 00 10 11 11 11 11 11 11 11 11 00 00 00 00 00 03 00 00`); !bytes.Equal(got, want) {
		t.Fatalf("Encode(EA) = % x, want % x", got, want)
	}
}

func TestDecodeCapabilities(t *testing.T) {
	lio := Capabilities{Length: 8, CRH: true, SIPC: true, ATPC: true, PTPLC: true, TMV: true, AllowCommands: 1, TypeMask: 0xea01}
	lioAPTPL := lio
	lioAPTPL.PTPLA = true
	scst := lio
	scst.AllowCommands = 4
	tests := []struct {
		name    string
		in      string
		want    Capabilities
		wantErr bool
	}{
		{"LIO", `00 08 1d 90 ea 01 00 00`, lio, false},
		{"LIO with APTPL active", `00 08 1d 91 ea 01 00 00`, lioAPTPL, false},
		{"SCST: ALLOW COMMANDS 100b", `00 08 1d c0 ea 01 00 00`, scst, false},
		{"tgt: nothing but TMV", `00 08 00 80 ea 01 00 00`, Capabilities{Length: 8, TMV: true, TypeMask: 0xea01}, false},
		{"RLR_C", `00 08 80 00 00 00 00 00`, Capabilities{Length: 8, RLRC: true}, false},
		{"allocation length 4", `00 08 1d 90`, Capabilities{Length: 8, CRH: true, SIPC: true, ATPC: true, PTPLC: true,
			TMV: true, AllowCommands: 1, Truncated: true}, false},
		{"LENGTH 16", `00 10 1d 90 ea 01 00 00`, Capabilities{}, true},
		{"one byte", `00`, Capabilities{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeCapabilities(hx(t, tc.in))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeCapabilities = %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if !got.Truncated {
				if enc := got.Encode(); !bytes.Equal(enc, hx(t, tc.in)) {
					t.Fatalf("Encode = % x, want % x", enc, hx(t, tc.in))
				}
			}
		})
	}
}

func TestCapabilitiesEncodeMasksFields(t *testing.T) {
	got := Capabilities{Length: 99, AllowCommands: 0xff, TypeMask: MaskWriteExclusive | MaskExclusiveAccessAllRegs}.Encode()
	if want := hx(t, `00 08 00 70 02 01 00 00`); !bytes.Equal(got, want) {
		t.Fatalf("Encode = % x, want % x", got, want)
	}
}

// lioFullStatus is the 80-byte READ FULL STATUS of docs/spc4-pr.md §4.4 / scenario 122.
const lioFullStatus = `00 00 00 01 00 00 00 48 ` + lioDesc

// lioDesc is its one 72-byte descriptor: key K1, R_HOLDER, type WE, RTPI 1,
// ADDITIONAL DESCRIPTOR LENGTH 30h, then the iSCSI port TransportID.
const lioDesc = `11 11 11 11 11 11 11 11  00 00 00 00  01 01  00 00 00 00  00 01  00 00 00 30 ` + lioISCSIPortTID

// labFullStatus is the pr-two-paths transcript's READ FULL STATUS after both paths
// registered (0xabc, 0xdef) and path A reserved type 7: generation 6, both
// descriptors R_HOLDER with type 7, RTPI 1 and 2, SAS TransportIDs.
var labFullStatus = `00 00 00 06 00 00 00 60 ` +
	`00 00 00 00 00 00 0a bc 00 00 00 00 01 07 00 00 00 00 00 01 00 00 00 18 ` + labSASTID +
	`00 00 00 00 00 00 0d ef 00 00 00 00 01 07 00 00 00 00 00 02 00 00 00 18 06 00 00 00 50 01 40 5b 00 00 00 02` + zeros(12)

func TestDecodeFullStatus(t *testing.T) {
	wantLIO := StatusDescriptor{Key: k1, Holder: true, Type: TypeWriteExclusive, RelativeTargetPort: 1, DescriptorLength: 48,
		TransportID: ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}
	sas := func(key uint64, rtpi uint16, addr uint64) StatusDescriptor {
		return StatusDescriptor{Key: key, Holder: true, Type: TypeWriteExclusiveAllRegs, RelativeTargetPort: rtpi,
			DescriptorLength: 24, TransportID: SASTransportID(addr)}
	}
	twoLIO := `00 00 00 01 00 00 00 90 ` + lioDesc + ` 22 22 22 22 22 22 22 22 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 30 ` + lioISCSIPortTID
	tests := []struct {
		name    string
		in      string
		cut     int // allocation length, 0 for all
		want    FullStatus
		wantErr bool
	}{
		{"spc-pr 4.4 LIO example", lioFullStatus, 0, FullStatus{Generation: 1, AdditionalLength: 72, Descriptors: []StatusDescriptor{wantLIO}}, false},
		{"lab: two SAS registrants under WEAR", labFullStatus, 0, FullStatus{Generation: 6, AdditionalLength: 96,
			Descriptors: []StatusDescriptor{sas(0xabc, 1, 0x5001405b00000001), sas(0xdef, 2, 0x5001405b00000002)}}, false},
		{"no registrations", `00 00 00 02 00 00 00 00`, 0, FullStatus{Generation: 2, Descriptors: []StatusDescriptor{}}, false},
		{"ALL_TG_PT bit", `00 00 00 01 00 00 00 30 00 00 00 00 00 00 00 01 00 00 00 00 02 00 00 00 00 00 00 00 00 00 00 18 ` + labSASTID, 0,
			FullStatus{Generation: 1, AdditionalLength: 48, Descriptors: []StatusDescriptor{{Key: 1, AllTargetPorts: true,
				DescriptorLength: 24, TransportID: SASTransportID(0x5001405b00000001)}}}, false},
		{"scenario 125 SPEC: allocation 90 of 144", twoLIO, 90, FullStatus{Generation: 1, AdditionalLength: 144,
			Descriptors: []StatusDescriptor{wantLIO}, Truncated: true}, false},
		{"TransportID cut by the allocation length", lioFullStatus, 60, FullStatus{Generation: 1, AdditionalLength: 72,
			Descriptors: []StatusDescriptor{{Key: k1, Holder: true, Type: 1, RelativeTargetPort: 1, DescriptorLength: 48,
				TransportID:    TransportID{Format: 1, Protocol: ProtoISCSI, Raw: hx(t, lioISCSIPortTID)[:28]},
				TransportIDErr: "bad TransportID: needs 48 bytes, have 28"}}, Truncated: true}, false},
		{"header cut", `00 00 00 01 00 00`, 0, FullStatus{}, true},
		{"descriptor overruns ADDITIONAL LENGTH", `00 00 00 01 00 00 00 20` + zeros(20) + `00 00 00 10` + zeros(16), 0, FullStatus{}, true},
		{"ADDITIONAL LENGTH leaves a partial descriptor", `00 00 00 01 00 00 00 10` + zeros(16), 0, FullStatus{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := hx(t, tc.in)
			if tc.cut > 0 {
				in = in[:tc.cut]
			}
			got, err := DecodeFullStatus(in)
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeFullStatus = %+v, %v; want ErrMalformed", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range got.Descriptors {
				if got.Descriptors[i].TransportIDErr == "" {
					got.Descriptors[i].TransportID.Raw = nil
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestFullStatusEncode(t *testing.T) {
	fs := FullStatus{Generation: 1, AdditionalLength: 7, Descriptors: []StatusDescriptor{{Key: k1, Holder: true, Type: 1,
		RelativeTargetPort: 1, DescriptorLength: 3, TransportID: ISCSIPortTransportID("iqn.1994-05.com.example:i1", "00023d000001")}}}
	got, err := fs.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if want := hx(t, lioFullStatus); !bytes.Equal(got, want) {
		t.Fatalf("Encode =\n% x\nwant\n% x", got, want)
	}
	lab, err := DecodeFullStatus(hx(t, labFullStatus))
	if err != nil {
		t.Fatal(err)
	}
	if got, err = lab.Encode(); err != nil || !bytes.Equal(got, hx(t, labFullStatus)) {
		t.Fatalf("re-encode of the lab status = % x, %v", got, err)
	}
	if _, err := (FullStatus{Descriptors: []StatusDescriptor{{TransportID: TransportID{Protocol: ProtoSRP}}}}).Encode(); !errors.Is(err, ErrTransportID) {
		t.Fatalf("Encode with an unencodable TransportID = %v", err)
	}
}

// prInSeeds are PR IN payloads from the reference and the lab transcripts
// (reconstructed from sg_persist's decoded output), whole and cut.
func prInSeeds(f *testing.F) [][]byte {
	var seeds [][]byte
	for _, s := range []string{
		`00 00 00 01 00 00 00 08 11 11 11 11 11 11 11 11`,
		`00 00 00 03 00 00 00 08 00 00 00 00 00 00 02 22`,                         // qemu-pr-helper.txt: gen 3, key 0x222
		`00 00 00 07 00 00 00 10 00 00 00 00 00 00 00 77 00 00 00 00 00 00 00 77`, // multipath.txt
		`00 00 00 01 00 00 00 10 11 11 11 11 11 11 11 11 00 00 00 00 00 03 00 00`,
		`00 00 00 01 00 00 00 10 00 00 00 00 00 00 01 11 00 00 00 00 00 01 00 00`, // qemu-pr-helper.txt: key 0x111 type 1
		`00 00 00 03 00 00 00 00`,
		`00 08 1d 90 ea 01 00 00`, // pr-two-paths.txt capabilities
		lioFullStatus, labFullStatus,
	} {
		b := hx(f, s)
		seeds = append(seeds, b, b[:len(b)/2])
	}
	return seeds
}

func FuzzDecodeKeys(f *testing.F) {
	for _, s := range prInSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKeys(b)
		if err != nil || k.Truncated {
			return
		}
		back, err := DecodeKeys(k.Encode())
		if err != nil || !reflect.DeepEqual(back, k) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, k)
		}
	})
}

func FuzzDecodeReservation(f *testing.F) {
	for _, s := range prInSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeReservation(b)
		if err != nil || r.Truncated {
			return
		}
		if r.Held {
			r.AdditionalLength = 16
		}
		back, err := DecodeReservation(r.Encode())
		if err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, r)
		}
	})
}

func FuzzDecodeCapabilities(f *testing.F) {
	for _, s := range prInSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCapabilities(b)
		if err != nil || c.Truncated {
			return
		}
		back, err := DecodeCapabilities(c.Encode())
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip: %+v, %v; want %+v", back, err, c)
		}
	})
}

func FuzzDecodeFullStatus(f *testing.F) {
	for _, s := range prInSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fs, err := DecodeFullStatus(b)
		if err != nil || fs.Truncated {
			return
		}
		enc, err := fs.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded status: %v", err)
		}
		back, err := DecodeFullStatus(enc)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if !reflect.DeepEqual(back, fs) {
			t.Fatalf("round trip:\n%+v\nwant\n%+v", back, fs)
		}
	})
}
