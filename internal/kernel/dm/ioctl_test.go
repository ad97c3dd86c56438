package dm

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"unsafe"
)

// TestLayout checks ioctlHeader and targetSpec against struct dm_ioctl and
// struct dm_target_spec of include/uapi/linux/dm-ioctl.h, and that their
// encoding/binary form (used to marshal them) is their memory layout.
func TestLayout(t *testing.T) {
	var h ioctlHeader
	var s targetSpec
	type field struct {
		name           string
		off, want      uintptr
		size, wantSize uintptr
	}
	for _, c := range []struct {
		name           string
		size, wantSize int
		binSize        int
		fields         []field
	}{
		{"dm_ioctl", int(unsafe.Sizeof(h)), 312, binary.Size(&h), []field{
			{"version", unsafe.Offsetof(h.Version), 0, unsafe.Sizeof(h.Version), 12},
			{"data_size", unsafe.Offsetof(h.DataSize), 12, unsafe.Sizeof(h.DataSize), 4},
			{"data_start", unsafe.Offsetof(h.DataStart), 16, unsafe.Sizeof(h.DataStart), 4},
			{"target_count", unsafe.Offsetof(h.TargetCount), 20, unsafe.Sizeof(h.TargetCount), 4},
			{"open_count", unsafe.Offsetof(h.OpenCount), 24, unsafe.Sizeof(h.OpenCount), 4},
			{"flags", unsafe.Offsetof(h.Flags), 28, unsafe.Sizeof(h.Flags), 4},
			{"event_nr", unsafe.Offsetof(h.EventNr), 32, unsafe.Sizeof(h.EventNr), 4},
			{"padding", unsafe.Offsetof(h.Padding), 36, unsafe.Sizeof(h.Padding), 4},
			{"dev", unsafe.Offsetof(h.Dev), 40, unsafe.Sizeof(h.Dev), 8},
			{"name", unsafe.Offsetof(h.Name), 48, unsafe.Sizeof(h.Name), 128},
			{"uuid", unsafe.Offsetof(h.UUID), 176, unsafe.Sizeof(h.UUID), 129},
			{"data", unsafe.Offsetof(h.Data), 305, unsafe.Sizeof(h.Data), 7},
		}},
		{"dm_target_spec", int(unsafe.Sizeof(s)), 40, binary.Size(&s), []field{
			{"sector_start", unsafe.Offsetof(s.SectorStart), 0, unsafe.Sizeof(s.SectorStart), 8},
			{"length", unsafe.Offsetof(s.Length), 8, unsafe.Sizeof(s.Length), 8},
			{"status", unsafe.Offsetof(s.Status), 16, unsafe.Sizeof(s.Status), 4},
			{"next", unsafe.Offsetof(s.Next), 20, unsafe.Sizeof(s.Next), 4},
			{"target_type", unsafe.Offsetof(s.TargetType), 24, unsafe.Sizeof(s.TargetType), 16},
		}},
	} {
		if c.size != c.wantSize {
			t.Errorf("sizeof(%s) = %d, want %d", c.name, c.size, c.wantSize)
		}
		if c.binSize != c.wantSize {
			t.Errorf("binary.Size(%s) = %d, want %d (implicit padding?)", c.name, c.binSize, c.wantSize)
		}
		for _, f := range c.fields {
			if f.off != f.want {
				t.Errorf("offsetof(%s.%s) = %d, want %d", c.name, f.name, f.off, f.want)
			}
			if f.size != f.wantSize {
				t.Errorf("sizeof(%s.%s) = %d, want %d", c.name, f.name, f.size, f.wantSize)
			}
		}
	}
	if headerSize != unsafe.Sizeof(h) || specSize != unsafe.Sizeof(s) {
		t.Errorf("headerSize %d, specSize %d disagree with the structs", headerSize, specSize)
	}
}

// iowr is _IOWR(type, nr, size) of include/uapi/asm-generic/ioctl.h.
func iowr(typ, nr, size uint32) uint32 { return 3<<30 | size<<16 | typ<<8 | nr }

// TestConstants pins the ioctl numbers and flags of include/uapi/linux/dm-ioctl.h.
func TestConstants(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want uint32
	}{
		{"DM_VERSION", ioctlVersion, iowr(0xfd, 0, 312)},
		{"DM_TABLE_STATUS", ioctlTableStatus, iowr(0xfd, 12, 312)},
		{"DM_VERSION literal", ioctlVersion, 0xc138fd00},
		{"DM_TABLE_STATUS literal", ioctlTableStatus, 0xc138fd0c},
		{"DM_STATUS_TABLE_FLAG", flagStatusTable, 1 << 4},
		{"DM_BUFFER_FULL_FLAG", flagBufferFull, 1 << 8},
		{"DM_NOFLUSH_FLAG", flagNoFlush, 1 << 11},
		{"DM_MAX_TYPE_NAME", maxTypeName, 16},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
}

// TestEncodeRequest checks the request bytes at the kernel's offsets.
func TestEncodeRequest(t *testing.T) {
	buf, err := encodeRequest(1024, 0x100810, flagNoFlush|flagStatusTable)
	if err != nil {
		t.Fatal(err)
	}
	ne := binary.NativeEndian
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"len", uint64(len(buf)), 1024},
		{"version[0]", uint64(ne.Uint32(buf[0:])), 4},
		{"version[1]", uint64(ne.Uint32(buf[4:])), 0},
		{"version[2]", uint64(ne.Uint32(buf[8:])), 0},
		{"data_size", uint64(ne.Uint32(buf[12:])), 1024},
		{"data_start", uint64(ne.Uint32(buf[16:])), 312},
		{"flags", uint64(ne.Uint32(buf[28:])), 1<<11 | 1<<4},
		{"dev", ne.Uint64(buf[40:]), 0x100810},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	for i := 48; i < len(buf); i++ {
		if buf[i] != 0 {
			t.Fatalf("byte %d = %#x, want 0 (name, uuid and data area empty)", i, buf[i])
		}
	}
	for _, size := range []int{0, 311, maxBufSize + 1} {
		if _, err := encodeRequest(size, 0, 0); err == nil {
			t.Errorf("encodeRequest(%d) succeeded", size)
		}
	}
}

// TestDecodeTargetsMalformed feeds replies no kernel writes; each must be an
// ErrMalformed error.
func TestDecodeTargetsMalformed(t *testing.T) {
	good := func() []byte {
		return kernelReply(t, 2048, 0, []fakeTarget{
			{0, 100, "linear", "8:16 0"},
			{100, 100, "linear", "8:32 0"},
			{200, 100, "linear", "8:48 0"},
		})
	}
	ne := binary.NativeEndian
	for _, c := range []struct {
		name   string
		mutate func(b []byte) []byte
		want   string
	}{
		{"short header", func(b []byte) []byte { return b[:300] }, "at least 312"},
		{"data_size beyond buffer", func(b []byte) []byte { ne.PutUint32(b[12:], uint32(len(b)+1)); return b }, "beyond"},
		{"data_start inside header", func(b []byte) []byte { ne.PutUint32(b[16:], 200); return b }, "data_start"},
		{"data_start beyond data_size", func(b []byte) []byte { ne.PutUint32(b[16:], ne.Uint32(b[12:])+8); return b }, "data_start"},
		{"count beyond data", func(b []byte) []byte { ne.PutUint32(b[20:], 4); return b }, "runs past"},
		{"huge count", func(b []byte) []byte { ne.PutUint32(b[20:], 0xffffffff); return b }, "runs past"},
		{"next backwards", func(b []byte) []byte { ne.PutUint32(b[312+20:], 0); return b }, "does not pass"},
		{"next into own params", func(b []byte) []byte { ne.PutUint32(b[312+20:], 41); return b }, "does not pass"},
		{"no NUL", func(b []byte) []byte {
			end := int(ne.Uint32(b[12:]))
			for i := end - 1; i >= 0 && b[i] == 0; i-- {
				b[i] = 'x'
			}
			return b
		}, "NUL"},
		{"data_size cuts spec", func(b []byte) []byte { ne.PutUint32(b[12:], 312+30); return b }, "runs past"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := c.mutate(good())
			h, err := decodeHeader(b)
			if err == nil {
				_, err = decodeTargets(b, h)
			}
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrMalformed mentioning %q", err, c.want)
			}
		})
	}
	// The unmutated reply decodes: the cases above fail for their mutation.
	b := good()
	h, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	if ts, err := decodeTargets(b, h); err != nil || len(ts) != 3 {
		t.Fatalf("good reply: %d targets, %v", len(ts), err)
	}
}

// TestTargetTypeFull16 covers a target_type filling all 16 bytes without a
// NUL, which older kernels (strncpy of sizeof) could write.
func TestTargetTypeFull16(t *testing.T) {
	b := kernelReply(t, 1024, 0, []fakeTarget{{0, 8, "abcdefghijklmnop", "x"}})
	h, err := decodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := decodeTargets(b, h)
	if err != nil {
		t.Fatal(err)
	}
	if ts[0].Type != "abcdefghijklmnop" || ts[0].Params != "x" {
		t.Fatalf("got %+v", ts[0])
	}
}

// FuzzDecodeTargets checks that no reply, however corrupt, panics the decoder
// or yields targets whose strings were read out of the data area.
func FuzzDecodeTargets(f *testing.F) {
	f.Add(kernelReply(f, 1024, 0, []fakeTarget{{0, 131072, "multipath", labTable}}))
	f.Add(kernelReply(f, 2048, 0, []fakeTarget{
		{0, 100, "linear", "8:16 0"}, {100, 100, "striped", "2 128 8:32 0 8:48 0"}, {200, 8, "error", ""},
	}))
	f.Add(kernelReply(f, 400, 0, []fakeTarget{{0, 8, "multipath", labStatus}}))
	f.Add(make([]byte, 312))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			return
		}
		ts, err := decodeTargets(b, h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(ts) != int(h.TargetCount) {
			t.Fatalf("%d targets, header says %d", len(ts), h.TargetCount)
		}
		total := 0
		for _, tg := range ts {
			total += len(tg.Params) + specSize + 1
			if strings.IndexByte(tg.Params, 0) >= 0 {
				t.Fatalf("params %q hold a NUL", tg.Params)
			}
		}
		if total > len(b) {
			t.Fatalf("targets need %d bytes, reply has %d", total, len(b))
		}
	})
}
