package pr

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// fuzzNexuses are the I_T nexuses the fuzzer's commands come from: two ISIDs
// of one iSCSI initiator (LIO shares UAs and the "registered" flag between
// them), another iSCSI initiator on a second port, a SAS and an FC initiator.
var fuzzNexuses = []Nexus{
	{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", "00023d000001"), RTPI: 1},
	{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", "00023d000002"), RTPI: 1},
	{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i2", "00023d000001"), RTPI: 2},
	{Initiator: SASInitiator(0x5001405b00000001), RTPI: 3},
	{Initiator: FCInitiator(0x21000024ff000001), RTPI: 4},
}

var fuzzPorts = []Port{
	{RTPI: 1, Protocol: scsi.ProtoISCSI},
	{RTPI: 2, Protocol: scsi.ProtoISCSI, Initiators: []Initiator{fuzzNexuses[0].Initiator, fuzzNexuses[2].Initiator}},
	{RTPI: 3, Protocol: scsi.ProtoSAS},
	{RTPI: 4, Protocol: scsi.ProtoFC, Initiators: []Initiator{}},
}

var fuzzKeys = []uint64{0, 0x1111111111111111, 0x2222222222222222, 0x3333333333333333}

var fuzzOther = [][]byte{
	{0x00, 0, 0, 0, 0, 0},             // TEST UNIT READY
	{0x12, 0, 0, 0, 0x24, 0},          // INQUIRY
	{0x03, 0, 0, 0, 0x12, 0},          // REQUEST SENSE
	{0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0}, // READ(10)
	{0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0}, // WRITE(10)
	{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, // SYNCHRONIZE CACHE(10)
	{0x1a, 0, 0x3f, 0, 0xff, 0},       // MODE SENSE(6)
	{0x16, 0, 0, 0, 0, 0},             // RESERVE(6)
	{0x17, 0, 0, 0, 0, 0},             // RELEASE(6)
	{0xa3, 0x1f, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0},
	{0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0},
}

var fuzzAllocs = []uint16{0, 4, 6, 8, 12, 16, 21, 22, 24, 79, 80, 90, 8192}

// byteReader hands out the fuzz input, then zeros.
type byteReader struct{ b []byte }

func (r *byteReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *byteReader) done() bool { return len(r.b) == 0 }

// fuzzCommand decodes one command from r and runs it against st.
func fuzzCommand(t *testing.T, p Profile, st *State, r *byteReader) {
	b0 := r.next()
	n := fuzzNexuses[int(b0)%len(fuzzNexuses)]
	kind := (b0 >> 3) % 8
	before := st.Clone()
	beforeGen := st.Generation
	var res Result
	var alloc = -1
	prOut := false
	switch {
	case kind <= 1: // PR IN
		sa := r.next()
		if sa&0x80 == 0 {
			sa %= 4
		}
		var a uint16
		if x := r.next(); x < 0xf0 {
			a = fuzzAllocs[int(x)%len(fuzzAllocs)]
		} else {
			a = uint16(r.next())<<8 | uint16(r.next())
		}
		alloc = int(a)
		c := scsi.PRInCDB(sa, a)
		res = Execute(p, st, n, c[:], nil)
	case kind <= 5: // PR OUT
		prOut = true
		c, param := fuzzPROut(r)
		res = Execute(p, st, n, c, param)
	case kind == 6:
		res = CheckAccess(p, st, n, fuzzOther[int(r.next())%len(fuzzOther)])
	default:
		if r.next()%8 == 0 {
			PowerOn(p, st)
			beforeGen = st.Generation
		} else {
			res = Execute(p, st, n, []byte{r.next(), r.next(), r.next()}, nil)
		}
	}
	checkInvariants(t, st, beforeGen)
	checkRegisteredFlag(t, p, st)
	switch res.Status {
	case scsi.StatusGood, scsi.StatusCheckCondition, scsi.StatusReservationConflict:
	default:
		t.Fatalf("status %#x", res.Status)
	}
	if alloc >= 0 && len(res.Data) > alloc {
		t.Fatalf("PR IN returned %d bytes for allocation length %d", len(res.Data), alloc)
	}
	if res.Data != nil && (alloc < 0 && res.Status != scsi.StatusGood) {
		t.Fatalf("data with status %#x", res.Status)
	}
	// A command that fails, and any PR IN, leaves the state alone; only a
	// reported unit attention is consumed.
	sn, _ := res.ParseSense()
	ua := res.Status == scsi.StatusCheckCondition && sn.Key == scsi.KeyUnitAttention
	if !ua && (alloc >= 0 || (prOut && res.Status != scsi.StatusGood)) {
		after := st.Clone()
		if !reflect.DeepEqual(normalized(before), normalized(after)) {
			t.Fatalf("state changed by a command answering %s:\nbefore %+v\nafter  %+v", describe(res), before, after)
		}
	}
}

// normalized is s as a decode gives it back: empty slices nil, no row tracking.
func normalized(s State) State { s.normalize(); s.rows = nil; return s }

// fuzzPROut builds a PR OUT CDB and parameter list from r: any service action,
// valid or raw scope/type, keys from a small set, flags, SPEC_I_PT and REGISTER
// AND MOVE TransportIDs, and truncated or over-long lists.
func fuzzPROut(r *byteReader) ([]byte, []byte) {
	sa := r.next()
	if sa&0x80 == 0 {
		sa %= 10
	} else {
		sa &= 0x1f
	}
	tb := r.next()
	byte2 := []byte{1, 3, 5, 6, 7, 8}[int(tb)%6]
	if tb >= 0xe0 {
		byte2 = r.next()
	}
	kb := r.next()
	rk, sark := fuzzKeys[kb&3], fuzzKeys[kb>>2&3]
	flags := r.next()
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	if sa == scsi.SARegisterAndMove {
		p[17] = flags & 0x03
		binary.BigEndian.PutUint16(p[18:20], []uint16{1, 2, 3, 4, 0x7777}[int(flags>>2)%5])
		tid := fuzzNexuses[int(flags>>5)%len(fuzzNexuses)].Initiator.TransportID()
		binary.BigEndian.PutUint32(p[20:24], uint32(len(tid)))
		p = append(p, tid...)
	} else {
		p[20] = flags & 0x0d
		if flags&0x08 != 0 && flags&0x10 != 0 {
			var tids []byte
			for i := 0; i < int(flags>>5)%3+1; i++ {
				tids = append(tids, fuzzNexuses[int(r.next())%len(fuzzNexuses)].Initiator.TransportID()...)
			}
			p = binary.BigEndian.AppendUint32(p, uint32(len(tids)))
			p = append(p, tids...)
		}
	}
	pll := uint32(len(p))
	switch m := r.next(); {
	case m < 0xe0:
	case m < 0xe8:
		p = p[:int(m-0xe0)*3] // truncated list, CDB says so
		pll = uint32(len(p))
	case m < 0xf0:
		pll += 0x10000 // 32-bit length beyond what the helper frames
	case m < 0xf8:
		p = append(p, make([]byte, int(m&7)+1)...)
		pll = uint32(len(p))
	default:
		pll = uint32(r.next()) // CDB length unrelated to the bytes sent
	}
	c := scsi.PROutCDB(sa, 0, 0, pll)
	c[2] = byte2
	return c[:], p
}

// checkRegisteredFlag checks that the engine keeps LIO's "registered" flag
// (Registration.FlagCleared, D29) one per initiator device and target port:
// equal on every registration of the device at the port, and never set
// without Profile.SharedRegisteredFlag.
func checkRegisteredFlag(t *testing.T, p Profile, st *State) {
	t.Helper()
	for i, a := range st.Registrations {
		if a.FlagCleared && !p.SharedRegisteredFlag {
			t.Fatalf("registration %d (%s) has FlagCleared under profile %s", i, a.Nexus, p.Name)
		}
		for j, b := range st.Registrations[:i] {
			if a.Nexus.RTPI == b.Nexus.RTPI && a.Nexus.Initiator.SameNode(b.Nexus.Initiator) && a.FlagCleared != b.FlagCleared {
				t.Fatalf("registrations %d and %d of one device at port %d disagree on FlagCleared", j, i, a.Nexus.RTPI)
			}
		}
	}
}

// checkInvariants checks what must hold after every command.
func checkInvariants(t *testing.T, st *State, beforeGen uint32) {
	t.Helper()
	if err := st.Validate(); err != nil {
		t.Fatalf("invariant: %v\nstate %+v", err, st)
	}
	if r := st.Reservation; r != nil && !allRegistrants(r.Type) && st.regExact(r.Holder) < 0 {
		t.Fatalf("holder %s of a type %d reservation is not registered", r.Holder, r.Type)
	}
	if st.Generation < beforeGen {
		t.Fatalf("generation went down: %d -> %d", beforeGen, st.Generation)
	}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back State
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatalf("state does not round-trip: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(normalized(*st), back) {
		t.Fatalf("round trip changed the state:\n%+v\n%+v", *st, back)
	}
	b2, _ := back.MarshalBinary()
	if string(b) != string(b2) {
		t.Fatalf("encoding is not stable:\n%x\n%x", b, b2)
	}
	// Version 1 (JSON), as earlier helpers stored it, decodes to the same state;
	// a state with an initiator that is not UTF-8 has no JSON encoding (the
	// fuzzer found one whose ISID JSON turned into U+FFFD: 28f204c0fd50bfb8).
	j, err := st.marshalJSON()
	if _, bad := st.nonUTF8(); bad {
		if err == nil {
			t.Fatalf("a state with a non-UTF-8 initiator encoded as JSON: %s", j)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	var old State
	if err := old.UnmarshalBinary(j); err != nil {
		t.Fatalf("JSON state does not decode: %v\n%s", err, j)
	}
	if !reflect.DeepEqual(old, back) {
		t.Fatalf("JSON and binary encodings decode differently:\n%+v\n%+v", old, back)
	}
}

func FuzzEngine(f *testing.F) {
	// Seeds: a register/reserve/preempt walk, SPEC_I_PT, REGISTER AND MOVE,
	// truncated lists and PR IN with odd allocation lengths.
	f.Add([]byte{0x00, 0x10, 0, 0, 0x04, 0, 0, 0x10, 1, 1, 0x01, 0, 0, 0x21, 0, 0, 0, 0, 0x11, 0x04, 1, 0x09, 0, 0x05, 0, 0x01, 0, 0x0c})
	f.Add([]byte{0x01, 0x10, 0x00, 0, 0x04, 0x18, 0, 1, 2, 0, 0, 3, 0x07, 0x10, 0x01, 0x01, 0x00, 0x01, 0x07, 0x11, 0x02, 0x21, 0x05})
	f.Add([]byte{0x80, 0x12, 0x06, 0, 0x08, 0, 0x81, 0x13, 0x06, 0, 0x0c, 0, 0x10, 1, 4, 0x06, 0, 0x20, 0x87, 0x08, 0x0a, 0x10, 0xff})
	f.Add([]byte{0x18, 0x00, 0x00, 0x04, 0x00, 0xe3, 0x30, 0x07, 0x31, 0x08, 0x32, 0x03, 0x08, 0x03, 0xf5, 0x0b, 0x01, 0x10, 0x09})
	f.Add([]byte{0x20, 0x00, 0x00, 0x04, 0x01, 0xf9, 0x00, 0x21, 0x00, 0x00, 0x08, 0x00, 0xea, 0x38, 0x00, 0x38, 0x06, 0x08, 0x02, 0x03})
	f.Add([]byte{0x40, 0x00, 0x00, 0x04, 0x00, 0x00, 0x41, 0x00, 0x00, 0x08, 0x00, 0x00, 0x42, 0x01, 0x04, 0x01, 0x00, 0x00, 0x43, 0x04, 0x04, 0x09, 0x00, 0x00, 0x00, 0x03, 0xf0, 0x00, 0x20})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &byteReader{b: data}
		cfg := r.next()
		p := LIO()
		if cfg&1 != 0 {
			p = SPC4()
		}
		if cfg&2 != 0 {
			p.ReportUnitAttentions = false
		}
		var st State
		if cfg&4 != 0 {
			st.Ports = fuzzPorts
			st = st.Clone()
		}
		for i := 0; i < 64 && !r.done(); i++ {
			fuzzCommand(t, p, &st, r)
		}
	})
}

func FuzzUnmarshalState(f *testing.F) {
	f.Add([]byte(`{"v":1,"generation":3}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"generation":1}`))
	f.Add([]byte(`{"v":1,"generation":2,"registrations":[{"nexus":{"initiator":{"proto":5,"name":"iqn.a","isid":"00023d000001"},"rtpi":1},"key":1},{"nexus":{"initiator":{"proto":6,"addr":5},"rtpi":3},"key":2}],"reservation":{"holder":{"initiator":{"proto":5,"name":"iqn.a","isid":"00023d000001"},"rtpi":1},"type":8,"scope":0},"aptpl":true,"unit_attentions":[{"nexus":{"initiator":{"proto":6,"addr":5},"rtpi":3},"conditions":[{"asc":42,"ascq":4}]}],"ports":[{"rtpi":1,"proto":5,"initiators":null}]}`))
	f.Add([]byte(`{"v":1,"reservation":{"holder":{"initiator":{"proto":5},"rtpi":1},"type":3}}`))
	for _, st := range []State{{}, goldenValue(), quirkState()} {
		b, _ := st.MarshalBinary()
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var st State
		if err := st.UnmarshalBinary(b); err != nil {
			return
		}
		checkInvariants(t, &st, st.Generation)
		for _, n := range fuzzNexuses {
			for _, sa := range []byte{0, 1, 2, 3} {
				c := scsi.PRInCDB(sa, 8192)
				Execute(LIO(), &st, n, c[:], nil)
			}
			param := make([]byte, 24)
			c := scsi.PROutCDB(scsi.SAPreempt, 0, 8, 24)
			Execute(SPC4(), &st, n, c[:], param)
			checkInvariants(t, &st, 0)
		}
	})
}

// FuzzBinaryState feeds the version 2 decoder alone (the version byte is added):
// no panic, no huge allocation, and what decodes round-trips exactly.
func FuzzBinaryState(f *testing.F) {
	for _, st := range []State{{}, goldenValue(), quirkState()} {
		b, _ := st.MarshalBinary()
		f.Add(b[1:])
	}
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x07})
	f.Fuzz(func(t *testing.T, b []byte) {
		var st State
		if err := st.UnmarshalBinary(append([]byte{StateVersion}, b...)); err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("error without ErrState: %v", err)
			}
			return
		}
		checkInvariants(t, &st, st.Generation)
	})
}
