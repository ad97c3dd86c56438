package mpath

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/device"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// The cases of the randomized multipath differential (doc.go, "Against a
// single-nexus host"): host A is the map (two paths, two nexuses), host B a
// third nexus (lu.other). Each test states what a single-nexus host A gets on
// LIO, which is what the map must give.

// otherOut runs a PR OUT as host B and fails the test unless it is GOOD.
func (r *rig) otherOut(sa, typ byte, param []byte) {
	r.t.Helper()
	if res := r.l.other(scsi.PROutCDB(sa, 0, typ, uint32(len(param))), param); res.Status != scsi.StatusGood {
		r.t.Fatalf("host B SA %d: %#x %v", sa, res.Status, res.Sense)
	}
}

func (r *rig) wantStatus(what string, want byte, sa, typ byte, param []byte) {
	r.t.Helper()
	rep, err := r.out(sa, typ, param)
	if rep.Status != want {
		s, _ := scsi.ParseSense(rep.Sense[:])
		r.t.Fatalf("%s: status %#x (%v, %v), want %#x", what, rep.Status, s, err, want)
	}
}

// Defect 1: PREEMPT rk=K sark=K from the map when no reservation is held, or
// another key holds it, removes every registration with K, the issuer's too
// (LIO; SPC-4 §5.13.11.4.4 case "SARK does not identify the holder"). A
// single-nexus host is then unregistered, so the map must be too: its other
// path must not get K back, and a later REGISTER rk=K conflicts.
func TestPreemptOwnKeyRemovesIssuer(t *testing.T) {
	for _, held := range []string{"none", "other key"} {
		t.Run(held, func(t *testing.T) {
			r := newRig(t, "sdb", "sdc")
			r.mustOut(scsi.SARegister, 0, params(0, 0xa2, 0))
			if held == "other key" {
				r.otherOut(scsi.SARegister, 0, params(0, 0xb1, 0))
				r.otherOut(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xb1, 0, 0))
			}
			r.mustOut(scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, params(0xa2, 0xa2, 0))
			eqKeys(t, "after PREEMPT of the map's own key", r.l.keysOf("sdb", "sdc"), 0, 0)
			r.wantStatus("REGISTER rk=a2 after losing the registration", scsi.StatusReservationConflict,
				scsi.SARegister, 0, params(0xa2, 0xa3, 0))
			eqKeys(t, "after the refused REGISTER", r.l.keysOf("sdb", "sdc"), 0, 0)
		})
	}
}

// Defect 2: host B holds a reservation with the same key as the map. The map's
// RELEASE is a no-op (it holds nothing) and its RESERVE conflicts; neither may
// take B's reservation, whatever the map held before.
func TestForeignHolderWithTheMapsKey(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	// The map reserves and releases first, so that it has seen itself hold.
	r.mustOut(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	r.mustOut(scsi.SARelease, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	r.otherOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.otherOut(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xa1, 0, 0))

	r.mustOut(scsi.SARelease, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	if h, _ := r.l.holder(); h != "other" {
		t.Fatalf("after the map's RELEASE: holder %q, want host B", h)
	}
	r.wantStatus("RESERVE against B's reservation", scsi.StatusReservationConflict, scsi.SAReserve, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	if h, _ := r.l.holder(); h != "other" {
		t.Fatalf("after the map's RESERVE: holder %q, want host B", h)
	}
	// Also with the map's holding path failed: B's reservation is still B's.
	r.fail("sdb")
	r.wantStatus("RESERVE with sdb failed", scsi.StatusReservationConflict, scsi.SAReserve, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	r.mustOut(scsi.SARelease, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	if h, _ := r.l.holder(); h != "other" {
		t.Fatalf("with sdb failed: holder %q, want host B", h)
	}
	if n := len(r.l.st.Registrations); n != 3 {
		t.Fatalf("%d registrations, want 3 (B's was preempted?)", n)
	}
}

// Defect 3: PREEMPT with SARK 0 under an all-registrants reservation removes
// every other registration, the map's other path too (SPC-4 §5.13.11.4.3); a
// single-nexus host keeps its registration, so the map's other path must get
// the key back.
func TestPreemptZeroKeyAllRegistrants(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.otherOut(scsi.SARegister, 0, params(0, 0xb1, 0))
	r.mustOut(scsi.SAReserve, scsi.TypeWriteExclusiveAllRegs, params(0xa1, 0, 0))
	r.mustOut(scsi.SAPreempt, scsi.TypeWriteExclusive, params(0xa1, 0, 0))
	eqKeys(t, "after PREEMPT SARK 0", r.l.keysOf("sdb", "sdc"), 0xa1, 0xa1)
	if n := len(r.l.st.Registrations); n != 2 {
		t.Fatalf("%d registrations, want the map's 2 (B preempted)", n)
	}
	if h, ty := r.l.holder(); h != "sdb" || ty != scsi.TypeWriteExclusive {
		t.Fatalf("holder %q type %d", h, ty)
	}
}

// Defect 4: REGISTER AND MOVE where one path answers RESERVATION CONFLICT (the
// map does not hold the reservation) and the next fails on the way: the
// answer is the device's conflict, not the failed path's error.
func TestRegisterAndMoveKeepsTheDevicesAnswer(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.otherOut(scsi.SARegister, 0, params(0, 0xb1, 0))
	r.otherOut(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xb1, 0, 0))
	r.l.setDown("sdc", true) // fails on the way, still listed usable
	mv, err := scsi.RegisterMoveParams{Key: 0xa1, SAKey: 0x777, RelativeTargetPort: 1,
		TransportID: scsi.SASTransportID(0x500140500000ff01)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.wantStatus("REGISTER AND MOVE by a non-holder", scsi.StatusReservationConflict, scsi.SARegisterAndMove, scsi.TypeWriteExclusive, mv)
}

// Also seen: the map unregisters while a path is down; the path comes back
// holding the old key. prhelper knows which key it left there and removes it
// on the map's next command (a single-nexus host has no registration left).
func TestUnregisterWhilePathDown(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.fail("sdc")
	r.mustOut(scsi.SARegister, 0, params(0xa1, 0, 0))
	eqKeys(t, "sdc down", r.l.keysOf("sdb", "sdc"), 0, 0xa1)
	r.back("sdc")
	rep := r.in(scsi.SAReadKeys, 8192)
	if k, err := scsi.DecodeKeys(rep.Data); err != nil || len(k.Keys) != 0 {
		t.Fatalf("READ KEYS after sdc came back: %+v %v, want no key", k, err)
	}
	eqKeys(t, "sdc back", r.l.keysOf("sdb", "sdc"), 0, 0)
}

// Also seen: registering a returning path must not change the LU-wide PTPL_A
// that another host's REGISTER set last (LIO keeps one APTPL for the LU, and
// every REGISTER sets it): the upkeep registration repeats the LU's own PTPL_A.
func TestCatchUpKeepsPTPLA(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.fail("sdc")
	r.mustOut(scsi.SARegister, 0, params(0xa1, 0xa2, 0)) // sdc keeps 0xa1
	r.otherOut(scsi.SARegister, 0, params(0, 0xb1, scsi.ParamAPTPL))
	r.back("sdc")
	caps, err := scsi.DecodeCapabilities(r.in(scsi.SAReportCapabilities, 8192).Data)
	if err != nil || !caps.PTPLA {
		t.Fatalf("PTPL_A after sdc came back: %+v %v, want set (B's APTPL)", caps, err)
	}
	eqKeys(t, "sdc back", r.l.keysOf("sdb", "sdc"), 0xa2, 0xa2)
}

// TestPathTimeout: each SG_IO on a path carries PathTimeout, so a path that
// hangs holds the command that long before the next path is tried.
func TestPathTimeout(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	var got []uint32
	ioctl := r.l.ioctl
	b, err := New(Options{Discover: r.discover, Open: r.l.open, SGIO: sgio.Options{Ioctl: func(fd int, h *sgio.Hdr) error {
		got = append(got, h.Timeout)
		return ioctl(fd, h)
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if rep, _ := b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PRInCDB(scsi.SAReadKeys, 8192)}); rep.Status != scsi.StatusGood {
		t.Fatalf("status %#x", rep.Status)
	}
	if len(got) == 0 || got[0] != uint32(PathTimeout.Milliseconds()) {
		t.Fatalf("SG_IO timeouts %v ms, want %d", got, PathTimeout.Milliseconds())
	}
}

// TestFencedByHostWithSameKey: host B, registered with the map's key,
// preempts that key (a fence); READ KEYS still shows the key (B's), but the
// map's returning path must not be registered again: a path that held the key
// proves the map still holds it, and none does.
func TestFencedByHostWithSameKey(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.otherOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.fail("sdc")
	r.mustOut(scsi.SARelease, scsi.TypeWriteExclusiveRegOnly, params(0xa1, 0, 0)) // a PR OUT: sdc is no longer counted registered
	r.otherOut(scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, params(0xa1, 0, 0))
	r.otherOut(scsi.SAPreempt, scsi.TypeWriteExclusiveRegOnly, params(0xa1, 0xa1, 0))
	eqKeys(t, "after B's PREEMPT", r.l.keysOf("sdb", "sdc"), 0, 0)
	r.back("sdc")
	r.in(scsi.SAReadKeys, 8192)
	eqKeys(t, "sdc back", r.l.keysOf("sdb", "sdc"), 0, 0)
}

// The fault runs of mpath-diff (seed 1796608575, steps 77-85 of a CI run):
// multipathd registers a returning path itself (reservation_key file): it
// reads the path's keys, finds the map's key, and registers that path with
// the key it holds, under its lock. When the map changed its key (or
// unregistered) between multipathd's READ KEYS and that REGISTER AND IGNORE,
// and only told multipathd afterwards, the path got the old key back: two
// keys on the map, one of them surviving another host's PREEMPT of the new
// one. Telling multipathd first closes it: multipathd answers once its
// registration is done, and registers the new key (or none) after.
func TestKeyChangeRacesMultipathdUpkeep(t *testing.T) {
	for _, tc := range []struct {
		name   string
		sa     byte
		rk, sk uint64
		want   uint64
	}{{"new key", scsi.SARegister, 0xa1, 0xa2, 0xa2}, {"unregister", scsi.SARegister, 0xa1, 0, 0}, {"clear", scsi.SAClear, 0xa1, 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "sdb", "sdc")
			r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
			r.l.upkeep = func() { // multipathd's key is still 0xa1
				r.l.mu.Lock()
				defer r.l.mu.Unlock()
				cdb := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
				for try := 0; try < 3; try++ { // again after a unit attention, as libmpathpersist
					if res := pr.Execute(pr.LIO(), &r.l.st, r.l.nexus[r.l.dev["sdc"]], cdb[:], params(0, 0xa1, 0)); !isUnitAttention(res) {
						break
					}
				}
			}
			r.mustOut(tc.sa, 0, params(tc.rk, tc.sk, 0))
			eqKeys(t, "after the key change", r.l.keysOf("sdb", "sdc"), tc.want, tc.want)
			if r.l.upkeep != nil {
				t.Fatal("multipathd was not told")
			}
		})
	}
}

// A key change the device refuses leaves multipathd with the map's key: it was
// told the new key first (TestKeyChangeRacesMultipathdUpkeep) and is told the
// old one again.
func TestRefusedKeyChangeRestoresMultipathd(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.wantStatus("REGISTER with the wrong key", scsi.StatusReservationConflict, scsi.SARegister, 0, params(0xbad, 0xa2, 0))
	want := []string{"setprkey mpatha 0xa1 false", "setprstatus mpatha", "setprkey mpatha 0xa2 false", "setprstatus mpatha", "setprkey mpatha 0xa1 false", "setprstatus mpatha"}
	if !slices.Equal(r.l.daemon, want) {
		t.Fatalf("multipathd told %q, want %q", r.l.daemon, want)
	}
	eqKeys(t, "after the refusal", r.l.keysOf("sdb", "sdc"), 0xa1, 0xa1)
}

// Seed 1604 of the lab's fault runs (docs/multipath.md §9): a path came back
// with a capacity of 0 (its rescan's READ CAPACITY met another host's
// Exclusive Access reservation while its nexus was unregistered), so
// dm-multipath failed it again on every read through the map, while its SCSI
// device ran and PR commands on it worked. When the map's other path went
// away, the map refused every command with 0B/08/00 ("no usable path"), which
// a host with one running nexus never sees. PR commands go to a path dm failed
// whose SCSI device runs (after the paths dm uses), and keep its registration
// in line.
func TestDMFailedRunningPathServesPR(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
	r.otherOut(scsi.SARegister, 0, params(0, 0xb1, 0))
	r.dmFailed["sdb"] = true // running, but failed by dm
	r.fail("sdc")            // and the other path away

	r.wantStatus("REGISTER a1->a2 with sdb failed by dm and sdc away", scsi.StatusGood, scsi.SARegister, 0, params(0xa1, 0xa2, 0))
	if got := r.l.keysOf("sdb"); got[0] != 0xa2 {
		t.Fatalf("sdb holds %x, want a2", got)
	}
	if rep := r.in(scsi.SAReadKeys, 8192); rep.Status != scsi.StatusGood {
		t.Fatalf("READ KEYS: %#x", rep.Status)
	}
	r.wantStatus("RESERVE", scsi.StatusGood, scsi.SAReserve, scsi.TypeWriteExclusive, params(0xa2, 0, 0))
	if h, _ := r.l.holder(); h != "sdb" {
		t.Fatalf("holder %q, want sdb", h)
	}

	// sdc back, sdb still failed by dm: both nexuses follow the map's key.
	r.back("sdc")
	r.mustOut(scsi.SARegister, 0, params(0xa2, 0xa3, 0))
	if got := r.l.keysOf("sdb", "sdc"); !slices.Equal(got, []uint64{0xa3, 0xa3}) {
		t.Fatalf("keys %x, want a3 on both paths", got)
	}
	// Unregistered: no nexus of the map keeps a key.
	r.mustOut(scsi.SARegister, 0, params(0xa3, 0, 0))
	if got := r.l.keysOf("sdb", "sdc"); !slices.Equal(got, []uint64{0, 0}) {
		t.Fatalf("keys %x after the unregister, want none", got)
	}
}

// Seed 1604 of mpath-diff's fault runs, steps 240-260 of a check run
// (docs/multipath.md §9): path sdc is away while the map changes its key to
// a2; it comes back, and multipathd, told a2, registers it with a2 (it reads
// the LU's keys through the path, finds its key, and registers the path with
// REGISTER AND IGNORE EXISTING KEY). prhelper's look at the map's paths is
// still the cached one of less than pathsTTL ago, with sdc away. The guest
// then changes the key to a1 (or unregisters): a host with one nexus holds
// a1 (or nothing) afterwards, so every nexus of the map must. Before the fix
// the change went to sdb only and sdc kept a2: READ KEYS through the map said
// [a1 a2]; after an unregistration sdc kept a2 for good (its catch-up
// removes only the key it was left holding, a1).
func TestKeyChangeReachesPathBackWithinTTL(t *testing.T) {
	for _, tc := range []struct {
		name  string
		param []byte
		want  uint64
	}{{"new key", params(0xa2, 0xa1, 0), 0xa1}, {"unregister", params(0xa2, 0, 0), 0}} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, "sdb", "sdc")
			root := t.TempDir()
			state := func(dev, s string) {
				t.Helper()
				must(t, os.MkdirAll(filepath.Join(root, "block", dev, "device"), 0o755))
				must(t, os.MkdirAll(filepath.Join(root, "block", "dm-0", "slaves", dev), 0o755))
				must(t, os.WriteFile(filepath.Join(root, "block", dev, "device", "state"), []byte(s+"\n"), 0o644))
			}
			state("sdb", "running")
			state("sdc", "running")
			now := time.Unix(1000, 0)
			disc := &Discoverer{SysfsRoot: root, TTL: time.Second, Now: func() time.Time { return now },
				Classify: func(int) (device.Info, error) {
					return device.Info{Kind: device.DMMultipath, Name: "dm-0", DMName: "mpatha", DMUUID: "mpath-36001405abc"}, nil
				}}
			b, err := New(Options{Discover: disc.Discover, Rediscover: disc.Look, Open: r.l.open,
				SGIO: sgio.Options{Ioctl: r.l.ioctl}, Daemon: r.l})
			if err != nil {
				t.Fatal(err)
			}
			r.b = b

			r.mustOut(scsi.SARegister, 0, params(0, 0xa1, 0))
			r.otherOut(scsi.SARegister, 0, params(0, 0xb1, 0))
			// sdc away (SCSI device offline), seen by the map's next look.
			state("sdc", "offline")
			r.l.setDown("sdc", true)
			now = now.Add(2 * time.Second)
			r.mustOut(scsi.SARegister, 0, params(0xa1, 0, 0))
			r.mustOut(scsi.SARegisterAndIgnoreExisting, 0, params(0, 0xa2, 0))
			eqKeys(t, "while sdc is away", r.l.keysOf("sdb", "sdc"), 0xa2, 0xa1)
			if last := r.l.daemon[len(r.l.daemon)-2]; last != "setprkey mpatha 0xa2 false" {
				t.Fatalf("multipathd last told %q, want the key a2", last)
			}

			// sdc back, 0.5 s after the map's last look; multipathd registers it
			// with the key it was told.
			state("sdc", "running")
			r.l.setDown("sdc", false)
			now = now.Add(500 * time.Millisecond)
			multipathdRegisters(t, r.l, "sdc", 0xa2)
			eqKeys(t, "after multipathd registered sdc", r.l.keysOf("sdb", "sdc"), 0xa2, 0xa2)

			r.mustOut(scsi.SARegisterAndIgnoreExisting, 0, tc.param)
			eqKeys(t, "after the guest's REGISTER", r.l.keysOf("sdb", "sdc"), tc.want, tc.want)
			want := []uint64{0xb1}
			if tc.want != 0 {
				want = []uint64{tc.want, 0xb1}
			}
			if got := readKeysSet(t, r); !slices.Equal(got, want) {
				t.Fatalf("READ KEYS through the map: %x, want %x (a host with one nexus)", got, want)
			}
			// And later, the cache long expired: still in line.
			now = now.Add(5 * time.Second)
			r.in(scsi.SAReadKeys, 8192)
			eqKeys(t, "later", r.l.keysOf("sdb", "sdc"), tc.want, tc.want)
		})
	}
}

// multipathdRegisters does what multipathd does for a path that comes back
// when it has the map's key (reservation_key file, prstatus set): READ KEYS
// through the path, and when key is among them, REGISTER AND IGNORE EXISTING
// KEY with key on that path, again after a unit attention.
func multipathdRegisters(t *testing.T, l *lu, dev string, key uint64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nexus[l.dev[dev]]
	in := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	var res pr.Result
	for try := 0; try < 3; try++ {
		if res = pr.Execute(pr.LIO(), &l.st, n, in[:], nil); !isUnitAttention(res) {
			break
		}
	}
	keys, err := scsi.DecodeKeys(res.Data)
	if res.Status != scsi.StatusGood || err != nil || !slices.Contains(keys.Keys, key) {
		t.Fatalf("multipathd's READ KEYS through %s: %#x %v %v", dev, res.Status, keys.Keys, err)
	}
	out := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
	for try := 0; try < 3; try++ {
		if res = pr.Execute(pr.LIO(), &l.st, n, out[:], params(0, key, 0)); !isUnitAttention(res) {
			break
		}
	}
	if res.Status != scsi.StatusGood {
		t.Fatalf("multipathd's REGISTER AND IGNORE on %s: %#x", dev, res.Status)
	}
}

// readKeysSet is READ KEYS through the map as a sorted set of distinct keys
// (the map's paths folded into one host, as mpdiff does).
func readKeysSet(t *testing.T, r *rig) []uint64 {
	t.Helper()
	keys, err := scsi.DecodeKeys(r.in(scsi.SAReadKeys, 8192).Data)
	if err != nil {
		t.Fatal(err)
	}
	out := slices.Clone(keys.Keys)
	slices.Sort(out)
	return slices.Compact(out)
}
