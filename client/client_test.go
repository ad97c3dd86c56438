package client

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// scriptedHelper accepts connections on path and, per connection, answers up to
// perConn requests with GOOD (and data for PR IN), then closes the connection. With
// dropMidRequest it reads a request and closes without a reply. It counts
// connections.
type scriptedHelper struct {
	l              *net.UnixListener
	conns          chan struct{}
	closed         chan struct{} // one value per connection the helper closed
	perConn        int
	dropMidRequest bool
}

func newScripted(t *testing.T, path string, perConn int, drop bool) *scriptedHelper {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	h := &scriptedHelper{l: l, conns: make(chan struct{}, 100), closed: make(chan struct{}, 100), perConn: perConn, dropMidRequest: drop}
	go h.serve()
	t.Cleanup(func() { l.Close() })
	return h
}

func (h *scriptedHelper) serve() {
	for {
		c, err := h.l.AcceptUnix()
		if err != nil {
			return
		}
		h.conns <- struct{}{}
		go func() {
			defer func() { c.Close(); h.closed <- struct{}{} }()
			if wire.ServerHandshake(c) != nil {
				return
			}
			for i := 0; i < h.perConn; i++ {
				req, err := wire.ReadRequest(c)
				if err != nil {
					return
				}
				unix.Close(req.FD)
				if h.dropMidRequest {
					return
				}
				rep := wire.Reply{Status: scsi.StatusGood, Data: make([]byte, 8)}
				if wire.WriteReply(c, req.CDB[:], &rep) != nil {
					return
				}
			}
		}()
	}
}

func devNull(t *testing.T) int {
	t.Helper()
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func TestReconnectsBeforeSending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sock")
	h := newScripted(t, path, 1, false) // closes after every reply
	c := New(path, WithReconnect(3, time.Millisecond))
	defer c.Close()
	fd := devNull(t)
	for i := 0; i < 5; i++ {
		rep, err := c.Do(context.Background(), scsi.PRInCDB(0, 8), fd, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if rep.Status != scsi.StatusGood || len(rep.Data) != 8 {
			t.Fatalf("request %d: %+v", i, rep)
		}
		<-h.closed // the helper has gone away before the next command
	}
	if n := len(h.conns); n != 5 {
		t.Fatalf("%d connections for 5 requests on a helper that closes after each", n)
	}
}

func TestFailureAfterSendingFailsTheCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sock")
	h := newScripted(t, path, 1, true)
	c := New(path, WithReconnect(3, time.Millisecond))
	defer c.Close()
	fd := devNull(t)
	if _, err := c.Do(context.Background(), scsi.PRInCDB(0, 8), fd, nil); err == nil {
		t.Fatal("a request the helper dropped succeeded")
	}
	if n := len(h.conns); n != 1 {
		t.Fatalf("%d connections: the client retried a command already sent", n)
	}
	// The helper restarts (a new one on the same path): the next command reconnects.
	h.l.Close()
	os.Remove(path)
	newScripted(t, path, 10, false)
	if rep, err := c.Do(context.Background(), scsi.PRInCDB(0, 8), fd, nil); err != nil || rep.Status != scsi.StatusGood {
		t.Fatalf("after restart: %v", err)
	}
}

func TestNoHelper(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.sock")
	c := New(path, WithReconnect(2, time.Millisecond))
	_, err := c.Do(context.Background(), scsi.PRInCDB(0, 8), devNull(t), nil)
	if err == nil {
		t.Fatal("no error without a helper")
	}
	if _, err := Dial(context.Background(), path); err == nil {
		t.Fatal("Dial succeeded without a helper")
	}
}

func TestRefusedBeforeSending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.sock")
	h := newScripted(t, path, 10, false)
	c := New(path)
	defer c.Close()
	fd := devNull(t)
	bad := scsi.PRInCDB(0, 8)
	bad[0] = 0x12
	for name, tc := range map[string]struct {
		cdb   [16]byte
		param []byte
	}{
		"INQUIRY":               {bad, nil},
		"allocation above 8192": {scsi.PRInCDB(0, 9000), nil},
		"short parameter list":  {scsi.PROutCDB(0, 0, 0, 24), make([]byte, 10)},
		"long parameter list":   {scsi.PROutCDB(0, 0, 0, 24), make([]byte, 30)},
	} {
		if _, err := c.Do(context.Background(), tc.cdb, fd, tc.param); !errors.Is(err, ErrRequest) {
			t.Errorf("%s: err %v, want ErrRequest", name, err)
		}
	}
	if n := len(h.conns); n != 0 {
		t.Fatalf("refused requests opened %d connections", n)
	}
}
