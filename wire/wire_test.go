package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestEncodeReplyReadKeys is the READ KEYS example of docs/pr-helper-protocol.md §2.5.
func TestEncodeReplyReadKeys(t *testing.T) {
	cdb := unhex(t, "5e 00 00 00 00 00 00 20 00 00 00 00 00 00 00 00")
	data := unhex(t, "00 00 00 05 00 00 00 08 11 22 33 44 55 66 77 88")
	got := EncodeReply(cdb, &Reply{Status: scsi.StatusGood, Data: data})
	want := append(unhex(t, "00 00 00 00 00 00 00 10"), make([]byte, SenseSize)...)
	want = append(want, data...)
	if !bytes.Equal(got, want) {
		t.Fatalf("reply\n got %x\nwant %x", got, want)
	}
}

// TestAppendReply: appending keeps what dst holds and adds EncodeReply's
// bytes, also into a buffer that held a longer reply before (the server's
// buffer per connection), whose old bytes must not show through.
func TestAppendReply(t *testing.T) {
	in := unhex(t, "5e 00 00 00 00 00 00 20 00 00 00 00 00 00 00 00")
	good := &Reply{Status: scsi.StatusGood, Data: bytes.Repeat([]byte{0xaa}, 24)}
	cc := &Reply{Status: scsi.StatusCheckCondition}
	cc.SetSense(scsi.SenseInvalidField.Fixed())
	if got := AppendReply([]byte("xy"), in, good); !bytes.Equal(got, append([]byte("xy"), EncodeReply(in, good)...)) {
		t.Fatalf("after a prefix: %x", got)
	}
	buf := bytes.Repeat([]byte{0xff}, 300)
	for _, rep := range []*Reply{good, cc, good} {
		buf = AppendReply(buf[:0], in, rep)
		if want := EncodeReply(in, rep); !bytes.Equal(buf, want) {
			t.Fatalf("reused buffer:\n got %x\nwant %x", buf, want)
		}
	}
}

func TestEncodeReplyRules(t *testing.T) {
	data := bytes.Repeat([]byte{0xaa}, 100)
	sense := scsi.SenseInvalidField.Fixed()
	tests := []struct {
		name     string
		cdb      [CDBSize]byte
		status   byte
		wantSize int
	}{
		{"PR IN GOOD fits", scsi.PRInCDB(0, 200), scsi.StatusGood, 100},
		{"PR IN GOOD clamped to allocation length", scsi.PRInCDB(0, 12), scsi.StatusGood, 12},
		{"PR IN allocation length zero", scsi.PRInCDB(0, 0), scsi.StatusGood, 0},
		{"PR IN CHECK CONDITION has no data", scsi.PRInCDB(0, 200), scsi.StatusCheckCondition, 0},
		{"PR IN RESERVATION CONFLICT has no data", scsi.PRInCDB(0, 200), scsi.StatusReservationConflict, 0},
		{"PR OUT GOOD has no data", scsi.PROutCDB(0, 0, 0, 24), scsi.StatusGood, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Reply{Status: tt.status, Data: data}
			rep.SetSense(sense)
			b := EncodeReply(tt.cdb[:], rep)
			if len(b) != HeaderSize+tt.wantSize {
				t.Fatalf("len %d, want %d", len(b), HeaderSize+tt.wantSize)
			}
			st, sz, sn, err := DecodeReplyHeader(b[:HeaderSize])
			if err != nil {
				t.Fatal(err)
			}
			if st != int32(tt.status) || sz != tt.wantSize {
				t.Fatalf("status %d size %d, want %d %d", st, sz, tt.status, tt.wantSize)
			}
			if !bytes.Equal(sn[:len(sense)], sense) || !bytes.Equal(sn[len(sense):], make([]byte, SenseSize-len(sense))) {
				t.Fatalf("sense not passed and zero padded: %x", sn)
			}
		})
	}
}

func TestSetSenseTruncatesAndZeroes(t *testing.T) {
	var r Reply
	r.SetSense(bytes.Repeat([]byte{1}, 200))
	r.SetSense([]byte{0x70, 0, 5})
	if r.Sense[0] != 0x70 || r.Sense[2] != 5 || r.Sense[3] != 0 || r.Sense[95] != 0 {
		t.Fatalf("sense %x", r.Sense)
	}
}

func TestValidateCDB(t *testing.T) {
	mk := func(op byte, n uint16) []byte {
		c := scsi.PRInCDB(0, n)
		c[0] = op
		return c[:]
	}
	tests := []struct {
		name string
		cdb  []byte
		ok   bool
	}{
		{"PR IN 8192", mk(0x5e, 8192), true},
		{"PR OUT 24", mk(0x5f, 24), true},
		{"PR IN 8193", mk(0x5e, 8193), false},
		{"PR OUT 65535", mk(0x5f, 65535), false},
		{"TEST UNIT READY", mk(0x00, 0), false},
		{"INQUIRY", mk(0x12, 36), false},
		{"short", []byte{0x5e}, false},
	}
	for _, tt := range tests {
		err := ValidateCDB(tt.cdb)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v is not ErrProtocol", tt.name, err)
		}
	}
}

// TestFramingIgnoresHighLengthBytes pins quirk 1 of docs/pr-helper-protocol.md §4.13: PR OUT is
// framed on CDB bytes 7-8 only, as QEMU does, even when bytes 5-6 are set.
func TestFramingIgnoresHighLengthBytes(t *testing.T) {
	c := scsi.PROutCDB(0, 0, 0, 0x00010018)
	if err := ValidateCDB(c[:]); err != nil {
		t.Fatalf("ValidateCDB: %v", err)
	}
	if n := scsi.TransferLength(c[:]); n != 24 {
		t.Fatalf("length %d, want 24", n)
	}
}

func TestDecodeReplyHeaderRejectsBadSize(t *testing.T) {
	h := make([]byte, HeaderSize)
	for _, sz := range []uint32{0x80000000, 8193, 0xffffffff} {
		h[4], h[5], h[6], h[7] = byte(sz>>24), byte(sz>>16), byte(sz>>8), byte(sz)
		if _, _, _, err := DecodeReplyHeader(h); err == nil {
			t.Errorf("size %#x accepted", sz)
		}
	}
	if _, _, _, err := DecodeReplyHeader(h[:50]); err == nil {
		t.Error("short header accepted")
	}
}

func FuzzDecodeReplyHeader(f *testing.F) {
	f.Add(make([]byte, HeaderSize))
	f.Add(unhex(f, "00 00 00 02 00 00 00 00 70 00 05"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, sz, _, err := DecodeReplyHeader(b)
		if err == nil && (len(b) != HeaderSize || sz < 0 || sz > MaxData) {
			t.Fatalf("accepted len %d size %d status %d", len(b), sz, st)
		}
	})
}

func FuzzEncodeReply(f *testing.F) {
	f.Add(unhex(f, "5e 00 00 00 00 00 00 00 08 00 00 00 00 00 00 00"), byte(0), 100)
	f.Add(unhex(f, "5f 00 00 00 00 00 00 00 18 00 00 00 00 00 00 00"), byte(0), 10)
	f.Fuzz(func(t *testing.T, cdb []byte, status byte, n int) {
		if n < 0 || n > 20000 {
			return
		}
		b := EncodeReply(cdb, &Reply{Status: status, Data: make([]byte, n)})
		_, sz, _, err := DecodeReplyHeader(b[:HeaderSize])
		if err != nil {
			t.Fatal(err)
		}
		if sz > scsi.TransferLength(cdb) || len(b) != HeaderSize+sz {
			t.Fatalf("size %d above allocation length %d", sz, scsi.TransferLength(cdb))
		}
		if sz > 0 && (status != scsi.StatusGood || cdb[0] != scsi.OpPersistentReserveIn) {
			t.Fatalf("data sent for status %#x op %#x", status, cdb[0])
		}
	})
}
