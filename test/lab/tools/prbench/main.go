// Command prbench measures PERSISTENT RESERVE IN READ KEYS round trips on one
// device three ways: through prhelper's socket, through qemu-pr-helper's socket,
// and with SG_IO issued directly from Go (internal/kernel/sgio.Exec, no helper). For 1 and
// 16 concurrent clients it prints p50/p99 latency and throughput as a table. It
// is a measurement, not a test: it fails only when a request fails.
//
// Usage: prbench -dev DEVICE [-prhelper SOCK] [-qemu SOCK] [-n REQUESTS]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// doer sends one READ KEYS and reports an error unless the device said GOOD.
type doer func() error

// result is one row of the table.
type result struct {
	mode    string
	clients int
	n       int
	p50     time.Duration
	p99     time.Duration
	rate    float64
}

func socketDoer(sock string, f *os.File) (doer, func()) {
	cl := client.New(sock, client.WithReconnect(1, 0))
	cdb := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rep, err := cl.Do(ctx, cdb, int(f.Fd()), nil)
		if err != nil {
			return err
		}
		if rep.Status != scsi.StatusGood {
			return fmt.Errorf("status %s", scsi.StatusName(rep.Status))
		}
		return nil
	}, func() { cl.Close() }
}

func sgioDoer(f *os.File) (doer, func()) {
	cdb := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	buf := make([]byte, wire.MaxData)
	return func() error {
		r, err := sgio.Exec(int(f.Fd()), cdb[:10], sgio.DirFromDevice, buf, 30*time.Second)
		if err != nil {
			return err
		}
		return r.Err()
	}, func() {}
}

// bench runs n requests spread over clients goroutines, each with its own doer.
func bench(mode string, clients, n int, mk func() (doer, func())) (result, error) {
	per := n / clients
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	doers := make([]doer, clients)
	for i := range doers {
		d, closeFn := mk()
		defer closeFn()
		doers[i] = d
		if err := d(); err != nil { // warm up: connect, first request
			return result{}, fmt.Errorf("%s warm-up: %w", mode, err)
		}
	}
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l := make([]time.Duration, 0, per)
			for j := 0; j < per; j++ {
				t := time.Now()
				if err := doers[i](); err != nil {
					errs[i] = fmt.Errorf("%s client %d request %d: %w", mode, i, j, err)
					return
				}
				l = append(l, time.Since(t))
			}
			lat[i] = l
		}(i)
	}
	wg.Wait()
	el := time.Since(start)
	var all []time.Duration
	for i := range lat {
		if errs[i] != nil {
			return result{}, errs[i]
		}
		all = append(all, lat[i]...)
	}
	sort.Slice(all, func(a, b int) bool { return all[a] < all[b] })
	q := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	return result{mode: mode, clients: clients, n: len(all), p50: q(0.50), p99: q(0.99), rate: float64(len(all)) / el.Seconds()}, nil
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("prbench", flag.ContinueOnError)
	dev := fs.String("dev", "", "SCSI device (e.g. /dev/sda)")
	prh := fs.String("prhelper", "", "prhelper socket")
	qph := fs.String("qemu", "", "qemu-pr-helper socket")
	n := fs.Int("n", 1600, "requests per measurement (split over the clients)")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *dev == "" || *n < 16 {
		fmt.Fprintln(os.Stderr, "usage: prbench -dev DEVICE [-prhelper SOCK] [-qemu SOCK] [-n REQUESTS>=16]")
		return 1
	}
	f, err := os.OpenFile(*dev, os.O_RDWR, 0)
	if err != nil {
		fmt.Fprintf(os.Stderr, "prbench: %v\n", err)
		return 1
	}
	defer f.Close()
	type mode struct {
		name string
		mk   func() (doer, func())
	}
	var modes []mode
	if *prh != "" {
		modes = append(modes, mode{"prhelper", func() (doer, func()) { return socketDoer(*prh, f) }})
	}
	if *qph != "" {
		modes = append(modes, mode{"qemu-pr-helper", func() (doer, func()) { return socketDoer(*qph, f) }})
	}
	modes = append(modes, mode{"direct SG_IO", func() (doer, func()) { return sgioDoer(f) }})
	fmt.Fprintf(w, "READ KEYS round trips on %s, %d requests per row\n", *dev, *n)
	fmt.Fprintf(w, "%-16s %8s %9s %10s %10s %10s\n", "path", "clients", "requests", "p50", "p99", "req/s")
	rc := 0
	for _, c := range []int{1, 16} {
		for _, m := range modes {
			r, err := bench(m.name, c, *n, m.mk)
			if err != nil {
				fmt.Fprintf(w, "%-16s %8d  FAILED: %v\n", m.name, c, err)
				rc = 1
				continue
			}
			fmt.Fprintf(w, "%-16s %8d %9d %10s %10s %10.0f\n", r.mode, r.clients, r.n,
				r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.rate)
		}
	}
	return rc
}
