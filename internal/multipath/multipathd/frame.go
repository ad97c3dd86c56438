package multipathd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unsafe"
)

// SizeLen is the width in bytes of the length prefix of every message: C's
// size_t on this platform (8 on amd64/arm64, 4 on 32-bit ports). libmpathcmd's
// mpath_send_cmd and mpath_recv_reply_len write and read the prefix as a raw
// size_t in host byte order, so client and daemon must share the ABI; on every
// Linux port Go supports size_t is as wide as uintptr.
const SizeLen = int(unsafe.Sizeof(uintptr(0)))

// MaxCommandLen is the largest command frame multipathd accepts, counting the
// terminating NUL: multipathd's listener (uxlsnr.c, _MAX_CMD_LEN in uxsock.h)
// drops the connection of a client that announces a longer command, so a
// longer command is refused here with a clear error instead.
const MaxCommandLen = 512

// MaxReplyLen is the largest reply accepted (32 MiB). It is libmpathcmd's own
// MAX_REPLY_LEN (mpath_cmd.h, "sufficient for json output for >10000 maps, and
// >60000 paths"): anything multipathd sends to its own client is accepted, and
// a corrupt or hostile length cannot make the client allocate more. Reply
// memory grows with the bytes actually received, not with the announced length.
const MaxReplyLen = 32 << 20

// EncodeCommand returns the frame that carries cmd to multipathd: a native
// size_t holding len(cmd)+1, then cmd, then a NUL, exactly as libmpathcmd's
// mpath_send_cmd writes it (the length counts the NUL). It refuses an empty
// command, a NUL inside cmd and a frame longer than MaxCommandLen.
func EncodeCommand(cmd string) ([]byte, error) {
	if strings.TrimSpace(cmd) == "" {
		return nil, fmt.Errorf("%w: empty command", ErrInvalidCommand)
	}
	if i := strings.IndexByte(cmd, 0); i >= 0 {
		return nil, fmt.Errorf("%w: NUL byte at offset %d", ErrInvalidCommand, i)
	}
	n := len(cmd) + 1
	if n > MaxCommandLen {
		return nil, fmt.Errorf("%w: %d bytes with its NUL, multipathd accepts at most %d", ErrInvalidCommand, n, MaxCommandLen)
	}
	frame := make([]byte, SizeLen+n)
	putSize(frame, uint64(n))
	copy(frame[SizeLen:], cmd)
	// frame[len(frame)-1] is already the NUL.
	return frame, nil
}

// ReadReply reads one reply frame from r: a native size_t length, then that
// many bytes ending in a NUL. It returns the text before the first NUL (the C
// string libmpathcmd's callers see). A length of zero or above max, a frame
// cut short by end of stream, and a frame without its terminating NUL are
// ErrProtocol errors; other read errors (deadlines, resets) are returned
// wrapped as they are. max <= 0 means MaxReplyLen.
func ReadReply(r io.Reader, max int) (string, error) {
	if max <= 0 {
		max = MaxReplyLen
	}
	hdr := make([]byte, SizeLen)
	if k, err := io.ReadFull(r, hdr); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", fmt.Errorf("%w: connection closed after %d of %d length bytes", ErrProtocol, k, SizeLen)
		}
		return "", fmt.Errorf("read reply length: %w", err)
	}
	n := getSize(hdr)
	if n == 0 {
		// libmpathcmd's mpath_recv_reply_len rejects 0 too (ERANGE):
		// multipathd always sends at least the NUL.
		return "", fmt.Errorf("%w: reply length 0", ErrProtocol)
	}
	if n > uint64(max) {
		return "", fmt.Errorf("%w: reply length %d exceeds the %d-byte limit", ErrProtocol, n, max)
	}
	var buf bytes.Buffer
	buf.Grow(int(min(n, 64<<10)))
	if got, err := io.CopyN(&buf, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%w: connection closed after %d of %d reply bytes", ErrProtocol, got, n)
		}
		return "", fmt.Errorf("read reply (%d of %d bytes): %w", got, n, err)
	}
	body := buf.Bytes()
	if body[len(body)-1] != 0 {
		return "", fmt.Errorf("%w: %d-byte reply not NUL-terminated", ErrProtocol, n)
	}
	if i := bytes.IndexByte(body, 0); i >= 0 {
		body = body[:i]
	}
	return string(body), nil
}

// putSize stores n as a native size_t at the start of b.
func putSize(b []byte, n uint64) {
	if SizeLen == 8 {
		binary.NativeEndian.PutUint64(b, n)
		return
	}
	binary.NativeEndian.PutUint32(b, uint32(n))
}

// getSize reads a native size_t from the start of b.
func getSize(b []byte) uint64 {
	if SizeLen == 8 {
		return binary.NativeEndian.Uint64(b)
	}
	return uint64(binary.NativeEndian.Uint32(b))
}
