package server

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// TestReplyDeadlineOnlyWhenWaiting: replies arm the write deadline only when
// the socket cannot take them at once (writeReply), and clear it after, so
// neither the handshake's deadline nor a slow reply's refuses a later reply
// that comes after the write timeout has passed. Both halves fail if a stale
// deadline is left on the connection: the first write of a reply would then
// be refused with a deadline error and the connection closed.
func TestReplyDeadlineOnlyWhenWaiting(t *testing.T) {
	const timeout = 50 * time.Millisecond
	h := startWith(t, context.Background(), &fullBackend{}, Options{WriteTimeout: timeout}, (&logBuffer{}).logger())
	defer h.stop(t)
	c := rawConn(t, h.path, []byte{0, 0, 0, 0})
	sc := h.onlyConn(t)
	disk := openFile(t, os.O_RDWR)
	want := bytes.Repeat([]byte{0xab}, wire.MaxData)
	send := func(what string) {
		t.Helper()
		if err := wire.WriteRequest(c, scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), int(disk.Fd()), nil); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	recv := func(what string) {
		t.Helper()
		rep, err := wire.ReadReply(c)
		if err != nil || rep.Status != scsi.StatusGood || !bytes.Equal(rep.Data, want) {
			t.Fatalf("%s: reply %v, err %v", what, rep != nil, err)
		}
	}
	ask := func(what string) { t.Helper(); send(what); recv(what) }
	// Past the handshake's deadline: the reply's first write must still run.
	time.Sleep(3 * timeout)
	ask("after the handshake's deadline")
	// A reply larger than the smallest send buffer takes the deadline path;
	// the client reads it, so it completes.
	if err := sc.SetWriteBuffer(1); err != nil {
		t.Fatal(err)
	}
	// The client reads only once the server is writing the reply, so that
	// its first write(2) finds a socket that cannot take all of it, whatever
	// the scheduling.
	send("a reply that waits for room")
	h.until(t, "the reply is being written", func(*Server) bool { return sc.phase == phaseReply })
	recv("a reply that waits for room")
	time.Sleep(3 * timeout)
	ask("after a waiting reply's deadline")
	if n := h.srv.Requests(); n != 3 {
		t.Errorf("%d requests served, want 3", n)
	}
}
