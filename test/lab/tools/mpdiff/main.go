// Command mpdiff is the lab's randomized multipath differential (issue 16):
// host A reaches one LIO LU through a dm-multipath map of two paths served by
// prhelper (its mpath backend), host B through a third nexus; the reference is
// an identical second LU on which host A and host B are one nexus each (the
// same initiator ports, test/lab/tests/mpath-diff.sh). Each step of a seeded
// random sequence (gen.go) goes to both LUs, and the replies must be equal
// after folding host A's nexuses into one host (Fold). A unit attention is
// answered by sending the command again, as a guest's SCSI layer does: the
// mpath backend consumes unit attentions on its paths (internal/backend/mpath,
// uaRetries), the reference passes them on.
//
// With -fault-every N, after every N steps one of the map's paths is taken
// away (sysfs state offline and "multipathd fail path"), -fault-steps steps
// run while it is away, and it is brought back ("running", "multipathd
// reinstate path"). Steps while a path is away are compared and their
// differences counted apart (a path that is away cannot be changed until it
// returns). After the return mpdiff sends READ KEYS through the map and
// compares the folded LU state (READ KEYS, READ RESERVATION, READ FULL STATUS
// and REPORT CAPABILITIES through host B on both LUs) until it matches,
// -converge at most, and prints the time it took. A state that does not
// converge is printed and both LUs are reset (host B registers and CLEARs),
// so that the run goes on.
//
// Usage:
//
//	mpdiff -map SOCK -map-dev DEV -sgio SOCK -b-dev DEV -ref-a DEV -ref-b DEV -rtpi-b-map N -rtpi-b-ref N
//	       [-seed N] [-steps N] [-fault-every N -fault-steps N -paths sdX,sdY] [-v]
//
// Exit status: 0 when every step outside a fault window matched and every
// fault converged; 1 otherwise.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/prhelper/prhelper/client"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// end is one nexus (or the map) of one LU: a helper socket and a device.
type end struct {
	cl *client.Client
	f  *os.File
}

func open(sock, dev string) (*end, error) {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	return &end{cl: client.New(sock, client.WithReconnect(1, 0)), f: f}, nil
}

// do sends a command, again after a unit attention (at most 4 times).
func (e *end) do(cdb [wire.CDBSize]byte, param []byte) (Reply, int, error) {
	uas := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		rep, err := e.cl.Do(ctx, cdb, int(e.f.Fd()), param)
		cancel()
		if err != nil {
			return Reply{}, uas, err
		}
		r := toReply(rep)
		if r.Status != scsi.StatusCheckCondition || r.Sense.Key != scsi.KeyUnitAttention || uas == 3 {
			return r, uas, nil
		}
		uas++
	}
}

func toReply(rep *wire.Reply) Reply {
	r := Reply{Status: rep.Status, Data: rep.Data}
	if rep.Status == scsi.StatusCheckCondition {
		r.Sense, _ = scsi.ParseSense(rep.Sense[:])
	}
	return r
}

type lab struct {
	mapA, mapB, refA, refB *end
	w                      io.Writer
}

// state is the folded LU state of both LUs, read through host B.
func (l *lab) state() (mapS, refS string, err error) {
	for _, sa := range []byte{scsi.SAReadKeys, scsi.SAReadReservation, scsi.SAReadFullStatus, scsi.SAReportCapabilities} {
		cdb := scsi.PRInCDB(sa, wire.MaxData)
		m, _, err := l.mapB.do(cdb, nil)
		if err != nil {
			return "", "", err
		}
		r, _, err := l.refB.do(cdb, nil)
		if err != nil {
			return "", "", err
		}
		mapS += Fold(cdb, m) + "; "
		refS += Fold(cdb, r) + "; "
	}
	return mapS, refS, nil
}

// reset clears both LUs through host B and has the map notice (READ KEYS).
func (l *lab) reset() {
	p := make([]byte, 24)
	putKeys(p, 0, 0xfeed)
	for _, e := range []*end{l.mapB, l.refB} {
		e.do(scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), p)
		q := make([]byte, 24)
		putKeys(q, 0xfeed, 0)
		e.do(scsi.PROutCDB(scsi.SAClear, 0, 0, 24), q)
	}
	l.mapA.do(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
	l.refA.do(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
}

func sh(w io.Writer, args ...string) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fmt.Fprintf(w, "mpdiff: %s: %v %s\n", strings.Join(args, " "), err, out)
	}
}

// pathActive reports whether multipathd uses the path again (dm state active).
func pathActive(dev string) bool {
	out, err := exec.Command("multipathd", "show", "paths", "format", "%d %t").Output()
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == dev {
			return f[1] == "active"
		}
	}
	return false
}

// setState writes a SCSI device state (offline, running) in sysfs.
func setState(w io.Writer, dev, state string) {
	path := "/sys/block/" + dev + "/device/state"
	if err := os.WriteFile(path, []byte(state+"\n"), 0); err != nil { // the kernel wants the newline
		cur, _ := os.ReadFile(path)
		fmt.Fprintf(w, "mpdiff: %s (state was %q)\n", err, strings.TrimSpace(string(cur)))
	}
}

func run(args []string, w, ew io.Writer) int {
	fs := flag.NewFlagSet("mpdiff", flag.ContinueOnError)
	fs.SetOutput(ew)
	mapSock := fs.String("map", "", "prhelper socket serving the map (default backend: mpath)")
	mapDev := fs.String("map-dev", "", "the map, /dev/mapper/...")
	sgioSock := fs.String("sgio", "", "helper socket doing SG_IO passthrough (prhelper --backend=sgio)")
	bDev := fs.String("b-dev", "", "host B's nexus on the map's LU")
	refA := fs.String("ref-a", "", "host A's nexus on the reference LU")
	refB := fs.String("ref-b", "", "host B's nexus on the reference LU")
	bMap := fs.Uint("rtpi-b-map", 0, "RTPI of host B's target port on the map's LU")
	bRef := fs.Uint("rtpi-b-ref", 0, "RTPI of host B's target port on the reference LU")
	seed := fs.Int64("seed", time.Now().UnixNano(), "generator seed")
	steps := fs.Int("steps", 500, "number of commands")
	every := fs.Int("fault-every", 0, "take a path of the map away after every N steps (0: no faults)")
	faultSteps := fs.Int("fault-steps", 10, "steps while the path is away")
	paths := fs.String("paths", "", "the map's path devices, sdX,sdY (with -fault-every)")
	converge := fs.Duration("converge", 30*time.Second, "how long the map may take to match the reference after a path returns")
	verbose := fs.Bool("v", false, "print every step")
	if err := fs.Parse(args); err != nil {
		return 1
	}
	if *mapSock == "" || *mapDev == "" || *sgioSock == "" || *bDev == "" || *refA == "" || *refB == "" || *bMap == 0 || *bRef == 0 {
		fmt.Fprintln(ew, "usage: mpdiff -map SOCK -map-dev DEV -sgio SOCK -b-dev DEV -ref-a DEV -ref-b DEV -rtpi-b-map N -rtpi-b-ref N [-seed N] [-steps N] [-fault-every N -paths sdX,sdY]")
		return 1
	}
	var devs []string
	if *every > 0 {
		devs = strings.Split(*paths, ",")
		if len(devs) < 2 {
			fmt.Fprintln(ew, "mpdiff: -fault-every needs -paths with the map's two paths")
			return 1
		}
	}
	l := &lab{w: w}
	for _, x := range []struct {
		e         **end
		sock, dev string
	}{{&l.mapA, *mapSock, *mapDev}, {&l.mapB, *sgioSock, *bDev}, {&l.refA, *sgioSock, *refA}, {&l.refB, *sgioSock, *refB}} {
		e, err := open(x.sock, x.dev)
		if err != nil {
			fmt.Fprintf(ew, "mpdiff: %v\n", err)
			return 1
		}
		*x.e = e
	}
	for _, d := range devs { // every path of the map in use at the start
		if cur, err := os.ReadFile("/sys/block/" + d + "/device/state"); err != nil || strings.TrimSpace(string(cur)) != "running" {
			setState(w, d, "running")
			sh(w, "multipathd", "reinstate", "path", d)
			time.Sleep(1100 * time.Millisecond)
		}
	}
	g := NewGen(*seed, Ports{BMap: uint16(*bMap), BRef: uint16(*bRef)})
	g.Disjoint = *every > 0
	fmt.Fprintf(w, "mpdiff: seed %d, %d steps, faults every %d steps (%d steps away), paths %v\n", *seed, *steps, *every, *faultSteps, devs)

	var (
		match, mismatch, downMatch, downMismatch, uaMap, uaRef int
		faults, converged, diverged                            int
		refused, refusedApplied                                int
		downExplained, downUnexplained                         int
		worst                                                  time.Duration
		down                                                   string // the path that is away
		downUntil                                              int
	)
	t0 := time.Now()
	for k := 1; k <= *steps; k++ {
		if *every > 0 && down == "" && k%*every == 0 && k+*faultSteps <= *steps {
			down = devs[(k / *every)%len(devs)]
			for _, d := range devs { // the other path must be in use, or the map has none
				for t := 0; d != down && !pathActive(d) && t < 50; t++ {
					if t == 0 {
						fmt.Fprintf(w, "mpdiff: step %d: %s is not active in multipathd; reinstating it first\n", k, d)
						sh(w, "multipathd", "reinstate", "path", d)
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			faults++
			fmt.Fprintf(w, "mpdiff: step %d: path %s away (offline, multipathd fail path)\n", k, down)
			setState(w, down, "offline")
			sh(w, "multipathd", "fail", "path", down)
			time.Sleep(1100 * time.Millisecond) // prhelper's path cache (1 s)
			downUntil = k + *faultSteps
		}
		st := g.Next()
		var me, ref *end = l.mapA, l.refA
		if st.Host == HostB {
			me, ref = l.mapB, l.refB
		}
		// A PR OUT of host A that the map refuses (Refused) is not sent to
		// the reference: the guest's command was not executed, and the map
		// must not have applied it on any path, which the LU's state through
		// host B, byte for byte before and after, shows. Outside a fault
		// window a refusal is a mismatch anyway, so the state is read only
		// while a path is away.
		var before string
		if st.Host == HostA && st.CDB[0] == scsi.OpPersistentReserveOut && down != "" {
			var err error
			if before, err = l.rawState(); err != nil {
				fmt.Fprintf(w, "mpdiff: seed %d step %d: reading the state: %v\n", *seed, k, err)
				return 1
			}
		}
		// the key the away path holds before the step, for explaining a
		// difference (NamesKey, WithoutNexus)
		var awayAddr, awayKey uint64
		stale := false // the away path holds a key the map's other path does not
		if down != "" {
			i := slices.Index(devs, down)
			awayAddr = []uint64{initiatorA1, initiatorA2}[i]
			awayKey = l.nexusKey(awayAddr)
			stale = awayKey != 0 && awayKey != l.nexusKey([]uint64{initiatorA2, initiatorA1}[i])
		}
		mr, mu, merr := me.do(st.CDB, st.ParamMap)
		uaMap += mu
		if merr == nil && st.Host == HostA && Refused(mr) {
			refused++
			if down == "" {
				mismatch++
			}
			applied := ""
			if before != "" {
				after, err := l.rawState()
				if err != nil {
					fmt.Fprintf(w, "mpdiff: seed %d step %d: reading the state: %v\n", *seed, k, err)
					return 1
				}
				if after != before {
					refusedApplied++
					applied = fmt.Sprintf("\n    APPLIED DESPITE THE REFUSAL: the LU's state changed\n    before: %s\n    after:  %s", before, after)
				}
			}
			fmt.Fprintf(w, "REFUSED by the map (not sent to the reference)%s, seed %d step %d: %s\n    map: %s\n    paths: %s%s\n",
				map[bool]string{true: " while " + down + " away", false: " OUTSIDE A FAULT"}[down != ""], *seed, k, st.Desc, Fold(st.CDB, mr), pathStates(devs), applied)
			if *verbose {
				fmt.Fprintf(w, "%5d %-60s refused\n", k, st.Desc)
			}
		} else {
			rr, ru, rerr := ref.do(st.CDB, st.ParamRef)
			uaRef += ru
			if merr != nil || rerr != nil {
				fmt.Fprintf(w, "mpdiff: seed %d step %d %s: helper error: map %v, reference %v\n", *seed, k, st.Desc, merr, rerr)
				return 1
			}
			fm, fr := Fold(st.CDB, mr), Fold(st.CDB, rr)
			switch {
			case fm == fr && down == "":
				match++
			case fm == fr:
				downMatch++
			case down != "":
				// explained when the away path's registration is all that differs
				why := "UNEXPLAINED"
				if wr, ok := WithoutNexus(st.CDB, mr, awayAddr, awayKey); ok && Fold(st.CDB, wr) == fr {
					why = "explained: the away path's registration"
					downExplained++
				} else if stale && NamesKey(st.CDB, st.ParamRef, awayKey) {
					why = fmt.Sprintf("explained: names %x, the key the away path still holds", awayKey)
					downExplained++
				} else {
					downUnexplained++
				}
				downMismatch++
				fmt.Fprintf(w, "DIFF while %s away (%s), seed %d step %d: %s\n    map: %s\n    ref: %s\n", down, why, *seed, k, st.Desc, fm, fr)
			default:
				mismatch++
				fmt.Fprintf(w, "MISMATCH seed %d step %d: %s\n    map: %s\n    ref: %s\n", *seed, k, st.Desc, fm, fr)
			}
			if *verbose {
				fmt.Fprintf(w, "%5d %-60s %s\n", k, st.Desc, fr)
			}
		}
		if down != "" && k >= downUntil {
			fmt.Fprintf(w, "mpdiff: step %d: path %s back (running, multipathd reinstate path)\n", k, down)
			setState(w, down, "running")
			if sz, err := os.ReadFile("/sys/block/" + down + "/size"); err == nil && strings.TrimSpace(string(sz)) == "0" {
				// the rescan that "running" starts read no capacity (docs/multipath.md §9)
				fmt.Fprintf(w, "mpdiff: step %d: %s came back with a capacity of 0: dm-multipath fails it on reads through the map; PR commands still go there\n", k, down)
			}
			sh(w, "multipathd", "reinstate", "path", down)
			back := time.Now()
			var ms, rs string
			ok := false
			for time.Since(back) < *converge {
				// the map's next command; it must be answered by the device
				// (not "no usable path"), and multipathd must use the path again
				mr, _, _ := l.mapA.do(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), nil)
				var err error
				if ms, rs, err = l.state(); err != nil {
					fmt.Fprintf(w, "mpdiff: reading the state: %v\n", err)
					return 1
				}
				if mr.Status != scsi.StatusGood {
					ms = "the map answers " + Fold(scsi.PRInCDB(scsi.SAReadKeys, wire.MaxData), mr) + "; " + ms
				} else if !pathActive(down) {
					ms = "multipathd does not use " + down + " yet; " + ms
				}
				if ms == rs {
					ok = true
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			took := time.Since(back)
			if ok {
				converged++
				worst = max(worst, took)
				fmt.Fprintf(w, "mpdiff: converged %.1fs after %s came back\n", took.Seconds(), down)
			} else {
				diverged++
				fmt.Fprintf(w, "DIVERGED seed %d: %v after %s came back the LUs still differ\n    map: %s\n    ref: %s\nmpdiff: resetting both LUs\n", *seed, *converge, down, ms, rs)
				l.reset()
			}
			down = ""
		}
	}
	fmt.Fprintf(w, "mpdiff: seed %d: %d steps in %.0fs: %d matched, %d mismatched; while a path was away: %d matched, %d differed (%d explained by the away path's registration, %d not); %d faults, %d converged (slowest %.1fs), %d diverged; refused by the map: %d (applied despite it: %d); unit attentions sent again: map %d, reference %d\n",
		*seed, *steps, time.Since(t0).Seconds(), match, mismatch, downMatch, downMismatch, downExplained, downUnexplained, faults, converged, worst.Seconds(), diverged, refused, refusedApplied, uaMap, uaRef)
	if mismatch > 0 || diverged > 0 || refusedApplied > 0 || downUnexplained > 0 {
		return 1
	}
	return 0
}
