package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// The -linuxpr mode (test/lab/tests/linuxpr-diff.sh): the generator restricted
// to what <linux/pr.h> expresses (Gen.Ioctl) sends each command to one LIO
// logical unit through SG_IO passthrough (-lio, prhelper --backend=sgio, the
// reference) and to an identical second one through prhelper --backend=linuxpr
// (-linuxpr), the same initiator on the same path number of each. A reply may
// differ from the reference's only as one of linuxprExceptions says
// (docs/linux-pr.md §9 explains each); any other difference is unexplained and
// fails the run. After any difference the two states are compared and, when
// they differ, both logical units are cleared (resynchronisation), so that one
// difference is counted once and the run goes on.

// exception is a documented difference of the linuxpr backend from the device.
type exception struct {
	Name string
	// match reports whether test's reply, where ref is the device's own, is
	// this difference.
	match func(st Step, ref, test *wire.Reply) bool
}

// linuxprExceptions are the differences docs/linux-pr.md §9 documents, for
// the lab's Linux 6.1.
var linuxprExceptions = []exception{
	// sd before 6.4 returns a PR OUT's raw SCSI result and drops the sense
	// (docs/linux-pr.md §5): a CHECK CONDITION other than a unit attention
	// (which the backend re-issues) reaches the guest as 0B/00/06. The device
	// did not execute the command, so the states stay equal.
	{Name: "sense-lost", match: func(st Step, ref, test *wire.Reply) bool {
		return st.CDB[0] == scsi.OpPersistentReserveOut &&
			ref.Status == scsi.StatusCheckCondition && senseKey(ref) != scsi.KeyUnitAttention &&
			test.Status == scsi.StatusCheckCondition && test.Sense == fixedSense(scsi.SenseIOError)
	}},
}

func senseKey(r *wire.Reply) byte {
	s, _ := scsi.ParseSense(r.Sense[:])
	return s.Key
}

func fixedSense(s scsi.Sense) (b [wire.SenseSize]byte) {
	copy(b[:], s.Fixed())
	return b
}

// explain returns the name of the exception test's reply is, "" for none.
func explain(st Step, ref, test *wire.Reply) string {
	for _, e := range linuxprExceptions {
		if e.match(st, ref, test) {
			return e.Name
		}
	}
	return ""
}

// doUA sends st through path, again after a unit attention (at most 4 times),
// as a guest's SCSI layer does; it returns the reply and how many unit
// attentions it met.
func (s *side) doUA(path int, st Step, timeout time.Duration) (*wire.Reply, int, error) {
	for uas := 0; ; uas++ {
		r, err := s.do(path, st, timeout)
		if err != nil || r.Status != scsi.StatusCheckCondition || senseKey(r) != scsi.KeyUnitAttention || uas == 3 {
			return r, uas, err
		}
	}
}

// generation is the PRgeneration of a READ KEYS or READ RESERVATION reply.
func generation(st Step, r *wire.Reply) (uint32, bool) {
	if st.CDB[0] != scsi.OpPersistentReserveIn || r.Status != scsi.StatusGood || len(r.Data) < 4 {
		return 0, false
	}
	return binary.BigEndian.Uint32(r.Data), true
}

// shiftGeneration returns r with delta taken off its PRgeneration (a copy).
func shiftGeneration(st Step, r *wire.Reply, delta uint32) *wire.Reply {
	g, ok := generation(st, r)
	if !ok || delta == 0 {
		return r
	}
	c := *r
	c.Data = append([]byte(nil), r.Data...)
	binary.BigEndian.PutUint32(c.Data, g-delta)
	return &c
}

// ludiff holds the two logical units of the -linuxpr mode: ref and test are
// the sides the steps go to; refSG and testSG reach the same devices through
// SG_IO passthrough, to read and clear their states neutrally.
type ludiff struct {
	ref, test, refSG, testSG *side
	n                        int
	timeout                  time.Duration
	delta                    uint32 // test's PRgeneration minus ref's since the last resynchronisation
}

var (
	readKeys = Step{CDB: scsi.PRInCDB(scsi.SAReadKeys, fullAlloc), Desc: "READ KEYS"}
	readRes  = Step{CDB: scsi.PRInCDB(scsi.SAReadReservation, fullAlloc), Desc: "READ RESERVATION"}
)

// state is a logical unit's READ KEYS and READ RESERVATION through path 0
// (without the generations) and its PRgeneration.
func (l *ludiff) state(s *side) (string, uint32, error) {
	var out string
	var gen uint32
	for _, st := range []Step{readKeys, readRes} {
		r, _, err := s.doUA(0, st, l.timeout)
		if err != nil {
			return "", 0, err
		}
		if g, ok := generation(st, r); ok {
			gen = g
			out += fmt.Sprintf("%s %x; ", st.Desc, r.Data[4:])
		} else {
			out += fmt.Sprintf("%s %s; ", st.Desc, summary(r))
		}
	}
	return out, gen, nil
}

// clear empties a logical unit (REGISTER AND IGNORE EXISTING KEY, CLEAR) and
// consumes the unit attentions that leaves on every path.
func (l *ludiff) clear(s *side) error {
	reg := Step{CDB: scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), Param: basicParam(0, 0xfeed, 0, nil)}
	clr := Step{CDB: scsi.PROutCDB(scsi.SAClear, 0, 0, 24), Param: basicParam(0xfeed, 0, 0, nil)}
	for _, st := range []Step{reg, clr} {
		r, _, err := s.doUA(0, st, l.timeout)
		if err != nil {
			return err
		}
		if r.Status != scsi.StatusGood {
			return fmt.Errorf("clearing: %s", summary(r))
		}
	}
	for p := 0; p < l.n; p++ {
		if _, _, err := s.doUA(p, readKeys, l.timeout); err != nil {
			return err
		}
	}
	return nil
}

// resync compares the states after a difference. When only the generations
// differ it records the new offset; otherwise it clears both logical units.
// It returns a line describing what it did.
func (l *ludiff) resync() (string, bool, error) {
	rs, rg, err := l.state(l.refSG)
	if err != nil {
		return "", false, err
	}
	ts, tg, err := l.state(l.testSG)
	if err != nil {
		return "", false, err
	}
	if rs == ts {
		old := l.delta
		l.delta = tg - rg
		if old == l.delta {
			return "states equal", false, nil
		}
		return fmt.Sprintf("states equal but for the generation (now %d ahead)", int32(l.delta)), false, nil
	}
	for _, s := range []*side{l.refSG, l.testSG} {
		if err := l.clear(s); err != nil {
			return "", false, err
		}
	}
	_, rg, err = l.state(l.refSG)
	if err != nil {
		return "", false, err
	}
	_, tg, err = l.state(l.testSG)
	if err != nil {
		return "", false, err
	}
	l.delta = tg - rg
	return fmt.Sprintf("states differed (reference: %s linuxpr: %s); both cleared", rs, ts), true, nil
}

// runLinuxpr runs the -linuxpr mode; it returns the exit status.
func runLinuxpr(w io.Writer, g *Gen, l *ludiff, seed int64, steps int, verbose bool) int {
	var match, unexplained, resets, uaRef, uaTest int
	documented := map[string]int{}
	t0 := time.Now()
	for k := 1; k <= steps; k++ {
		st := g.Next()
		rr, ru, rerr := l.ref.doUA(st.Path, st, l.timeout)
		tr, tu, terr := l.test.doUA(st.Path, st, l.timeout)
		uaRef += ru
		uaTest += tu
		if rerr != nil || terr != nil {
			fmt.Fprintf(w, "MISMATCH seed %d step %d: %s\n    reference error: %v\n    linuxpr error: %v\n", seed, k, st.Desc, rerr, terr)
			return 1
		}
		tr = shiftGeneration(st, tr, l.delta)
		if verbose {
			fmt.Fprintf(w, "%5d %-64s %s\n", k, st.Desc, summary(rr))
		}
		if sameReply(rr, tr) == "" {
			match++
			continue
		}
		if name := explain(st, rr, tr); name != "" {
			documented[fmt.Sprintf("%s: %s, reference %s", name, st.Kind(), senseOrStatus(rr))]++
		} else {
			unexplained++
			fmt.Fprintf(w, "MISMATCH seed %d step %d (%s): %s\n", seed, k, sameReply(rr, tr), st.Desc)
			fmt.Fprintf(w, "    cdb:   %s\n    param: %s\n", hex.EncodeToString(st.CDB[:10]), hex.EncodeToString(st.Param))
			dump(w, "reference", rr)
			dump(w, "linuxpr", tr)
		}
		what, reset, err := l.resync()
		if err != nil {
			fmt.Fprintf(w, "prgen: seed %d step %d: resynchronising: %v\n", seed, k, err)
			return 1
		}
		if reset {
			resets++
			g.Reset()
			fmt.Fprintf(w, "prgen: seed %d step %d: %s\n", seed, k, what)
		}
	}
	names := make([]string, 0, len(documented))
	total := 0
	for n, c := range documented {
		names = append(names, n)
		total += c
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  documented %-60s %5d\n", n, documented[n])
	}
	fmt.Fprintf(w, "prgen: seed %d: %d steps in %.0fs: %d identical, %d documented differences, %d unexplained; %d resynchronisations (both cleared); unit attentions sent again: reference %d, linuxpr %d\n",
		seed, steps, time.Since(t0).Seconds(), match, total, unexplained, resets, uaRef, uaTest)
	if unexplained > 0 {
		return 1
	}
	return 0
}

func senseOrStatus(r *wire.Reply) string {
	if r.Status == scsi.StatusCheckCondition {
		if s, ok := scsi.ParseSense(r.Sense[:]); ok {
			return s.String()
		}
	}
	return scsi.StatusName(r.Status)
}
