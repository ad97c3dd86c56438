package multipathd

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// fakeDaemon is a stand-in for multipathd: it listens on a Unix socket and
// hands every accepted connection to handle. Its framing is written here
// independently of the package (a native size_t, then the bytes), so the
// tests check the client's bytes against a second implementation.
type fakeDaemon struct {
	addr  string
	ln    net.Listener
	done  chan struct{} // closed at cleanup: stalled handlers return
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns int
}

// startFake listens on addr (a path or "@name") and serves with handle.
func startFake(t *testing.T, addr string, handle func(f *fakeDaemon, c net.Conn)) *fakeDaemon {
	t.Helper()
	ln, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	f := &fakeDaemon{addr: addr, ln: ln, done: make(chan struct{})}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				handle(f, c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(f.done)
		f.wg.Wait()
	})
	return f
}

// connections returns how many clients connected so far.
func (f *fakeDaemon) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

// pathSocket returns a fresh pathname socket address in a temporary directory.
func pathSocket(t *testing.T) string {
	return filepath.Join(t.TempDir(), "multipathd.socket")
}

// abstractSocket returns a random abstract socket name, or skips off Linux.
func abstractSocket(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("abstract sockets are Linux-only")
	}
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "@prhelper-multipathd-test-" + hex.EncodeToString(b[:])
}

// sizeBytes encodes n as the test's own native size_t.
func sizeBytes(n uint64) []byte {
	if SizeLen == 8 {
		return binary.NativeEndian.AppendUint64(nil, n)
	}
	return binary.NativeEndian.AppendUint32(nil, uint32(n))
}

// readFrame reads one command frame as multipathd does: it returns the raw
// bytes (length prefix included) and the command without its NUL.
func readFrame(c net.Conn) (raw []byte, cmd string, err error) {
	hdr := make([]byte, SizeLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, "", err
	}
	var n uint64
	if SizeLen == 8 {
		n = binary.NativeEndian.Uint64(hdr)
	} else {
		n = uint64(binary.NativeEndian.Uint32(hdr))
	}
	if n == 0 || n > 4096 {
		return nil, "", errors.New("fake: bad command length")
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, "", err
	}
	if body[n-1] != 0 {
		return nil, "", errors.New("fake: command not NUL-terminated")
	}
	return append(hdr, body...), string(body[:n-1]), nil
}

// replyFrame is reply as multipathd sends it: strlen+1, the text, a NUL.
func replyFrame(reply string) []byte {
	return append(append(sizeBytes(uint64(len(reply)+1)), reply...), 0)
}

// cannedDaemon answers each command from replies (unknown commands get
// "fail\n") and records every command received, in order.
type cannedDaemon struct {
	*fakeDaemon
	mu   sync.Mutex
	cmds []string
	raws [][]byte
}

func startCanned(t *testing.T, addr string, replies map[string]string) *cannedDaemon {
	t.Helper()
	d := &cannedDaemon{}
	d.fakeDaemon = startFake(t, addr, func(f *fakeDaemon, c net.Conn) {
		for {
			raw, cmd, err := readFrame(c)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.cmds = append(d.cmds, cmd)
			d.raws = append(d.raws, raw)
			d.mu.Unlock()
			reply, ok := replies[cmd]
			if !ok {
				reply = "fail\n"
			}
			if _, err := c.Write(replyFrame(reply)); err != nil {
				return
			}
		}
	})
	return d
}

// received returns the commands and raw frames received so far.
func (d *cannedDaemon) received() ([]string, [][]byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.cmds...), append([][]byte(nil), d.raws...)
}
