package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/scsi"
)

// conflictBackend answers every command RESERVATION CONFLICT, with an error
// for the log, as a passthrough backend does for another initiator's
// reservation: the server's path for an answer other than GOOD.
type conflictBackend struct{}

func (conflictBackend) Name() string { return "conflict" }

func (conflictBackend) Execute(context.Context, *backend.Request) (scsi.Result, error) {
	return scsi.Result{Status: scsi.StatusReservationConflict}, errConflict
}

var errConflict = errors.New("SG_IO on fd 7: reservation conflict")

// BenchmarkRequest is one READ KEYS through the real socket, server and
// client, to a backend that answers at once: the server's own cost per
// request, without metrics and with them, and one answered RESERVATION
// CONFLICT with a log error (go test -bench Request -benchmem -count 5).
func BenchmarkRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		obs  Observer
		be   backend.Backend
		want byte
	}{{"metrics=off", nil, &fakeBackend{}, scsi.StatusGood}, {"metrics=on", metrics.New("bench"), &fakeBackend{}, scsi.StatusGood},
		{"conflict", nil, conflictBackend{}, scsi.StatusReservationConflict}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "prh.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				b.Fatal(err)
			}
			srv := New(c.be, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Observer: c.obs})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, Listener{UnixListener: l}) }()
			defer func() { cancel(); <-done }()
			disk, err := os.Create(filepath.Join(dir, "disk.img"))
			if err != nil {
				b.Fatal(err)
			}
			defer disk.Close()
			cl := client.New(path)
			defer cl.Close()
			cdb := scsi.PRInCDB(scsi.SAReadKeys, 16)
			b.ResetTimer()
			for range b.N {
				if rep, err := cl.Do(ctx, cdb, int(disk.Fd()), nil); err != nil || rep.Status != c.want {
					b.Fatalf("%v %v", rep, err)
				}
			}
		})
	}
}
