package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/scsi"
)

// BenchmarkRequest is one READ KEYS through the real socket, server and
// client, to a backend that answers at once: the server's own cost per
// request, without metrics and with them (go test -bench Request -count 5).
func BenchmarkRequest(b *testing.B) {
	for _, c := range []struct {
		name string
		obs  Observer
	}{{"metrics=off", nil}, {"metrics=on", metrics.New("bench")}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "prh.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				b.Fatal(err)
			}
			srv := New(&fakeBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Observer: c.obs})
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
				if rep, err := cl.Do(ctx, cdb, int(disk.Fd()), nil); err != nil || rep.Status != scsi.StatusGood {
					b.Fatalf("%v %v", rep, err)
				}
			}
		})
	}
}
