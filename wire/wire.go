package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/prhelper/prhelper/scsi"
)

// Sizes fixed by scsi/pr-helper.h.
const (
	CDBSize     = 16   // PR_HELPER_CDB_SIZE
	SenseSize   = 96   // PR_HELPER_SENSE_SIZE
	MaxData     = 8192 // PR_HELPER_DATA_SIZE
	HeaderSize  = 8 + SenseSize
	FeatureSize = 4
)

// Request is one decoded helper request. FD is the descriptor that came with the
// CDB; whoever holds the Request owns it and must close it.
type Request struct {
	CDB   [CDBSize]byte
	FD    int
	Param []byte // PR OUT parameter list (nil for PR IN)
}

// IsPRIn reports whether the request is a PERSISTENT RESERVE IN.
func (r *Request) IsPRIn() bool { return r.CDB[0] == scsi.OpPersistentReserveIn }

// Length is the framing length of the request: allocation length for PR IN,
// parameter list length for PR OUT (see scsi.TransferLength).
func (r *Request) Length() int { return scsi.TransferLength(r.CDB[:]) }

// Reply is a helper reply before encoding.
type Reply struct {
	Status byte
	Sense  [SenseSize]byte
	Data   []byte
}

// SetSense stores sense bytes (device sense passed through, or built by prhelper),
// truncated to 96 bytes and zero filled after them.
func (r *Reply) SetSense(b []byte) {
	r.Sense = [SenseSize]byte{}
	copy(r.Sense[:], b)
}

// ErrProtocol marks a request the helper must answer by closing the connection
// without a reply, as qemu-pr-helper does (docs/pr-helper-protocol.md §2.7).
var ErrProtocol = errors.New("protocol violation")

func protocolErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrProtocol, fmt.Sprintf(format, a...))
}

// ValidateCDB checks what qemu-pr-helper's prh_read_request checks of a CDB: the
// opcode is PR IN or PR OUT and the framed length is at most 8192 bytes.
func ValidateCDB(cdb []byte) error {
	if len(cdb) != CDBSize {
		return protocolErr("CDB is %d bytes, want %d", len(cdb), CDBSize)
	}
	if cdb[0] != scsi.OpPersistentReserveIn && cdb[0] != scsi.OpPersistentReserveOut {
		return protocolErr("invalid CDB opcode 0x%02x", cdb[0])
	}
	if n := scsi.TransferLength(cdb); n > MaxData {
		return protocolErr("transfer length %d above %d", n, MaxData)
	}
	return nil
}

// EncodeReply encodes rep as the answer to a request with cdb. It enforces the
// rules QEMU's client asserts on (docs/pr-helper-protocol.md §2.4): data is sent only for PR IN with
// GOOD status, and never more than the allocation length or 8192 bytes. Breaking
// them would abort the VM, so they are applied here, in one place, whatever the
// backend returned.
func EncodeReply(cdb []byte, rep *Reply) []byte { return AppendReply(nil, cdb, rep) }

// AppendReply appends the encoding of rep (EncodeReply) to dst: a server that
// keeps one buffer per connection encodes its replies without allocating.
func AppendReply(dst, cdb []byte, rep *Reply) []byte {
	data := rep.Data
	if len(cdb) < 1 || cdb[0] != scsi.OpPersistentReserveIn || rep.Status != scsi.StatusGood {
		data = nil
	}
	if n := min(scsi.TransferLength(cdb), MaxData); len(data) > n {
		data = data[:n]
	}
	out := slices.Grow(dst, HeaderSize+len(data))[:len(dst)+HeaderSize+len(data)]
	b := out[len(dst):] // every byte of it is written below
	binary.BigEndian.PutUint32(b[0:4], uint32(rep.Status))
	binary.BigEndian.PutUint32(b[4:8], uint32(len(data)))
	copy(b[8:HeaderSize], rep.Sense[:])
	copy(b[HeaderSize:], data)
	return out
}

// DecodeReplyHeader decodes the 104-byte reply header. It returns the status, the
// size of the data that follows and the sense bytes. A negative or oversized size
// is an error: a client must not trust it for an allocation.
func DecodeReplyHeader(h []byte) (status int32, size int, sense [SenseSize]byte, err error) {
	if len(h) != HeaderSize {
		return 0, 0, sense, fmt.Errorf("reply header is %d bytes, want %d", len(h), HeaderSize)
	}
	status = int32(binary.BigEndian.Uint32(h[0:4]))
	sz := int32(binary.BigEndian.Uint32(h[4:8]))
	copy(sense[:], h[8:])
	if sz < 0 || sz > MaxData {
		return status, 0, sense, fmt.Errorf("reply size %d outside 0..%d", sz, MaxData)
	}
	return status, int(sz), sense, nil
}
