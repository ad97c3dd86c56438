package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/daemon/server"
	"github.com/prhelper/prhelper/scsi"
)

// BenchmarkRequestOnFile is the daemon's whole request path in one process,
// as prhelper -k SOCK builds it (options, settings, router, backends, server;
// no privilege drop or sandbox): one READ KEYS, or one REGISTER, on a regular
// file, the refusal path scripts/bench.sh measures on the host. Its -benchmem
// figures are the allocations per request of docs/performance.md.
func BenchmarkRequestOnFile(b *testing.B) {
	dir := b.TempDir()
	sock := filepath.Join(dir, "prh.sock")
	o, err := parseOptions("prhelper", []string{"-k", sock})
	if err != nil {
		b.Fatal(err)
	}
	set, err := loadSettings(o)
	if err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rt, closeFn, err := buildRouter(set, set.plan(), nil, log)
	if err != nil {
		b.Fatal(err)
	}
	defer closeFn()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(rt, log, server.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, server.Listener{UnixListener: l}) }()
	defer func() { cancel(); <-done }()
	disk, err := os.Create(filepath.Join(dir, "disk.img"))
	if err != nil {
		b.Fatal(err)
	}
	defer disk.Close()
	for _, c := range []struct {
		name  string
		cdb   [scsi.CDBLen]byte
		param []byte
	}{
		{"readkeys", scsi.PRInCDB(scsi.SAReadKeys, 8192), nil},
		{"register", scsi.PROutCDB(scsi.SARegister, 0, 0, 24), make([]byte, 24)},
	} {
		b.Run(c.name, func(b *testing.B) {
			cl := client.New(sock)
			defer cl.Close()
			for b.Loop() {
				if rep, err := cl.Do(ctx, c.cdb, int(disk.Fd()), c.param); err != nil || rep.Status != scsi.StatusCheckCondition {
					b.Fatalf("%v %v", rep, err)
				}
			}
		})
	}
}
