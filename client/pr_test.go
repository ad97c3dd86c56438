package client

import (
	"bytes"
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

// seen is what the fake helper received for one request.
type seen struct {
	cdb   [wire.CDBSize]byte
	param []byte
	hadFD bool
}

// fakeHelper serves one connection on a temporary socket, answering each request
// with the next scripted reply and reporting what it received.
func fakeHelper(t *testing.T, replies []wire.Reply) (string, <-chan seen) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "h.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan seen, len(replies))
	go func() {
		defer close(ch)
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		defer c.Close()
		if err := wire.ServerHandshake(c); err != nil {
			return
		}
		for i := range replies {
			req, err := wire.ReadRequest(c)
			if err != nil {
				return
			}
			var st unix.Stat_t
			s := seen{cdb: req.CDB, param: req.Param, hadFD: unix.Fstat(req.FD, &st) == nil}
			unix.Close(req.FD)
			ch <- s
			if err := wire.WriteReply(c, req.CDB[:], &replies[i]); err != nil {
				return
			}
		}
	}()
	return path, ch
}

func tempFD(t *testing.T) int {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "disk")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func TestPRInHelpers(t *testing.T) {
	keys := scsi.Keys{Generation: 3, Keys: []uint64{0x222}}.Encode()
	res := scsi.Reservation{Generation: 1, Held: true, Key: 0x111, Type: scsi.TypeWriteExclusive}.Encode()
	caps := []byte{0x00, 0x08, 0x1d, 0x90, 0xea, 0x01, 0x00, 0x00}
	fs, err := scsi.FullStatus{Generation: 1, Descriptors: []scsi.StatusDescriptor{{Key: 0x5, RelativeTargetPort: 2,
		TransportID: scsi.SASTransportID(0x5001405b00000002)}}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	ua := wire.Reply{Status: scsi.StatusCheckCondition}
	ua.SetSense(scsi.SenseRegsPreempted.Fixed())
	path, got := fakeHelper(t, []wire.Reply{
		{Data: keys}, {Data: res}, {Data: caps}, {Data: fs}, ua, {Data: []byte{0, 0}},
	})
	c := New(path, WithReconnect(1, 0))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fd := tempFD(t)

	check := func(sa byte, alloc uint16) {
		t.Helper()
		s := <-got
		if want := scsi.PRInCDB(sa, alloc); s.cdb != want || !s.hadFD || s.param != nil {
			t.Fatalf("helper saw cdb % x fd %v param % x; want cdb % x with an fd", s.cdb, s.hadFD, s.param, want)
		}
	}
	rep, k, err := c.ReadKeys(ctx, fd, 8192)
	if err != nil || rep.Status != 0 || k == nil || k.Generation != 3 || len(k.Keys) != 1 || k.Keys[0] != 0x222 {
		t.Fatalf("ReadKeys = %+v, %+v, %v", rep, k, err)
	}
	check(scsi.SAReadKeys, 8192)
	_, r, err := c.ReadReservation(ctx, fd, 24)
	if err != nil || r == nil || !r.Held || r.Key != 0x111 || r.Type != 1 {
		t.Fatalf("ReadReservation = %+v, %v", r, err)
	}
	check(scsi.SAReadReservation, 24)
	_, cp, err := c.ReportCapabilities(ctx, fd, 8)
	if err != nil || cp == nil || !cp.CRH || cp.TypeMask != 0xea01 {
		t.Fatalf("ReportCapabilities = %+v, %v", cp, err)
	}
	check(scsi.SAReportCapabilities, 8)
	_, st, err := c.ReadFullStatus(ctx, fd, 100)
	if err != nil || st == nil || len(st.Descriptors) != 1 || st.Descriptors[0].TransportID.Addr != 0x5001405b00000002 {
		t.Fatalf("ReadFullStatus = %+v, %v", st, err)
	}
	check(scsi.SAReadFullStatus, 100)
	rep, k, err = c.ReadKeys(ctx, fd, 8192)
	if err != nil || k != nil || rep == nil || rep.Status != scsi.StatusCheckCondition {
		t.Fatalf("ReadKeys with UA = %+v, %+v, %v; want the reply and no keys", rep, k, err)
	}
	if s, ok := scsi.ParseSense(rep.Sense[:]); !ok || s != scsi.SenseRegsPreempted {
		t.Fatalf("sense = %v %v", s, ok)
	}
	check(scsi.SAReadKeys, 8192)
	rep, k, err = c.ReadKeys(ctx, fd, 8192)
	if !errors.Is(err, scsi.ErrMalformed) || rep == nil || k != nil {
		t.Fatalf("ReadKeys of 2 bytes = %+v, %+v, %v; want ErrMalformed with the reply", rep, k, err)
	}
	check(scsi.SAReadKeys, 8192)
}

func TestPROut(t *testing.T) {
	param, err := scsi.PROutParams{Key: 0x222, SAKey: 0x111}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	path, got := fakeHelper(t, []wire.Reply{{Status: scsi.StatusReservationConflict}})
	c := New(path, WithReconnect(1, 0))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := c.PROut(ctx, tempFD(t), scsi.SAPreempt, 0, scsi.TypeExclusiveAccess, param)
	if err != nil || rep.Status != scsi.StatusReservationConflict {
		t.Fatalf("PROut = %+v, %v", rep, err)
	}
	s := <-got
	// The transcript's "preempt 0x222 0x111 3": cdb 5f 04 03 00 00 00 00 00 18 00.
	want := [16]byte{0x5f, 0x04, 0x03, 0, 0, 0, 0, 0, 0x18}
	if s.cdb != want || !bytes.Equal(s.param, param) || !s.hadFD {
		t.Fatalf("helper saw cdb % x param % x fd %v", s.cdb, s.param, s.hadFD)
	}
	if _, err := c.PROut(ctx, 0, scsi.SARegister, 0, 0, make([]byte, wire.MaxData+1)); !errors.Is(err, ErrRequest) {
		t.Fatalf("oversized PROut: %v, want ErrRequest", err)
	}
}
