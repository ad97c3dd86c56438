package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Ioctl request numbers of include/uapi/linux/dm-ioctl.h:
// _IOWR(DM_IOCTL 0xfd, nr, struct dm_ioctl) with sizeof(struct dm_ioctl) = 312.
const (
	ioctlVersion     = 0xc138fd00 // DM_VERSION, nr 0
	ioctlTableStatus = 0xc138fd0c // DM_TABLE_STATUS, nr 12
)

// Flags of struct dm_ioctl (include/uapi/linux/dm-ioctl.h).
const (
	// flagStatusTable asks DM_TABLE_STATUS for the table line instead of the
	// status line.
	flagStatusTable = 1 << 4
	// flagBufferFull is set by the kernel when the result did not fit.
	flagBufferFull = 1 << 8
	// flagNoFlush keeps targets from flushing before they report status
	// (it matters to thin pools; qemu-pr-helper sets it, so do we).
	flagNoFlush = 1 << 11
)

// interfaceVersion is the dm ioctl interface version we speak. The kernel's
// check_version accepts any request whose major equals its own (4) and whose
// minor is not above its own; 4.0.0 is what qemu-pr-helper sends and covers
// everything used here.
var interfaceVersion = [3]uint32{4, 0, 0}

// headerSize is sizeof(struct dm_ioctl); specSize is sizeof(struct
// dm_target_spec). The layout test checks both against the Go structs.
const (
	headerSize = 312
	specSize   = 40
)

// Buffer sizes for DM_TABLE_STATUS: the first try has room for a multipath
// map of a few hundred paths; on DM_BUFFER_FULL_FLAG the buffer doubles, up to
// maxBufSize, which bounds what a single reply may cost.
const (
	initialBufSize = 16 << 10
	maxBufSize     = 4 << 20
)

// maxTypeName is DM_MAX_TYPE_NAME, the size of dm_target_spec.target_type.
const maxTypeName = 16

// ioctlHeader mirrors struct dm_ioctl of include/uapi/linux/dm-ioctl.h. It has
// no implicit padding, so its encoding/binary form is its memory layout.
type ioctlHeader struct {
	Version     [3]uint32 // in/out
	DataSize    uint32    // whole buffer, this header included
	DataStart   uint32    // offset of the data area from the header's start
	TargetCount uint32    // out: number of dm_target_spec in the data area
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Padding     uint32
	Dev         uint64 // huge_encode_dev form, see Dev.Encode
	Name        [128]byte
	UUID        [129]byte
	Data        [7]byte
}

// targetSpec mirrors struct dm_target_spec. The target's parameter (or status)
// string follows it, NUL-terminated.
type targetSpec struct {
	SectorStart uint64
	Length      uint64
	Status      int32
	// Next is, in a DM_TABLE_STATUS reply, the offset of the next spec from
	// the start of the data area (the first spec), not from this spec:
	// drivers/md/dm-ioctl.c retrieve_status sets spec->next = outptr - outbuf.
	// (For DM_TABLE_LOAD input it is relative to the current spec; we never
	// load tables.)
	Next       uint32
	TargetType [maxTypeName]byte
}

// ErrMalformed is wrapped by every error about bytes or text the kernel is
// not expected to produce: a reply that does not decode, a table or status
// line that does not parse.
var ErrMalformed = errors.New("malformed device-mapper data")

// Target is one target of a dm table as DM_TABLE_STATUS reports it.
type Target struct {
	// Start and Length are the target's range on the dm device, in 512-byte
	// sectors.
	Start, Length uint64
	// Type is the target type name ("multipath", "linear", ...).
	Type string
	// Params is the table line when the table was asked for, else the
	// status line, without a trailing blank.
	Params string
}

// encodeRequest lays out a request of size bytes (header + data area) for the
// device dev, with flags.
func encodeRequest(size int, dev uint64, flags uint32) ([]byte, error) {
	if size < headerSize || size > maxBufSize {
		return nil, fmt.Errorf("dm ioctl buffer of %d bytes: want %d..%d", size, headerSize, maxBufSize)
	}
	h := ioctlHeader{
		Version:   interfaceVersion,
		DataSize:  uint32(size),
		DataStart: headerSize,
		Flags:     flags,
		Dev:       dev,
	}
	buf := make([]byte, size)
	if _, err := binary.Encode(buf, binary.NativeEndian, &h); err != nil {
		return nil, fmt.Errorf("encode dm_ioctl: %w", err)
	}
	return buf, nil
}

// decodeHeader reads the struct dm_ioctl at the start of buf.
func decodeHeader(buf []byte) (ioctlHeader, error) {
	var h ioctlHeader
	if len(buf) < headerSize {
		return h, fmt.Errorf("%w: dm_ioctl reply of %d bytes, want at least %d", ErrMalformed, len(buf), headerSize)
	}
	if _, err := binary.Decode(buf[:headerSize], binary.NativeEndian, &h); err != nil {
		return h, fmt.Errorf("%w: decode dm_ioctl: %v", ErrMalformed, err)
	}
	return h, nil
}

// decodeTargets reads the targets of a DM_TABLE_STATUS reply in buf, whose
// header is h. It checks every offset against the data the kernel says it
// wrote (h.DataSize), so that a short or corrupt reply is an error, never an
// out-of-range read.
func decodeTargets(buf []byte, h ioctlHeader) ([]Target, error) {
	if h.TargetCount == 0 {
		return []Target{}, nil
	}
	end := uint64(h.DataSize)
	if end > uint64(len(buf)) {
		return nil, fmt.Errorf("%w: data_size %d beyond the %d-byte buffer", ErrMalformed, end, len(buf))
	}
	start := uint64(h.DataStart)
	if start < headerSize || start > end {
		return nil, fmt.Errorf("%w: data_start %d outside %d..%d", ErrMalformed, start, headerSize, end)
	}
	data := buf[start:end]
	// Every target takes at least a spec and a NUL: bound the allocation by
	// what the data can hold, not by the count the reply claims.
	n := min(uint64(h.TargetCount), uint64(len(data))/(specSize+1))
	targets := make([]Target, 0, n)
	var off uint64
	for i := uint32(0); i < h.TargetCount; i++ {
		if off+specSize > uint64(len(data)) {
			return nil, fmt.Errorf("%w: target %d of %d: spec at data offset %d runs past data_size %d",
				ErrMalformed, i+1, h.TargetCount, off, h.DataSize)
		}
		var s targetSpec
		if _, err := binary.Decode(data[off:off+specSize], binary.NativeEndian, &s); err != nil {
			return nil, fmt.Errorf("%w: target %d: decode dm_target_spec: %v", ErrMalformed, i+1, err)
		}
		params := data[off+specSize:]
		nul := bytes.IndexByte(params, 0)
		if nul < 0 {
			return nil, fmt.Errorf("%w: target %d: parameter string not NUL-terminated within data_size", ErrMalformed, i+1)
		}
		targets = append(targets, Target{
			Start:  s.SectorStart,
			Length: s.Length,
			Type:   cString(s.TargetType[:]),
			Params: string(bytes.TrimRight(params[:nul], " ")),
		})
		if i+1 == h.TargetCount {
			break
		}
		// The kernel puts the next spec after this one's NUL, aligned to 8:
		// anything that does not move forward past the string is corrupt
		// (and would loop).
		next := uint64(s.Next)
		if next < off+specSize+uint64(nul)+1 {
			return nil, fmt.Errorf("%w: target %d: next %d does not pass its parameters (end %d)",
				ErrMalformed, i+1, next, off+specSize+uint64(nul)+1)
		}
		off = next
	}
	return targets, nil
}

// cString returns b up to its first NUL, or all of b when there is none
// (older kernels strncpy the full 16 bytes of target_type).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// IsMultipath reports whether a table is a dm-multipath map: its first target
// is of type "multipath". qemu-pr-helper decides the same way and only on the
// first target (docs/pr-helper-protocol.md §4.11); the multipath target is a singleton
// (DM_TARGET_SINGLETON), so a multipath table has exactly one target anyway.
func IsMultipath(targets []Target) bool {
	return len(targets) > 0 && targets[0].Type == "multipath"
}
