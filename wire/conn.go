package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/sys/unix"
)

// maxFDs is how many descriptors one read accepts before the kernel truncates the
// control data; anything above one is already a violation, this only sizes the buffer
// so that the extras can be closed rather than leaked.
const maxFDs = 8

// ServerHandshake performs the helper's side of the feature negotiation: send the
// supported features (none), read the requested ones. Non-zero requested features
// are a protocol violation: qemu-pr-helper closes the connection.
func ServerHandshake(c *net.UnixConn) error {
	var zero [FeatureSize]byte
	if _, err := c.Write(zero[:]); err != nil {
		return fmt.Errorf("send features: %w", err)
	}
	var req [FeatureSize]byte
	if _, err := io.ReadFull(c, req[:]); err != nil {
		return fmt.Errorf("read requested features: %w", err)
	}
	if req != zero {
		return protocolErr("client requested features %x", req)
	}
	return nil
}

// ReadRequest reads one request from c. It returns io.EOF when the peer closed the
// connection before sending anything, and an error wrapping ErrProtocol for every
// violation of docs/pr-helper-protocol.md §2.7 (no fd, more than one fd, bad opcode, length above
// 8192, short parameter list). On any error no descriptor is left open.
func ReadRequest(c *net.UnixConn) (*Request, error) {
	req := &Request{FD: -1}
	// The buffers live on the stack: a request is read without allocating
	// but for req and its parameter list (docs/performance.md §3.6).
	var fdBuf [2 * maxFDs]int
	fds := fdBuf[:0]
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	var oobBuf [oobSize]byte
	oob := oobBuf[:]
	got := 0
	for got < CDBSize {
		n, oobn, flags, _, err := c.ReadMsgUnix(req.CDB[got:], oob)
		if oobn > 0 {
			var perr error
			fds, perr = appendRights(fds, oob[:oobn])
			if perr != nil {
				closeAll()
				return nil, protocolErr("bad control message: %v", perr)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			closeAll()
			return nil, protocolErr("too many file descriptors")
		}
		got += n
		if err != nil || n == 0 {
			closeAll()
			if got == 0 && (err == nil || errors.Is(err, io.EOF)) {
				return nil, io.EOF
			}
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("read CDB: %w", err)
		}
	}
	switch len(fds) {
	case 0:
		return nil, protocolErr("no file descriptor in request")
	case 1:
	default:
		closeAll()
		return nil, protocolErr("%d file descriptors in request", len(fds))
	}
	if err := ValidateCDB(req.CDB[:]); err != nil {
		closeAll()
		return nil, err
	}
	req.FD = fds[0]
	if req.IsPRIn() {
		return req, nil
	}
	req.Param = make([]byte, req.Length())
	if err := readParam(c, req.Param, oob); err != nil {
		unix.Close(req.FD)
		return nil, err
	}
	return req, nil
}

// readParam reads the PR OUT parameter list. Descriptors sent with it are closed:
// qemu-pr-helper reads it without a control buffer, so the kernel drops them too.
func readParam(c *net.UnixConn, p, oob []byte) error {
	got := 0
	for got < len(p) {
		n, oobn, _, _, err := c.ReadMsgUnix(p[got:], oob)
		if oobn > 0 {
			var fdBuf [maxFDs]int
			fds, _ := appendRights(fdBuf[:0], oob[:oobn])
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		got += n
		if got < len(p) && (err != nil || n == 0) {
			return protocolErr("parameter list: %d of %d bytes: %v", got, len(p), err)
		}
	}
	return nil
}

// oobSize is the control buffer of a read: room for maxFDs descriptors.
const oobSize = (maxFDs*4 + 16 + 7) &^ 7 // unix.CmsgSpace(4*maxFDs) on 64-bit Linux, and more than it on 32-bit

// appendRights appends to fds the descriptors of the SCM_RIGHTS messages in
// oob, as unix.ParseSocketControlMessage and unix.ParseUnixRights would find
// them, without the slices those allocate. On a malformed message it returns
// what it found before, with the error: the caller closes them.
func appendRights(fds []int, oob []byte) ([]int, error) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return fds, err
		}
		oob = rest
		if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_RIGHTS {
			continue
		}
		if len(data)%4 != 0 {
			return fds, unix.EINVAL
		}
		for i := 0; i+4 <= len(data); i += 4 {
			fds = append(fds, int(int32(binary.NativeEndian.Uint32(data[i:]))))
		}
	}
	return fds, nil
}

// WriteReply encodes rep for the request and writes it in one write.
func WriteReply(c *net.UnixConn, cdb []byte, rep *Reply) error {
	if _, err := c.Write(EncodeReply(cdb, rep)); err != nil {
		return fmt.Errorf("write reply: %w", err)
	}
	return nil
}

// ReadReplyHeader reads one reply's header from r into h (HeaderSize bytes)
// and decodes it, refusing a status that is not a SCSI status byte. The data,
// size bytes, follow it on r.
func ReadReplyHeader(r io.Reader, h []byte) (status byte, size int, sense [SenseSize]byte, err error) {
	if _, err := io.ReadFull(r, h); err != nil {
		return 0, 0, sense, fmt.Errorf("read reply header: %w", err)
	}
	st, size, sense, err := DecodeReplyHeader(h)
	if err != nil {
		return 0, 0, sense, err
	}
	if st < 0 || st > 0xff {
		return 0, 0, sense, fmt.Errorf("reply status %d is not a SCSI status", st)
	}
	return byte(st), size, sense, nil
}

// ClientHandshake performs the client's side of the feature negotiation as QEMU's
// pr-manager-helper does: read the helper's features and ignore them, request none.
// c is the connection: a *net.UnixConn, or any stream to a helper.
func ClientHandshake(c io.ReadWriter) error {
	var f [FeatureSize]byte
	if _, err := io.ReadFull(c, f[:]); err != nil {
		return fmt.Errorf("read helper features: %w", err)
	}
	var zero [FeatureSize]byte
	if _, err := c.Write(zero[:]); err != nil {
		return fmt.Errorf("send requested features: %w", err)
	}
	return nil
}

// WriteRequest sends a request as QEMU does: the 16-byte CDB in one sendmsg carrying
// fd by SCM_RIGHTS, then, for PR OUT, the parameter list as a separate write.
func WriteRequest(c *net.UnixConn, cdb [CDBSize]byte, fd int, param []byte) error {
	n, _, err := c.WriteMsgUnix(cdb[:], unix.UnixRights(fd), nil)
	if err != nil {
		return fmt.Errorf("send CDB: %w", err)
	}
	if n != CDBSize {
		return fmt.Errorf("send CDB: short write %d", n)
	}
	if len(param) > 0 {
		if _, err := c.Write(param); err != nil {
			return fmt.Errorf("send parameter list: %w", err)
		}
	}
	return nil
}

// ReadReply reads one reply: the 104-byte header and the data it announces.
func ReadReply(c *net.UnixConn) (*Reply, error) {
	status, size, sense, err := ReadReplyHeader(c, make([]byte, HeaderSize))
	if err != nil {
		return nil, err
	}
	rep := &Reply{Status: status, Sense: sense, Data: make([]byte, size)}
	if _, err := io.ReadFull(c, rep.Data); err != nil {
		return nil, fmt.Errorf("read reply data: %w", err)
	}
	return rep, nil
}
