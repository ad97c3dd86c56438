package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
)

// pair returns a raw sending end (a plain fd, to script exactly which bytes and
// descriptors arrive) and the receiving end as a *net.UnixConn.
func pair(t testing.TB) (int, *net.UnixConn) {
	t.Helper()
	tx, rx := rawPair(t)
	t.Cleanup(func() { rx.Close(); unix.Close(tx) })
	return tx, rx
}

// rawPair is pair without cleanup: the caller closes both ends.
func rawPair(t testing.TB) (int, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[1]), "server")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return fds[0], c.(*net.UnixConn)
}

func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// devNull returns a fresh descriptor to pass; the sender's copy is closed by the test.
func devNull(t testing.TB) int {
	t.Helper()
	fd, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

type chunk struct {
	data []byte
	nfd  int // descriptors attached to this chunk
}

// send writes the chunks, attaching fresh descriptors, closes the sender's copies
// and, when eof, shuts the write side down.
func send(t testing.TB, fd int, eof bool, chunks ...chunk) {
	t.Helper()
	for _, c := range chunks {
		var oob []byte
		var fds []int
		for i := 0; i < c.nfd; i++ {
			fds = append(fds, devNull(t))
		}
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if err := unix.Sendmsg(fd, c.data, oob, nil, 0); err != nil {
			t.Fatal(err)
		}
		for _, f := range fds {
			unix.Close(f)
		}
	}
	if eof {
		unix.Shutdown(fd, unix.SHUT_WR)
	}
}

func cdbBytes(c [CDBSize]byte) []byte { return c[:] }

func TestReadRequest(t *testing.T) {
	in := cdbBytes(scsi.PRInCDB(scsi.SAReadKeys, 8192))
	out := cdbBytes(scsi.PROutCDB(scsi.SARegister, 0, 0, 24))
	param := bytes.Repeat([]byte{0x42}, 24)
	bad := cdbBytes(scsi.PRInCDB(0, 16))
	bad[0] = 0x12
	long := cdbBytes(scsi.PRInCDB(0, 8193))

	tests := []struct {
		name      string
		chunks    []chunk
		eof       bool
		wantErr   error // nil: success
		wantParam []byte
	}{
		{"PR IN", []chunk{{in, 1}}, false, nil, nil},
		{"PR OUT with parameter list", []chunk{{out, 1}, {param, 0}}, false, nil, param},
		{"CDB split, fd on first part", []chunk{{out[:5], 1}, {out[5:], 0}, {param, 0}}, false, nil, param},
		{"parameter list split", []chunk{{out, 1}, {param[:3], 0}, {param[3:], 0}}, false, nil, param},
		{"descriptor with parameter list is dropped", []chunk{{out, 1}, {param, 1}}, false, nil, param},
		{"no descriptor", []chunk{{in, 0}}, false, ErrProtocol, nil},
		{"two descriptors", []chunk{{in, 2}}, false, ErrProtocol, nil},
		{"descriptors on two CDB parts", []chunk{{in[:8], 1}, {in[8:], 1}}, false, ErrProtocol, nil},
		{"too many descriptors for the buffer", []chunk{{in, 20}}, false, ErrProtocol, nil},
		{"opcode not PR", []chunk{{bad, 1}}, false, ErrProtocol, nil},
		{"length above 8192", []chunk{{long, 1}}, false, ErrProtocol, nil},
		{"short parameter list", []chunk{{out, 1}, {param[:10], 0}}, true, ErrProtocol, nil},
		{"EOF before anything", nil, true, io.EOF, nil},
		{"EOF inside CDB", []chunk{{in[:7], 1}}, true, io.ErrUnexpectedEOF, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := openFDs(t)
			tx, rx := pair(t)
			before += 2
			send(t, tx, tt.eof, tt.chunks...)
			req, err := ReadRequest(rx)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
				if req != nil {
					t.Fatal("request returned with an error")
				}
				if n := openFDs(t); n != before {
					t.Fatalf("%d descriptors open, want %d: leaked", n, before)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(req.FD, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
				t.Fatalf("received fd %d is not /dev/null: %v", req.FD, err)
			}
			if !bytes.Equal(req.Param, tt.wantParam) {
				t.Fatalf("param %x, want %x", req.Param, tt.wantParam)
			}
			unix.Close(req.FD)
			if n := openFDs(t); n != before {
				t.Fatalf("%d descriptors open, want %d: leaked", n, before)
			}
		})
	}
}

func TestServerHandshake(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply []byte
		ok    bool
	}{
		{"zero features", []byte{0, 0, 0, 0}, true},
		{"requested feature bit", []byte{0, 0, 0, 1}, false},
		{"high bit", []byte{0x80, 0, 0, 0}, false},
		{"short", []byte{0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, rx := pair(t)
			send(t, tx, true, chunk{tc.reply, 0})
			err := ServerHandshake(rx)
			if (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
			var got [4]byte
			if _, err := unix.Read(tx, got[:]); err != nil || got != [4]byte{} {
				t.Fatalf("helper sent %x (%v), want 4 zero bytes", got, err)
			}
		})
	}
}

// TestClientServerRoundTrip runs the client functions against the server functions.
func TestClientServerRoundTrip(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]*net.UnixConn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "end")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c.(*net.UnixConn)
		defer c.Close()
	}
	cli, srv := conns[0], conns[1]
	param := bytes.Repeat([]byte{7}, 24)
	done := make(chan error, 1)
	go func() {
		if err := ServerHandshake(srv); err != nil {
			done <- err
			return
		}
		req, err := ReadRequest(srv)
		if err != nil {
			done <- err
			return
		}
		unix.Close(req.FD)
		if !bytes.Equal(req.Param, param) {
			done <- errors.New("param mismatch")
			return
		}
		rep := Reply{Status: scsi.StatusReservationConflict}
		done <- WriteReply(srv, req.CDB[:], &rep)
	}()
	if err := ClientHandshake(cli); err != nil {
		t.Fatal(err)
	}
	null := devNull(t)
	defer unix.Close(null)
	if err := WriteRequest(cli, scsi.PROutCDB(scsi.SAReserve, 0, 1, 24), null, param); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReply(cli)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if rep.Status != scsi.StatusReservationConflict || len(rep.Data) != 0 {
		t.Fatalf("reply %+v", rep)
	}
}

// FuzzReadRequest feeds arbitrary bytes, with a descriptor on the first chunk when
// withFD is set, and requires no panic, no hang and no leaked descriptor.
func FuzzReadRequest(f *testing.F) {
	f.Add(cdbBytes(scsi.PRInCDB(0, 8192)), true)
	f.Add(append(cdbBytes(scsi.PROutCDB(0, 0, 0, 24)), make([]byte, 24)...), true)
	f.Add(append(cdbBytes(scsi.PROutCDB(0, 0, 0, 24)), make([]byte, 4)...), true)
	f.Add(cdbBytes(scsi.PRInCDB(0, 9000)), true)
	f.Add([]byte{0x5e, 1, 2}, false)
	f.Add(append(cdbBytes(scsi.PRInCDB(1, 24)), cdbBytes(scsi.PRInCDB(0, 0))...), true)
	f.Fuzz(func(t *testing.T, b []byte, withFD bool) {
		if len(b) > 64<<10 {
			return
		}
		before := openFDs(t)
		tx, rx := rawPair(t)
		var oob []byte
		if withFD {
			null := devNull(t)
			oob = unix.UnixRights(null)
			defer unix.Close(null)
		}
		sent := make(chan struct{})
		go func() {
			// Errors are expected once the reader gives up on bad input.
			unix.Sendmsg(tx, b, oob, nil, 0)
			unix.Shutdown(tx, unix.SHUT_WR)
			close(sent)
		}()
		for i := 0; i < 100; i++ {
			req, err := ReadRequest(rx)
			if err != nil {
				break
			}
			if err := ValidateCDB(req.CDB[:]); err != nil {
				t.Fatalf("invalid CDB accepted: %v", err)
			}
			unix.Close(req.FD)
		}
		rx.Close()
		<-sent
		unix.Close(tx)
		if withFD {
			before++ // the deferred close of the sender's copy has not run yet
		}
		if after := openFDs(t); after != before {
			t.Fatalf("descriptors: %d before, %d after", before, after)
		}
	})
}

// TestOOBSize: the control buffer of a read is exactly
// CMSG_SPACE(maxFDs descriptors) where a pointer is 8 bytes, so that one
// descriptor more than maxFDs truncates the control data (MSG_CTRUNC) as it did
// with the buffer unix.CmsgSpace sized; where it is 4 bytes, it holds one more.
func TestOOBSize(t *testing.T) {
	want := unix.CmsgSpace(4 * maxFDs)
	if strconv.IntSize == 32 {
		want = unix.CmsgSpace(4 * (maxFDs + 1))
	}
	if oobSize != want {
		t.Fatalf("oobSize = %d, want %d", oobSize, want)
	}
}

// TestReadReplyHeader decodes a header from a stream and refuses what no
// helper may send: a status that is not a SCSI status byte, a size outside
// 0..MaxData, a header cut short.
func TestReadReplyHeader(t *testing.T) {
	header := func(status, size uint32) []byte {
		h := make([]byte, HeaderSize)
		binary.BigEndian.PutUint32(h[0:4], status)
		binary.BigEndian.PutUint32(h[4:8], size)
		h[8], h[HeaderSize-1] = 0x70, 0x5a // first and last sense byte
		return h
	}
	status, size, sense, err := ReadReplyHeader(bytes.NewReader(header(0x18, 24)), make([]byte, HeaderSize))
	if err != nil || status != 0x18 || size != 24 || sense[0] != 0x70 || sense[SenseSize-1] != 0x5a {
		t.Fatalf("good header: status %#x size %d sense % x, err %v", status, size, sense, err)
	}
	for _, c := range []struct {
		what string
		b    []byte
		want string
	}{
		{"status 0x100", header(0x100, 0), "not a SCSI status"},
		{"status -1", header(0xffffffff, 0), "not a SCSI status"},
		{"size over MaxData", header(0, MaxData+1), "outside"},
		{"cut short", header(0, 0)[:HeaderSize-1], "read reply header"},
	} {
		if _, _, _, err := ReadReplyHeader(bytes.NewReader(c.b), make([]byte, HeaderSize)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one saying %q", c.what, err, c.want)
		}
	}
}
