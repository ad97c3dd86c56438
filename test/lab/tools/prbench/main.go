// Command prbench measures PERSISTENT RESERVE IN/OUT round trips through
// helper sockets (prhelper, qemu-pr-helper, a bare fd-passing echo floor)
// and with SG_IO issued directly from Go (internal/kernel/sgio.Exec, no
// helper), side by side in one run, and prints p50/p99 latency, requests per
// second and each figure's ratio to a reference path measured in the same run,
// and the helper process's CPU time per request (its threads' run time from
// /proc/PID/task/*/schedstat, PID from SO_PEERCRED): the figure least
// disturbed by other load on a shared machine.
// It is a measurement, not a test: it fails only when a request fails at the
// protocol level (a SCSI error status is an answer, and counted).
//
// Workloads (-workload, comma-separated):
//
//	readkeys  READ KEYS from each of -clients connections at once, on the first -dev
//	mixed     each of -clients connections replays the -seq sequence (from its own
//	          offset, cycling) on the first -dev, all at once
//	register  REGISTER AND IGNORE EXISTING KEY from each of -clients connections at
//	          once, a new key every time (every command changes the state)
//	rkw       READ KEYS from connection 0 while the other -clients-1 connections
//	          send register's commands: two rows, the writes ("NAME w") and the
//	          reads ("NAME rk": how long a READ KEYS waits behind writes)
//	serial    the -seq sequence in order, one connection per initiator, step k
//	          sent by its initiator on that initiator's -dev (the lab's mixed
//	          sequence from several initiators; -clients does not apply)
//
// Usage:
//
//	prbench -dev DEV[,DEV...] [-helper NAME=SOCK]... [-prhelper SOCK] [-qemu SOCK]
//	        [-direct=true] [-ref NAME] [-clients 1,16] [-workload readkeys] [-seq FILE] [-reset] [-rounds R] [-n N]
//	prbench -echo SOCK          (serve the echo floor on SOCK until killed)
//	prbench -fsync FILE [-n N]  (the disk's serial write+fdatasync rate: the
//	                             floor of one durable commit at a time)
//
// A -helper SOCK containing %d is a pattern: with -socks N, connection i uses
// the socket numbered i mod N (for an emulating prhelper with one
// --listen=PATH,initiator=name:NAME socket per initiator). With -spread,
// connection i of readkeys, register and mixed sends to device i mod the
// number of -dev devices (several logical units) instead of the first.
//
// -metrics NAME=URL reads the helper NAME's Prometheus page (its --metrics,
// http://HOST:PORT or unix:PATH) before and after each of its rows, and
// -members NAME=URL[,URL...] the etcd members' (their client URLs): after
// the row, a line per page says where the time went (metrics.go): PR OUT per
// store transaction and per logical unit's batch, the store commits' times,
// each member's WAL fsync, backend commit and peer round trip histograms.
//
// -seq files come from prgen -print -dump. scripts/bench.sh runs the host
// table, test/lab/tests/bench.sh the lab's; docs/performance.md reads them.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

// helperFlag collects repeated -helper NAME=SOCK in order.
type helperFlag []path

func (h *helperFlag) String() string { return "" }
func (h *helperFlag) Set(v string) error {
	name, sock, ok := strings.Cut(v, "=")
	if !ok || name == "" || sock == "" {
		return fmt.Errorf("want NAME=SOCK, got %q", v)
	}
	*h = append(*h, path{name: name, sock: sock})
	return nil
}

func parseInts(s string) ([]int, error) {
	var r []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		r = append(r, v)
	}
	return r, nil
}

func usage(w io.Writer, msg string) int {
	fmt.Fprintf(w, "prbench: %s\nusage: prbench -dev DEV[,DEV...] [-helper NAME=SOCK]... [-prhelper SOCK] [-qemu SOCK] [-direct=BOOL] [-ref NAME] [-clients 1,16] [-workload readkeys,mixed,register,rkw,serial] [-socks N] [-spread] [-metrics NAME=URL]... [-members NAME=URL,...]... [-seq FILE] [-reset] [-rounds R] [-n N>=16]\n       prbench -echo SOCK\n       prbench -fsync FILE [-n N]\n", msg)
	return 1
}

func run(args []string, w io.Writer) int {
	fs := flag.NewFlagSet("prbench", flag.ContinueOnError)
	fs.SetOutput(w)
	devFlag := fs.String("dev", "", "device(s): one per initiator for -workload serial; the others use the first")
	var helpers helperFlag
	fs.Var(&helpers, "helper", "a helper socket to measure, NAME=SOCK (repeatable, in order)")
	prh := fs.String("prhelper", "", "same as -helper prhelper=SOCK")
	qph := fs.String("qemu", "", "same as -helper qemu-pr-helper=SOCK")
	direct := fs.Bool("direct", true, "also measure SG_IO issued directly (needs a SCSI device)")
	ref := fs.String("ref", "qemu-pr-helper", "path the ratios are relative to (if measured)")
	clientsFlag := fs.String("clients", "1,16", "concurrent connections, comma-separated")
	workFlag := fs.String("workload", "readkeys", "readkeys, mixed, register, rkw and/or serial, comma-separated")
	seqFile := fs.String("seq", "", "command sequence for mixed and serial (prgen -print -dump)")
	n := fs.Int("n", 1600, "requests per row (split over the clients)")
	rounds := fs.Int("rounds", 1, "split each row into this many rounds, the paths taking turns, so that a change of load on a shared machine falls on all of them (serial: each round replays -n steps)")
	reset := fs.Bool("reset", false, "serial: clear the logical unit's registrations (direct SG_IO on the first -dev) before each path's replay")
	echo := fs.String("echo", "", "serve the echo floor on this socket and do nothing else")
	echoLoop := fs.String("echo-loop", "", "serve the loop floor on this socket (one thread, one epoll set, as qemu-pr-helper's main loop) and do nothing else")
	fsyncFile := fs.String("fsync", "", "measure -n serial 4 KiB write+fdatasync on this file (created, then removed) and do nothing else")
	socks := fs.Int("socks", 0, "a -helper socket with %d is a pattern of this many sockets, connection i on socket i mod N")
	clientKind := fs.String("client", "lib", "how a helper connection is driven: lib (the project's client library), lean (Go's netpoller, only QEMU's system calls), thread (an OS thread each, blocking system calls)")
	rate := fs.Float64("rate", 0, "open loop: send this many requests a second in all, on an even schedule over the connections, latency counted from each request's slot (default: closed loop, each connection sends its next request when the reply came)")
	spread := fs.Bool("spread", false, "readkeys, register, mixed: connection i on device i mod the number of -dev devices")
	var helperMetrics, members helperFlag
	fs.Var(&helperMetrics, "metrics", "NAME=URL: read helper NAME's metrics page before and after each row (http://HOST:PORT or unix:PATH)")
	fs.Var(&members, "members", "NAME=URL[,URL...]: read these etcd members' metrics before and after each of NAME's rows")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *echoLoop != "" {
		if err := serveEchoLoop(*echoLoop); err != nil {
			fmt.Fprintf(w, "prbench: echo-loop: %v\n", err)
		}
		return 1
	}
	if *echo != "" {
		if err := serveEcho(*echo); err != nil {
			fmt.Fprintf(w, "prbench: echo: %v\n", err)
		}
		return 1
	}
	if *fsyncFile != "" {
		r, err := fsyncRate(*fsyncFile, *n)
		if err != nil {
			fmt.Fprintf(w, "prbench: fsync: %v\n", err)
			return 1
		}
		fmt.Fprintf(w, "serial write+fdatasync on %s: %d, p50 %s, p99 %s, %.0f/s\n", *fsyncFile, r.n,
			r.p50.Round(100*time.Nanosecond), r.p99.Round(100*time.Nanosecond), r.rate)
		return 0
	}
	if *devFlag == "" {
		return usage(w, "-dev is required")
	}
	if *n < 16 {
		return usage(w, "-n must be at least 16")
	}
	if *rounds < 1 || *n / *rounds < 16 {
		return usage(w, "-rounds must be at least 1 and leave 16 requests a round")
	}
	clients, err := parseInts(*clientsFlag)
	if err != nil {
		return usage(w, "-clients: "+err.Error())
	}
	if *rate < 0 {
		return usage(w, "-rate must not be negative")
	}
	switch *clientKind {
	case "lib", "lean":
	case "thread":
		runtime.GOMAXPROCS(threadProcs(slices.Max(clients)))
	default:
		return usage(w, "-client: want lib, lean or thread")
	}
	if *prh != "" {
		helpers = append(helpers, path{name: "prhelper", sock: *prh})
	}
	if *qph != "" {
		helpers = append(helpers, path{name: "qemu-pr-helper", sock: *qph})
	}
	var seq []step
	works := strings.Split(*workFlag, ",")
	for _, wk := range works {
		switch wk {
		case "readkeys", "register", "rkw":
		case "mixed", "serial":
			if seq == nil {
				if *seqFile == "" {
					return usage(w, "-workload "+wk+" needs -seq")
				}
				f, err := os.Open(*seqFile)
				if err != nil {
					return usage(w, err.Error())
				}
				seq, err = readSeq(f)
				f.Close()
				if err != nil {
					return usage(w, *seqFile+": "+err.Error())
				}
			}
		default:
			return usage(w, "unknown workload "+wk)
		}
	}
	var devs []*os.File
	for _, d := range strings.Split(*devFlag, ",") {
		f, err := os.OpenFile(d, os.O_RDWR, 0)
		if err != nil {
			return usage(w, err.Error())
		}
		defer f.Close()
		devs = append(devs, f)
	}
	paths := []path(helpers)
	for i := range paths {
		paths[i].socks = *socks
		paths[i].spread = *spread
		paths[i].client = *clientKind
		paths[i].rate = *rate
		for _, m := range helperMetrics {
			if m.name == paths[i].name {
				paths[i].watch.helper = m.sock
			}
		}
		for _, m := range members {
			if m.name == paths[i].name {
				paths[i].watch.members = strings.Split(m.sock, ",")
			}
		}
	}
	if *direct {
		paths = append(paths, path{name: "direct SG_IO"})
	}
	width := 16 // the path column: the longest name, with rkw's " rk"
	for _, p := range paths {
		width = max(width, len(p.name)+3)
	}
	rc := 0
	for _, wk := range works {
		cs := clients
		if wk == "serial" {
			cs = []int{len(devs)}
		}
		loop := ""
		if *rate > 0 && wk != "serial" {
			loop = fmt.Sprintf(", open loop at %.0f/s", *rate)
		}
		fmt.Fprintf(w, "\n%s on %s, %d requests per row%s%s\n", wk, *devFlag, *n, loop, seqNote(wk, *seqFile, len(seq)))
		fmt.Fprintf(w, "%-*s %7s %8s %10s %10s %9s %7s %7s %7s %8s  %s\n", width, "path", "clients", "requests", "p50", "p99", "req/s", "p50/r", "p99/r", "rate/r", "cpu/req", "statuses")
		for _, c := range cs {
			rows := make([][]result, len(paths))
			failed := make([]bool, len(paths))
			spent := make([]reading, len(paths))
			per := *n / *rounds
			if wk == "serial" {
				per = *n
			}
			for round := 0; round < *rounds; round++ {
				for i, p := range paths {
					if failed[i] {
						continue
					}
					before, err := p.watch.read()
					var rs []result
					if err == nil {
						rs, err = measure(p, wk, c, per, devs, seq, *reset)
					}
					var after reading
					if err == nil {
						after, err = p.watch.read()
					}
					if err != nil {
						fmt.Fprintf(w, "%-*s %7d  FAILED: %v\n", width, p.name, c, err)
						failed[i], rc = true, 1
						continue
					}
					spent[i] = spent[i].add(after.add(before, -1), 1)
					if rows[i] == nil {
						rows[i] = make([]result, len(rs))
					}
					for k := range rs {
						rows[i][k] = rows[i][k].merge(rs[k])
					}
				}
			}
			var ok []result
			for i := range rows {
				if !failed[i] {
					ok = append(ok, rows[i]...)
				}
			}
			printRows(w, ok, *ref, width)
			for i, p := range paths {
				if !failed[i] && (p.watch.helper != "" || len(p.watch.members) > 0) {
					spent[i].report(w, fmt.Sprintf("%s %d", p.name, c))
				}
			}
		}
	}
	return rc
}

func seqNote(wk, file string, n int) string {
	if wk != "mixed" && wk != "serial" {
		return ""
	}
	return fmt.Sprintf(" (sequence %s, %d steps)", file, n)
}

// printRows prints one clients count's rows with their ratios to ref's row,
// the path names in a column of width characters.
func printRows(w io.Writer, rows []result, ref string, width int) {
	var r0 *result
	for i := range rows {
		if rows[i].mode == ref {
			r0 = &rows[i]
		}
	}
	ratio := func(a, b float64) string {
		if r0 == nil || b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	for _, r := range rows {
		p50, p99, rate := "-", "-", "-"
		if r0 != nil {
			p50 = ratio(float64(r.p50), float64(r0.p50))
			p99 = ratio(float64(r.p99), float64(r0.p99))
			rate = ratio(r.rate, r0.rate)
		}
		cpu := "-"
		if r.cpu >= 0 && r.n > 0 {
			cpu = (time.Duration(r.cpu) / time.Duration(r.n)).Round(100 * time.Nanosecond).String()
		}
		fmt.Fprintf(w, "%-*s %7d %8d %10s %10s %9.0f %7s %7s %7s %8s  %s\n", width, r.mode, r.clients, r.n,
			r.p50.Round(100*time.Nanosecond), r.p99.Round(100*time.Nanosecond), r.rate, p50, p99, rate, cpu, r.statuses)
	}
}
