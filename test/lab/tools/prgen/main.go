// Command prgen is the lab's randomized differential test of prhelper's
// emulated persistent reservations against LIO: a seeded generator (gen.go)
// makes a sequence of PERSISTENT RESERVE IN/OUT commands over 2 to 4
// initiators, and each command goes to LIO through the initiator's tcm_loop
// path (through a helper socket doing SG_IO passthrough: prhelper's sgio
// backend, which gives every PR IN a zeroed buffer) and to prhelper
// --backend=emulate through the socket that carries the same identity
// (--listen=SOCK,initiator=name:naa.5001405b0000000N,port=RTPI) on a disk
// image. Every reply must be identical: status, all 96 sense bytes and the data.
//
// Usage:
//
//	prgen -lio SOCK -lio-dev DEV1,DEV2[,...] -emu SOCK1,SOCK2[,...] -emu-dev IMAGE -rtpi R1,R2[,...]
//	      [-seed N] [-steps N] [-seed-db DB -lu ID] [-record FILE] [-v]
//	prgen -print -rtpi 1,2 [-seed N] [-steps N] [-ioctl] [-dump FILE]    (print the sequence only; -dump: for prbench -seq)
//	prgen -linuxpr SOCK -linuxpr-dev DEV1,DEV2[,...] -lio SOCK -lio-dev DEV1,DEV2[,...] -rtpi R1,R2[,...] [-seed N] [-steps N]
//
// The seed defaults to the time and is printed first, so a failure can be
// replayed with -seed. On the first mismatch prgen prints the seed, the step
// number, the command and both replies in hex and exits 1 (the two states have
// diverged; later steps would only repeat it).
//
// -seed-db writes, before the run, the logical unit's target ports into
// prhelper's store (key lu/ID): each RTPI admits only its own initiator, as
// LIO's tcm_loop paths do. prhelper has no option for that (its emulated
// units have one port, open to every initiator), and without it SPEC_I_PT and
// REGISTER AND MOVE towards another initiator cannot answer like LIO (run 6
// of tests/emulate-vs-lio.sh shows it).
//
// -dup-tids, -own-key-preempt, -zero-len-we and -move-no-unreg let through the four cases
// where LIO and the engine are known to differ (see Gen); they are off by
// default.
//
// -linuxpr compares prhelper --backend=linuxpr (its socket, and the paths of
// a second LIO logical unit with the same initiators) with SG_IO passthrough
// to the first (-lio) on commands the ioctls can express (-ioctl, implied):
// see linuxpr.go. Differences must be documented exceptions; the run goes on
// after each, resynchronised. -rtpi are the first logical unit's.
//
// -record writes LIO's replies (one line per step) for the host-side unit test.
//
// Exit status: 0 when every reply matched, 1 on a mismatch or an error.
package main

import (
	"bufio"
	"context"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/internal/store/sqlite"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// parseRTPIs parses "1,2,3".
func parseRTPIs(s string) ([]uint16, error) {
	var r []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("bad RTPI %q in %q", f, s)
		}
		r = append(r, uint16(v))
	}
	return r, nil
}

// side is one implementation: a socket per path (or one for all) and the fd
// each path sends.
type side struct {
	name string
	cls  []*client.Client
	fds  []*os.File
}

func (s *side) do(path int, st Step, timeout time.Duration) (*wire.Reply, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.cls[path].Do(ctx, st.CDB, int(s.fds[path].Fd()), st.Param)
}

func openSide(name string, socks, devs []string, n int) (*side, error) {
	s := &side{name: name}
	for i := 0; i < n; i++ {
		sk, dv := socks[0], devs[0]
		if len(socks) > 1 {
			sk = socks[i]
		}
		if len(devs) > 1 {
			dv = devs[i]
		}
		f, err := os.OpenFile(dv, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("%s: open %s: %w", name, dv, err)
		}
		s.fds = append(s.fds, f)
		s.cls = append(s.cls, client.New(sk, client.WithReconnect(1, 0)))
	}
	return s, nil
}

// sameReply reports how two replies differ, "" when identical.
func sameReply(a, b *wire.Reply) string {
	switch {
	case a.Status != b.Status:
		return "status differs"
	case len(a.Data) != len(b.Data):
		return "data size differs"
	case string(a.Data) != string(b.Data):
		return "data differs"
	case a.Sense != b.Sense:
		return "sense differs"
	}
	return ""
}

func summary(r *wire.Reply) string {
	s := fmt.Sprintf("%s size=%d", scsi.StatusName(r.Status), len(r.Data))
	if r.Status == scsi.StatusCheckCondition {
		if sn, ok := scsi.ParseSense(r.Sense[:]); ok {
			s += " sense=" + sn.String()
		}
	}
	return s
}

func dump(w io.Writer, name string, r *wire.Reply) {
	fmt.Fprintf(w, "    %s: %s\n", name, summary(r))
	fmt.Fprintf(w, "    %s sense: %s\n", name, hex.EncodeToString(r.Sense[:]))
	fmt.Fprintf(w, "    %s data:  %s\n", name, hex.EncodeToString(r.Data))
}

// dumpLine is one step of a -dump file: the initiator index, the 16-byte CDB
// and the parameter list ("-" when there is none), in hex; prbench -seq reads it.
func dumpLine(st Step) string {
	p := "-"
	if len(st.Param) > 0 {
		p = hex.EncodeToString(st.Param)
	}
	return fmt.Sprintf("%d %s %s", st.Path, hex.EncodeToString(st.CDB[:]), p)
}

// recordLine is one step of a -record file: step, status, sense (96 bytes) and
// data, hex.
func recordLine(k int, r *wire.Reply) string {
	return fmt.Sprintf("%d %02x %s %s", k, r.Status, hex.EncodeToString(r.Sense[:]), hex.EncodeToString(r.Data))
}

// seedPorts stores the lab's target ports as the state of lu/ID in prhelper's
// SQLite store, unless the unit already has a state.
func seedPorts(db, lu string, rtpis []uint16) error {
	s, err := sqlite.Open(db, sqlite.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	st := pr.State{Ports: LabPorts(rtpis)}
	b, err := st.MarshalBinary()
	if err != nil {
		return fmt.Errorf("marshal state: %w", err)
	}
	return s.Update(context.Background(), "lu/"+lu, func(cur []byte) ([]byte, bool, error) {
		if cur != nil {
			return nil, false, fmt.Errorf("lu/%s already has a state", lu)
		}
		return b, true, nil
	})
}

// linuxprMode opens the four sides of the -linuxpr mode and runs it.
func linuxprMode(w, ew io.Writer, g *Gen, seed int64, steps int, lioSock, lioDev, lprSock, lprDev string, n int, timeout time.Duration, verbose bool) int {
	if lioSock == "" || lioDev == "" || lprDev == "" {
		fmt.Fprintln(ew, "usage: prgen -linuxpr SOCK -linuxpr-dev DEV1,DEV2 -lio SOCK -lio-dev DEV1,DEV2 -rtpi R1,R2 [-seed N] [-steps N]")
		return 1
	}
	rdevs, tdevs := strings.Split(lioDev, ","), strings.Split(lprDev, ",")
	if len(rdevs) != n || len(tdevs) != n {
		fmt.Fprintf(ew, "prgen: %d RTPIs but %d -lio-dev and %d -linuxpr-dev devices\n", n, len(rdevs), len(tdevs))
		return 1
	}
	l := &ludiff{n: n, timeout: timeout}
	for _, x := range []struct {
		s          **side
		name, sock string
		devs       []string
	}{{&l.ref, "lio", lioSock, rdevs}, {&l.test, "linuxpr", lprSock, tdevs}, {&l.testSG, "sgio", lioSock, tdevs}} {
		s, err := openSide(x.name, []string{x.sock}, x.devs, n)
		if err != nil {
			fmt.Fprintf(ew, "prgen: %v\n", err)
			return 1
		}
		*x.s = s
	}
	l.refSG = l.ref
	return runLinuxpr(w, g, l, seed, steps, verbose)
}

func run(args []string, w, ew io.Writer) int {
	fs := flag.NewFlagSet("prgen", flag.ContinueOnError)
	fs.SetOutput(ew)
	seed := fs.Int64("seed", time.Now().UnixNano(), "generator seed (default: the time)")
	steps := fs.Int("steps", 2000, "number of commands")
	rtpiFlag := fs.String("rtpi", "", "RELATIVE TARGET PORT IDENTIFIER of each path, comma-separated (2 to 4)")
	lioSock := fs.String("lio", "", "socket of the helper passing commands to LIO (prhelper --backend=sgio)")
	lioDev := fs.String("lio-dev", "", "LIO paths, one device per initiator: DEV1,DEV2,...")
	emuSock := fs.String("emu", "", "prhelper sockets, one per initiator: SOCK1,SOCK2,...")
	emuDev := fs.String("emu-dev", "", "disk image the emulation runs on")
	seedDB := fs.String("seed-db", "", "prhelper's SQLite store: write the lab's target ports for -lu first")
	lu := fs.String("lu", "", "logical-unit id of the image in prhelper (with -seed-db)")
	record := fs.String("record", "", "write LIO's replies to FILE")
	print := fs.Bool("print", false, "print the generated sequence and exit")
	dumpFile := fs.String("dump", "", "with -print: also write the sequence to FILE for prbench -seq, one step a line: initiator index, CDB and parameter list in hex")
	verbose := fs.Bool("v", false, "print every step")
	ownKey := fs.Bool("own-key-preempt", false, "no effect: kept so that recordings and scripts naming it still work (the engine mismatch it let through is fixed)")
	zeroLen := fs.Bool("zero-len-we", false, "send PR OUT without parameter list from unregistered nexuses under Write Exclusive reservations (LIO 05/1A/00, a LIO quirk the LIO() profile reproduces: docs/spc4-pr.md §14 D26)")
	moveKeep := fs.Bool("move-no-unreg", false, "let REGISTER AND MOVE reach a registration that was a move source without UNREG (LIO corrupts its scope, a LIO bug the LIO() profile reproduces: docs/spc4-pr.md §14.3 D28)")
	dupTIDs := fs.Bool("dup-tids", false, "let SPEC_I_PT lists name the commanding initiator or repeat one (LIO registers one I_T nexus twice, a LIO quirk the LIO() profile reproduces: docs/spc4-pr.md §14.2 D27)")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit for each request")
	ioctl := fs.Bool("ioctl", false, "only commands <linux/pr.h> can express (implied by -linuxpr)")
	lprSock := fs.String("linuxpr", "", "socket of prhelper --backend=linuxpr: compare it with -lio (commands the ioctls express)")
	lprDev := fs.String("linuxpr-dev", "", "with -linuxpr: the second logical unit's paths, DEV1,DEV2,... (same initiators as -lio-dev)")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	rtpis, err := parseRTPIs(*rtpiFlag)
	if err != nil {
		fmt.Fprintf(ew, "prgen: -rtpi: %v\n", err)
		return 1
	}
	g, err := NewGen(*seed, rtpis)
	if err != nil {
		fmt.Fprintln(ew, err)
		return 1
	}
	g.DupTIDs, g.ZeroLenWE, g.MoveNoUnreg = *dupTIDs, *zeroLen, *moveKeep
	g.Ioctl = *ioctl || *lprSock != ""
	fmt.Fprintf(w, "prgen: seed %d, %d steps, %d initiators, RTPIs %v, dup-tids %v, own-key-preempt %v, zero-len-we %v, move-no-unreg %v, ioctl %v\n", *seed, *steps, len(rtpis), rtpis, *dupTIDs, *ownKey, *zeroLen, *moveKeep, g.Ioctl)
	if *print {
		var dw io.Writer = io.Discard
		if *dumpFile != "" {
			f, err := os.Create(*dumpFile)
			if err != nil {
				fmt.Fprintf(ew, "prgen: %v\n", err)
				return 1
			}
			defer f.Close()
			bw := bufio.NewWriter(f)
			defer bw.Flush()
			dw = bw
		}
		for k := 1; k <= *steps; k++ {
			st := g.Next()
			fmt.Fprintf(w, "%5d %s\n", k, st.Desc)
			fmt.Fprintln(dw, dumpLine(st))
		}
		return 0
	}
	if *seedDB != "" {
		if *lu == "" {
			fmt.Fprintln(ew, "prgen: -seed-db needs -lu")
			return 1
		}
		if err := seedPorts(*seedDB, *lu, rtpis); err != nil {
			fmt.Fprintf(ew, "prgen: seed ports: %v\n", err)
			return 1
		}
		fmt.Fprintf(w, "prgen: stored target ports %v (one initiator each) for lu/%s in %s\n", rtpis, *lu, *seedDB)
	}
	if *steps == 0 {
		return 0
	}
	if *lprSock != "" {
		return linuxprMode(w, ew, g, *seed, *steps, *lioSock, *lioDev, *lprSock, *lprDev, len(rtpis), *timeout, *verbose)
	}
	if *lioSock == "" || *lioDev == "" || *emuSock == "" || *emuDev == "" {
		fmt.Fprintln(ew, "usage: prgen -lio SOCK -lio-dev DEV1,DEV2 -emu SOCK1,SOCK2 -emu-dev IMAGE -rtpi R1,R2 [-seed N] [-steps N]")
		return 1
	}
	devs, socks := strings.Split(*lioDev, ","), strings.Split(*emuSock, ",")
	if len(devs) != len(rtpis) || len(socks) != len(rtpis) {
		fmt.Fprintf(ew, "prgen: %d RTPIs but %d LIO devices and %d prhelper sockets\n", len(rtpis), len(devs), len(socks))
		return 1
	}
	lio, err := openSide("lio", []string{*lioSock}, devs, len(rtpis))
	if err != nil {
		fmt.Fprintf(ew, "prgen: %v\n", err)
		return 1
	}
	emu, err := openSide("emu", socks, []string{*emuDev}, len(rtpis))
	if err != nil {
		fmt.Fprintf(ew, "prgen: %v\n", err)
		return 1
	}
	var rec *bufio.Writer
	if *record != "" {
		f, err := os.Create(*record)
		if err != nil {
			fmt.Fprintf(ew, "prgen: %v\n", err)
			return 1
		}
		defer f.Close()
		rec = bufio.NewWriter(f)
		defer rec.Flush()
		fmt.Fprintf(rec, "# prgen seed %d steps %d rtpi %s dup-tids %v own-key-preempt %v zero-len-we %v move-no-unreg %v\n", *seed, *steps, *rtpiFlag, *dupTIDs, *ownKey, *zeroLen, *moveKeep)
	}
	counts := map[string]int{}
	t0 := time.Now()
	for k := 1; k <= *steps; k++ {
		st := g.Next()
		lr, lerr := lio.do(st.Path, st, *timeout)
		er, eerr := emu.do(st.Path, st, *timeout)
		if lerr != nil || eerr != nil {
			fmt.Fprintf(w, "MISMATCH seed %d step %d: %s\n    cdb: %s param: %s\n    lio error: %v\n    emu error: %v\n",
				*seed, k, st.Desc, hex.EncodeToString(st.CDB[:10]), hex.EncodeToString(st.Param), lerr, eerr)
			return 1
		}
		if rec != nil {
			fmt.Fprintln(rec, recordLine(k, lr))
		}
		if d := sameReply(lr, er); d != "" {
			fmt.Fprintf(w, "MISMATCH seed %d step %d (%s): %s\n", *seed, k, d, st.Desc)
			fmt.Fprintf(w, "    cdb:   %s\n    param: %s\n", hex.EncodeToString(st.CDB[:10]), hex.EncodeToString(st.Param))
			dump(w, "lio", lr)
			dump(w, "emu", er)
			fmt.Fprintf(w, "prgen: seed %d: %d of %d steps identical, then a mismatch (replay: -seed %d)\n", *seed, k-1, *steps, *seed)
			return 1
		}
		outcome := scsi.StatusName(lr.Status)
		if lr.Status == scsi.StatusCheckCondition {
			if sn, ok := scsi.ParseSense(lr.Sense[:]); ok {
				outcome = sn.String()
			}
		}
		counts[st.Kind()+" "+outcome]++
		if *verbose {
			fmt.Fprintf(w, "%5d %-70s %s\n", k, st.Desc, summary(lr))
		} else if k%500 == 0 {
			fmt.Fprintf(w, "prgen: %d steps identical (%.0fs)\n", k, time.Since(t0).Seconds())
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-45s %5d\n", k, counts[k])
	}
	fmt.Fprintf(w, "prgen: seed %d: %d steps, %d identical, 0 mismatched (%.0fs)\n", *seed, *steps, *steps, time.Since(t0).Seconds())
	return 0
}
