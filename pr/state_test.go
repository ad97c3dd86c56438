package pr

import (
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// goldenState is the version 1 (JSON) encoding of a state with every field set.
// It must keep decoding: stores written by earlier helpers hold these bytes.
const goldenState = `{"v":1,"generation":7,"registrations":[{"nexus":{"initiator":{"proto":5,"name":"iqn.1994-05.com.example:i1","isid":"00023d000001"},"rtpi":1},"key":1229782938247303441,"all_tg_pt":true,"aptpl":true},{"nexus":{"initiator":{"proto":6,"addr":5764959757597147137},"rtpi":3},"key":2459565876494606882}],"reservation":{"holder":{"initiator":{"proto":5,"name":"iqn.1994-05.com.example:i1","isid":"00023d000001"},"rtpi":1},"type":5,"scope":0},"aptpl":true,"spc2_holder":{"initiator":{"proto":0,"addr":2377900762148634625},"rtpi":4},"unit_attentions":[{"nexus":{"initiator":{"proto":6,"addr":5764959757597147137},"rtpi":3},"conditions":[{"asc":42,"ascq":4},{"asc":42,"ascq":3}]}],"ports":[{"rtpi":1,"proto":5,"initiators":null},{"rtpi":3,"proto":6,"initiators":[{"proto":6,"addr":5764959757597147137}]},{"rtpi":4,"proto":0,"initiators":[]}]}`

func goldenValue() State {
	sas := Nexus{Initiator: SASInitiator(0x5001405b00000001), RTPI: 3}
	fc := Nexus{Initiator: FCInitiator(0x21000024ff000001), RTPI: 4}
	return State{
		Generation: 7,
		Registrations: []Registration{
			{Nexus: nx1, Key: k1, AllTgPt: true, APTPL: true},
			{Nexus: sas, Key: k2},
		},
		Reservation:    &Reservation{Holder: nx1, Type: scsi.TypeWriteExclusiveRegOnly},
		APTPL:          true,
		SPC2Holder:     &fc,
		UnitAttentions: []PendingUA{{Nexus: sas, Conditions: []UA{{0x2a, 4}, {0x2a, 3}}}},
		Ports: []Port{
			{RTPI: 1, Protocol: scsi.ProtoISCSI},
			{RTPI: 3, Protocol: scsi.ProtoSAS, Initiators: []Initiator{sas.Initiator}},
			{RTPI: 4, Protocol: scsi.ProtoFC, Initiators: []Initiator{}},
		},
	}
}

// goldenBinary is the version 2 encoding of goldenValue (codec.go's grammar): it
// must keep decoding, and MarshalBinary must keep writing it.
const goldenBinary = "02" + "07" + "07" + // version, generation 7, flags APTPL|reservation|SPC-2 holder
	"02" + // two registrations
	"05" + "1a" + "69716e2e313939342d30352e636f6d2e6578616d706c653a6931" + "0c" + "303030323364303030303031" + "00" + "01" + "1111111111111111" + "03" +
	"06" + "00" + "00" + "81808080b08bd08050" + "03" + "2222222222222222" + "00" +
	"05" + "1a" + "69716e2e313939342d30352e636f6d2e6578616d706c653a6931" + "0c" + "303030323364303030303031" + "00" + "01" + "05" + "00" + // reservation: holder, WERO, scope 0
	"00" + "00" + "00" + "818080f8cf84808021" + "04" + // SPC-2 holder: FC at port 4
	"01" + "06" + "00" + "00" + "81808080b08bd08050" + "03" + "02" + "2a04" + "2a03" + // one UA queue of two
	"03" + "01" + "05" + "00" + "03" + "06" + "01" + "01" + "06" + "00" + "00" + "81808080b08bd08050" + "04" + "00" + "01" + "00" // three ports

func TestStateGolden(t *testing.T) {
	b, err := goldenValue().MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(b) != goldenBinary {
		t.Fatalf("encoding changed:\n got %x\nwant %s", b, goldenBinary)
	}
	j, err := goldenValue().marshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if string(j) != goldenState {
		t.Fatalf("JSON encoding changed:\n got %s\nwant %s", j, goldenState)
	}
	bin, _ := hex.DecodeString(goldenBinary)
	for name, in := range map[string][]byte{"JSON (version 1)": []byte(goldenState), "binary (version 2)": bin} {
		var st State
		if err := st.UnmarshalBinary(in); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(st, goldenValue()) {
			t.Fatalf("%s: decoded %+v", name, st)
		}
		if st.Ports[0].Initiators != nil || st.Ports[2].Initiators == nil {
			t.Fatalf("%s: Port.Initiators lost its nil / empty distinction", name)
		}
	}
}

func TestStateZeroRoundTrip(t *testing.T) {
	b, err := (State{}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(b) != "020000000000" {
		t.Fatalf("zero state = %x", b)
	}
	for _, in := range [][]byte{b, []byte(`{"v":1,"generation":0}`), []byte(" \n{\"v\":1}")} {
		var st State
		if err := st.UnmarshalBinary(in); err != nil || !reflect.DeepEqual(st, State{}) {
			t.Fatalf("%q: %+v, %v", in, st, err)
		}
	}
}

func TestStateUnmarshalErrors(t *testing.T) {
	holder := `{"initiator":{"proto":5,"name":"iqn.a","isid":"00023d000001"},"rtpi":1}`
	tests := []struct{ name, in, wantMsg string }{
		{"empty", ``, "bad PR state"},
		{"not JSON", `v=1`, "bad PR state"},
		{"no version", `{"generation":1}`, "no version"},
		{"version 2", `{"v":2}`, "version 2"},
		{"version 0", `{"v":0}`, "version 0"},
		{"version string", `{"v":"1"}`, "bad PR state"},
		{"unknown field", `{"v":1,"gen":3}`, "unknown field"},
		{"trailing data", `{"v":1} {}`, "after top-level value"},
		{"key 0", `{"v":1,"registrations":[{"nexus":` + holder + `,"key":0}]}`, "key 0"},
		{"stale scope not a type", `{"v":1,"registrations":[{"nexus":` + holder + `,"key":1,"stale_scope":2}]}`, "stale scope 0x2"},
		{"reservation stale scope not a type", `{"v":1,"registrations":[{"nexus":` + holder + `,"key":1}],"reservation":{"holder":` + holder + `,"type":3,"stale_scope":9}}`, "stale scope 0x9"},
		{"bad type", `{"v":1,"registrations":[{"nexus":` + holder + `,"key":1}],"reservation":{"holder":` + holder + `,"type":2}}`, "type"},
		{"bad scope", `{"v":1,"registrations":[{"nexus":` + holder + `,"key":1}],"reservation":{"holder":` + holder + `,"type":3,"scope":1}}`, "scope"},
		{"unregistered holder", `{"v":1,"reservation":{"holder":` + holder + `,"type":3}}`, "not registered"},
		{"empty UA queue", `{"v":1,"unit_attentions":[{"nexus":` + holder + `,"conditions":[]}]}`, "empty"},
		{"generation overflow", `{"v":1,"generation":4294967296}`, "bad PR state"},
		{"unknown version byte", "\x03\x00\x00\x00\x00\x00", "version byte 0x3"},
		{"binary truncated", "\x02\x07", "truncated"},
		{"binary trailing data", "\x02\x00\x00\x00\x00\x00\x00", "1 bytes after"},
		{"binary unknown flags", "\x02\x00\x08\x00\x00\x00", "unknown flags"},
		{"binary generation overflow", "\x02\x80\x80\x80\x80\x10\x00\x00\x00\x00", "generation 4294967296 out of range"},
		{"binary varint overflow", "\x02\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "overflows"},
		{"binary huge count", "\x02\x00\x00\xff\xff\xff\x07", "longer than the data"},
		{"binary rtpi overflow", "\x02\x00\x00\x01\x05\x00\x00\x00\x80\x80\x04" + "\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00", "out of range"},
		{"binary key 0", "\x02\x00\x00\x01\x05\x05iqn.a\x00\x00\x01" + "\x00\x00\x00\x00\x00\x00\x00\x00" + "\x00\x00\x00", "key 0"},
		{"binary unregistered holder", "\x02\x00\x02\x00\x05\x05iqn.a\x00\x00\x01\x03\x00\x00\x00", "not registered"},
		{"binary empty UA queue", "\x02\x00\x00\x00\x01\x05\x05iqn.a\x00\x00\x01\x00\x00", "empty"},
		{"binary port marker", "\x02\x00\x00\x00\x00\x01\x01\x05\x02", "marker"},
		{"binary stale scope 0", "\x02\x00\x00\x01\x05\x05iqn.a\x00\x00\x01" + "\x00\x00\x00\x00\x00\x00\x00\x01" + "\x04\x00\x00\x00", "stale scope 0 encoded"},
		{"binary reservation stale flag alone", "\x02\x00\x08\x00\x00\x00", "unknown flags"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := goldenValue()
			err := st.UnmarshalBinary([]byte(tc.in))
			if !errors.Is(err, ErrState) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("err = %v, want ErrState mentioning %q", err, tc.wantMsg)
			}
			if !reflect.DeepEqual(st, goldenValue()) {
				t.Fatal("a failed UnmarshalBinary changed the state")
			}
		})
	}
}

func TestPowerOn(t *testing.T) {
	st := goldenValue()
	PowerOn(LIO(), &st)
	if st.Generation != 2 || len(st.Registrations) != 2 || st.Reservation == nil || st.SPC2Holder != nil || st.UnitAttentions != nil {
		t.Fatalf("LIO restart with APTPL: %+v", st)
	}
	st = goldenValue()
	PowerOn(SPC4(), &st)
	if st.Generation != 7 {
		t.Fatalf("SPC-4 restart kept generation %d, want 7", st.Generation)
	}
	st = goldenValue()
	st.APTPL = false
	PowerOn(LIO(), &st)
	if !reflect.DeepEqual(st, State{Ports: goldenValue().Ports}) {
		t.Fatalf("restart without APTPL: %+v", st)
	}
	PowerOn(LIO(), nil)
}

// quirkState holds what D27, D28 and D29 leave behind: two registrations of one
// nexus, stale scopes and a cleared "registered" flag (not in sync: a codec
// test, not an engine state).
func quirkState() State {
	a := Nexus{Initiator: SASInitiator(0x5001405b00000001), RTPI: 1}
	return State{
		Generation: 3,
		Registrations: []Registration{
			{Nexus: a, Key: 0xa1, StaleScope: scsi.TypeExclusiveAccess},
			{Nexus: a, Key: 0xa1, FlagCleared: true},
		},
		Reservation: &Reservation{Holder: a, Type: scsi.TypeWriteExclusive, StaleScope: scsi.TypeWriteExclusiveRegOnly},
	}
}

// TestStateStaleScopeAndDuplicates round-trips what the LIO profile's D27, D28
// and D29 leave in a state (docs/spc4-pr.md §14): two registrations of one
// nexus, a registration's stale scope and the reservation's, a cleared
// "registered" flag, through both encodings, and pins the binary bytes of the
// stale-scope and flag fields.
func TestStateStaleScopeAndDuplicates(t *testing.T) {
	st := quirkState()
	if err := st.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	nexus := "06" + "00" + "00" + "81808080b08bd08050" + "01" // SAS 0x5001405b00000001 at port 1
	want := "02" + "03" + "0a" +                              // version, generation 3, flags reservation|reservation stale scope
		"02" + nexus + "00000000000000a1" + "04" + "03" + // stale scope 3 follows
		nexus + "00000000000000a1" + "08" + // FlagCleared (D29)
		nexus + "01" + "00" + "05" + // WE, scope 0, stale scope 5
		"00" + "00"
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("binary\n got %s\nwant %s", got, want)
	}
	var back State
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("UnmarshalBinary: %v", err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Fatalf("binary round trip: %+v, want %+v", back, st)
	}
	j, err := st.MarshalJSONV1()
	if err != nil {
		t.Fatal(err)
	}
	back = State{}
	if err := back.UnmarshalBinary(j); err != nil {
		t.Fatalf("UnmarshalBinary(JSON): %v", err)
	}
	if !reflect.DeepEqual(back, st) {
		t.Fatalf("JSON round trip: %+v, want %+v", back, st)
	}
	if got := back.holderIndex(); got != 0 {
		t.Fatalf("holderIndex = %d, want 0 (the first registration of the holder's nexus)", got)
	}
	if back.isHolder(1) {
		t.Fatal("the second registration of the holder's nexus holds the reservation")
	}
}
