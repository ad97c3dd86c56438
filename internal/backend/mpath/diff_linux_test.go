package mpath

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// TestDifferentialSingleNexus is the lab's mpath-diff (test/lab/tools/mpdiff)
// on the fake kernel: seeded random PR commands from host A through the map
// (two paths, two nexuses) and from host B (one nexus), against a reference LU
// where host A is one nexus. Replies are compared after the folding doc.go
// describes (READ KEYS as a set of distinct keys, generations ignored, READ
// FULL STATUS grouped per host, a unit attention answered by sending again).
func TestDifferentialSingleNexus(t *testing.T) {
	for seed := int64(1); seed <= diffSeeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := newRig(t, "sdb", "sdc")
			d := &diffRun{r: r, rng: rand.New(rand.NewSource(seed)),
				a: r.l.nexus[r.l.dev["sdb"]], b: pr.Nexus{Initiator: pr.SASInitiator(0x500140500000ff01), RTPI: 1}}
			var trail []string
			for k := 1; k <= 1000; k++ {
				host, cdb, param, desc := d.next()
				mine, ref := d.run(host, cdb, param)
				f1, f2 := d.fold(cdb, mine), d.fold(cdb, ref)
				trail = append(trail, fmt.Sprintf("%d %s -> %s | keys %x", k, desc, f1, r.l.keysOf("sdb", "sdc")))
				if f1 != f2 {
					t.Fatalf("step %d %s:\n map: %s\n ref: %s\n map LU %+v\n ref LU %+v\n%s", k, desc, f1, f2, r.l.st, d.ref,
						strings.Join(trail[max(0, len(trail)-12):], "\n"))
				}
			}
		})
	}
}

// diffSeeds is the number of seeds each differential runs.
var diffSeeds = int64(60)

type diffRun struct {
	r    *rig
	rng  *rand.Rand
	ref  pr.State
	a, b pr.Nexus
	// disjoint keeps the hosts' keys apart (A registers a1/a2, B b1/b2):
	// with faults, moving a reservation off a path that is away takes
	// another host's registration of the same key with it (doc.go).
	disjoint bool
}

var diffKeys = []uint64{0xa1, 0xa2, 0xb1, 0xb2}

func (d *diffRun) pct(p int) bool { return d.rng.Intn(100) < p }

// newKey is a key for host (0: A, 1: B) to register.
func (d *diffRun) newKey(host int) uint64 {
	if d.disjoint {
		return diffKeys[2*host+d.rng.Intn(2)]
	}
	return diffKeys[d.rng.Intn(len(diffKeys))]
}

func (d *diffRun) refKey(n pr.Nexus) uint64 {
	for _, r := range d.ref.Registrations {
		if r.Nexus.Equal(n) {
			return r.Key
		}
	}
	return 0
}

func (d *diffRun) next() (host int, cdb [wire.CDBSize]byte, param []byte, desc string) {
	host = d.rng.Intn(2)
	me, other := d.a, d.b
	if host == 1 {
		me, other = d.b, d.a
	}
	if d.pct(30) {
		sa := byte(d.rng.Intn(4))
		return host, scsi.PRInCDB(sa, 8192), nil, fmt.Sprintf("host %d PR IN %d", host, sa)
	}
	own := d.refKey(me)
	key := func() uint64 {
		if d.pct(75) {
			return own
		}
		return diffKeys[d.rng.Intn(len(diffKeys))]
	}
	types := []byte{1, 3, 5, 6, 7, 8}
	typ := types[d.rng.Intn(len(types))]
	if d.ref.Reservation != nil && d.pct(50) {
		typ = d.ref.Reservation.Type
	}
	var sa byte
	p := make([]byte, 24)
	switch w := d.rng.Intn(100); {
	case w < 25:
		sa = scsi.SARegister
		if d.pct(50) {
			sa = scsi.SARegisterAndIgnoreExisting
		}
		sark := d.newKey(host)
		if d.pct(25) {
			sark = 0
		}
		putKeys(p, key(), sark)
		if d.pct(20) {
			p[20] = scsi.ParamAPTPL
		}
	case w < 45:
		sa = scsi.SAReserve
		putKeys(p, key(), 0)
	case w < 60:
		sa = scsi.SARelease
		putKeys(p, key(), 0)
	case w < 65:
		sa = scsi.SAClear
		putKeys(p, key(), 0)
	case w < 90:
		sa = scsi.SAPreempt
		sark := d.refKey(other)
		switch x := d.rng.Intn(100); {
		case x < 20:
			sark = own
		case x < 35:
			sark = 0
		case x < 50:
			sark = diffKeys[d.rng.Intn(len(diffKeys))]
		}
		putKeys(p, key(), sark)
	default:
		sa = scsi.SARegisterAndMove
		// Host B moves only to an initiator the LU does not know: a move to
		// host A names one of the map's nexuses, which the map does not see
		// (doc.go, "Against a single-nexus host").
		dest := other.Initiator.Addr
		if host == 1 {
			dest = 0x500140500000ee01
		}
		mv, _ := scsi.RegisterMoveParams{Key: key(), SAKey: d.newKey(1), RelativeTargetPort: 1, // B's keys, for B or X
			Unreg: d.pct(40), TransportID: scsi.SASTransportID(dest)}.Encode()
		p = mv
	}
	cdb = scsi.PROutCDB(sa, 0, typ, uint32(len(p)))
	return host, cdb, p, fmt.Sprintf("host %d %s type %d param %x", host, scsi.CommandName(cdb[:]), typ, p[:24])
}

// run sends the command as host to the map's LU (A through the backend, B on
// its nexus) and to the reference; a unit attention is answered by sending
// again, as a guest's SCSI layer does.
func (d *diffRun) run(host int, cdb [wire.CDBSize]byte, param []byte) (mine, ref pr.Result) {
	for range 4 {
		if host == 0 {
			mine, _ = d.r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: cdb, Param: param})
		} else {
			mine = d.r.l.other(cdb, param)
		}
		if !(isUA(mine)) {
			break
		}
	}
	n := d.a
	if host == 1 {
		n = d.b
	}
	for range 4 {
		ref = pr.Execute(pr.LIO(), &d.ref, n, cdb[:], param)
		if !(isUA(ref)) {
			break
		}
	}
	return mine, ref
}

// isUA reports whether r is CHECK CONDITION with a unit attention.
func isUA(r pr.Result) bool {
	s, ok := r.ParseSense()
	return r.Status == scsi.StatusCheckCondition && ok && s.Key == scsi.KeyUnitAttention
}

// fold is a reply with host A's paths folded into one host.
func (d *diffRun) fold(cdb [wire.CDBSize]byte, r pr.Result) string {
	// Sense compared decoded: the device's buffer and the engine's 18 bytes
	// differ in length only.
	sense, _ := r.ParseSense()
	s := fmt.Sprintf("%s %v", scsi.StatusName(r.Status), sense)
	if r.Status != scsi.StatusGood || cdb[0] != scsi.OpPersistentReserveIn || len(r.Data) < 8 {
		return s + fmt.Sprintf(" %x", r.Data)
	}
	switch scsi.ServiceAction(cdb[:]) {
	case scsi.SAReadKeys:
		k, _ := scsi.DecodeKeys(r.Data)
		ks := slices.Clone(k.Keys)
		slices.Sort(ks)
		return s + fmt.Sprintf(" keys %x", slices.Compact(ks))
	case scsi.SAReadFullStatus:
		fs, _ := scsi.DecodeFullStatus(r.Data)
		// One entry per host and key: a host holds when any of its nexuses
		// does (the holder's descriptor carries the type and scope).
		held := map[string]string{}
		for _, x := range fs.Descriptors {
			host := "A"
			switch x.TransportID.Addr {
			case d.b.Initiator.Addr:
				host = "B"
			case 0x500140500000ee01:
				host = "X" // host B's REGISTER AND MOVE destination
			}
			k := fmt.Sprintf("%s:%x:%v", host, x.Key, x.AllTargetPorts)
			if v, ok := held[k]; !ok || (x.Holder && v == "-") {
				held[k] = "-"
				if x.Holder {
					held[k] = fmt.Sprintf("holds %d/%d", x.Type, x.Scope)
				}
			}
		}
		var ds []string
		for k, v := range held {
			ds = append(ds, k+":"+v)
		}
		slices.Sort(ds)
		return s + " " + strings.Join(ds, ",")
	default:
		return s + fmt.Sprintf(" %x", append(binary.BigEndian.AppendUint32(nil, 0), r.Data[4:]...))
	}
}

// TestDifferentialWithFaults: the same with a path of the map taken away for
// 15 of every 30 steps. Steps while it is away may differ (it keeps what it
// held); after it returns, the map's next command must bring the LU to the
// reference's state, as host B sees it (doc.go, "Against a single-nexus host").
func TestDifferentialWithFaults(t *testing.T) {
	away, differed := 0, 0
	for seed := int64(1); seed <= diffSeeds; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			r := newRig(t, "sdb", "sdc")
			d := &diffRun{r: r, rng: rand.New(rand.NewSource(seed)), disjoint: true,
				a: r.l.nexus[r.l.dev["sdb"]], b: pr.Nexus{Initiator: pr.SASInitiator(0x500140500000ff01), RTPI: 1}}
			down := ""
			var trail []string
			for k := 1; k <= 600; k++ {
				if k%30 == 0 && down == "" {
					down = []string{"sdb", "sdc"}[(k/30)%2]
					r.fail(down)
					trail = append(trail, down+" away")
				}
				host, cdb, param, desc := d.next()
				mine, ref := d.run(host, cdb, param)
				f1, f2 := d.fold(cdb, mine), d.fold(cdb, ref)
				trail = append(trail, fmt.Sprintf("%d %s -> %s / ref %s | keys %x", k, desc, f1, f2, r.l.keysOf("sdb", "sdc")))
				switch {
				case down != "":
					away++
					if f1 != f2 {
						differed++
					}
				case f1 != f2:
					t.Fatalf("step %d %s:\n map: %s\n ref: %s\n%s", k, desc, f1, f2, strings.Join(trail[max(0, len(trail)-40):], "\n"))
				}
				if down != "" && k%30 == 15 {
					r.back(down)
					down = ""
					d.run(0, scsi.PRInCDB(scsi.SAReadKeys, 8192), nil) // the map's next command
					for _, sa := range []byte{scsi.SAReadKeys, scsi.SAReadReservation, scsi.SAReadFullStatus, scsi.SAReportCapabilities} {
						cdb := scsi.PRInCDB(sa, 8192)
						mine, ref := d.run(1, cdb, nil)
						if f1, f2 := d.fold(cdb, mine), d.fold(cdb, ref); f1 != f2 {
							t.Fatalf("after step %d the path returned, the LUs still differ:\n map: %s\n ref: %s\n%s", k, f1, f2,
								strings.Join(trail[max(0, len(trail)-40):], "\n"))
						}
					}
				}
			}
		})
	}
	t.Logf("%d steps while a path was away, %d of them differed", away, differed)
}
