package mpath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/kernel/sgio"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// lu is a fake kernel below SG_IO: one logical unit, answered by prhelper's
// SPC-4 engine with LIO's profile, reached through several path devices, each
// its own I_T nexus (a SAS initiator per path, as the lab's tcm_loop paths).
// It reads and writes the sg_io_hdr as the kernel does.
type lu struct {
	mu      sync.Mutex
	st      pr.State
	nexus   map[int]pr.Nexus // by path fd
	dev     map[string]int   // path device name -> fd
	down    map[int]bool     // path fails with DID_NO_CONNECT
	refuse  map[int]scsi.Sense
	opened  map[string]int
	cmds    []string // "sdb PR OUT REGISTER" per SG_IO that reached the LU
	daemon  []string
	daemonE error
	// upkeep, when set, is multipathd's registration of a returning path
	// half done: it has read the keys and found its key; it completes (the
	// path gets the key multipathd holds then) before multipathd answers the
	// next command, which waits for the daemon's lock. Run once.
	upkeep func()
}

func newLU(devs ...string) *lu {
	l := &lu{nexus: map[int]pr.Nexus{}, dev: map[string]int{}, down: map[int]bool{}, refuse: map[int]scsi.Sense{}, opened: map[string]int{}}
	for i, d := range devs {
		l.addPath(d, uint64(0x5001405000000001+i))
	}
	return l
}

func (l *lu) addPath(dev string, sas uint64) {
	fd := 100 + len(l.dev)
	l.dev[dev] = fd
	l.nexus[fd] = pr.Nexus{Initiator: pr.SASInitiator(sas), RTPI: 1}
}

func (l *lu) ioctl(fd int, h *sgio.Hdr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.nexus[fd]
	if !ok {
		return unix.EBADF
	}
	if l.down[fd] {
		h.HostStatus = 0x01 // DID_NO_CONNECT: the path is gone
		return nil
	}
	cdb := slices.Clone(unsafe.Slice((*byte)(h.Cmdp), h.CmdLen))
	var data []byte
	if h.Dxferp != nil {
		data = unsafe.Slice((*byte)(h.Dxferp), h.DxferLen)
	}
	l.cmds = append(l.cmds, l.name(fd)+" "+scsi.CommandName(cdb))
	var res pr.Result
	if s, ok := l.refuse[fd]; ok && cdb[0] == scsi.OpPersistentReserveOut {
		res = scsi.CheckCondition(s)
	} else {
		var param []byte
		if h.DxferDirection == sgio.DirToDevice {
			param = slices.Clone(data)
		}
		res = pr.Execute(pr.LIO(), &l.st, n, cdb, param)
	}
	h.Status = res.Status
	if res.Status == scsi.StatusCheckCondition {
		h.SbLenWr = uint8(copy(unsafe.Slice((*byte)(h.Sbp), h.MxSbLen), res.Sense))
	}
	h.Resid = int32(h.DxferLen)
	if h.DxferDirection == sgio.DirFromDevice && res.Status == scsi.StatusGood {
		h.Resid -= int32(copy(data, res.Data))
	} else if h.DxferDirection == sgio.DirToDevice {
		h.Resid = 0
	}
	return nil
}

func (l *lu) name(fd int) string {
	for d, f := range l.dev {
		if f == fd {
			return d
		}
	}
	return "?"
}

func (l *lu) open(dev string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fd, ok := l.dev[dev]
	if !ok {
		return -1, fmt.Errorf("open /dev/%s: %w", dev, unix.ENOENT)
	}
	l.opened[dev]++
	return fd, nil
}

// keysOf lists each path's registered key (0: none), in path order.
func (l *lu) keysOf(devs ...string) []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []uint64
	for _, d := range devs {
		var k uint64
		for _, r := range l.st.Registrations {
			if r.Nexus.Equal(l.nexus[l.dev[d]]) {
				k = r.Key
			}
		}
		out = append(out, k)
	}
	return out
}

func (l *lu) holder() (string, byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st.Reservation == nil {
		return "", 0
	}
	for d, fd := range l.dev {
		if l.nexus[fd].Equal(l.st.Reservation.Holder) {
			return d, l.st.Reservation.Type
		}
	}
	return "other", l.st.Reservation.Type
}

func (l *lu) setDown(dev string, down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down[l.dev[dev]] = down
}

// other runs a command as another host (a nexus outside the map).
func (l *lu) other(cdb [wire.CDBSize]byte, param []byte) pr.Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return pr.Execute(pr.LIO(), &l.st, pr.Nexus{Initiator: pr.SASInitiator(0x500140500000ff01), RTPI: 1}, cdb[:], param)
}

// The fake daemon records what multipathd is told.
func (l *lu) SetPRKey(_ context.Context, m string, key uint64, aptpl bool) error {
	return l.told(fmt.Sprintf("setprkey %s 0x%x %v", m, key, aptpl))
}
func (l *lu) UnsetPRKey(_ context.Context, m string) error    { return l.told("unsetprkey " + m) }
func (l *lu) SetPRStatus(_ context.Context, m string) error   { return l.told("setprstatus " + m) }
func (l *lu) UnsetPRStatus(_ context.Context, m string) error { return l.told("unsetprstatus " + m) }
func (l *lu) told(s string) error {
	if f := l.upkeep; f != nil {
		l.upkeep = nil
		f()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.daemon = append(l.daemon, s)
	return l.daemonE
}

// rig is a Backend over an lu whose map has the paths usable says.
type rig struct {
	t      *testing.T
	l      *lu
	b      *Backend
	usable map[string]bool
	// dmFailed holds paths dm-multipath failed whose SCSI device is running
	// (not Usable, Reachable): the LU still answers through them.
	dmFailed map[string]bool
	order    []string
	key      *ConfiguredKey
}

func newRig(t *testing.T, devs ...string) *rig {
	t.Helper()
	r := &rig{t: t, l: newLU(devs...), usable: map[string]bool{}, dmFailed: map[string]bool{}, order: devs}
	for _, d := range devs {
		r.usable[d] = true
	}
	b, err := New(Options{
		Discover: r.discover,
		Open:     r.l.open,
		SGIO:     sgio.Options{Ioctl: r.l.ioctl},
		Daemon:   r.l,
		Key: func(Map) (ConfiguredKey, error) {
			if r.key == nil {
				return ConfiguredKey{}, nil
			}
			return *r.key, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r.b = b
	return r
}

func (r *rig) discover(fd int) (Map, error) {
	if fd != 3 {
		return Map{}, fmt.Errorf("fd %d is not a dm-multipath map", fd)
	}
	m := Map{Name: "mpatha", WWID: "36001405abc"}
	for _, d := range r.order {
		p := Path{Dev: d, Usable: r.usable[d], Why: "(SCSI device offline)"}
		if r.dmFailed[d] {
			p = Path{Dev: d, Why: "(failed by dm-multipath)", Reachable: true}
		}
		m.Paths = append(m.Paths, p)
	}
	return m, nil
}

// fail takes a path away: the SCSI device goes offline (Usable false) and the
// LU no longer answers through it.
func (r *rig) fail(dev string) { r.usable[dev] = false; r.l.setDown(dev, true) }
func (r *rig) back(dev string) { r.usable[dev] = true; r.l.setDown(dev, false) }

func params(key, saKey uint64, flags byte) []byte {
	p := make([]byte, scsi.PROutParamLen)
	binary.BigEndian.PutUint64(p[0:8], key)
	binary.BigEndian.PutUint64(p[8:16], saKey)
	p[20] = flags
	return p
}

func (r *rig) out(sa, typ byte, param []byte) (scsi.Result, error) {
	r.t.Helper()
	return r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PROutCDB(sa, 0, typ, uint32(len(param))), Param: param})
}

func (r *rig) mustOut(sa, typ byte, param []byte) {
	r.t.Helper()
	if rep, err := r.out(sa, typ, param); rep.Status != scsi.StatusGood {
		cdb := scsi.PROutCDB(sa, 0, typ, 24)
		r.t.Fatalf("%s: status %#x sense %x: %v", scsi.CommandName(cdb[:]), rep.Status, rep.Sense, err)
	}
}

func (r *rig) in(sa byte, alloc uint16) scsi.Result {
	r.t.Helper()
	rep, err := r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PRInCDB(sa, alloc)})
	if rep.Status != scsi.StatusGood {
		r.t.Fatalf("PR IN %d: %#x %v", sa, rep.Status, err)
	}
	return rep
}

func eqKeys(t *testing.T, what string, got []uint64, want ...uint64) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: keys %x, want %x", what, got, want)
	}
}

func TestRegisterEveryPath(t *testing.T) {
	r := newRig(t, "sdb", "sdc", "sdd")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	eqKeys(t, "after REGISTER", r.l.keysOf("sdb", "sdc", "sdd"), 0xabc, 0xabc, 0xabc)
	if want := []string{"setprkey mpatha 0xabc false", "setprstatus mpatha"}; !slices.Equal(r.l.daemon, want) {
		t.Fatalf("multipathd told %q, want %q", r.l.daemon, want)
	}
	// READ KEYS comes back as the device sent it: 8 + 3 keys, not padded to
	// the allocation length.
	rep := r.in(scsi.SAReadKeys, 8192)
	if len(rep.Data) != 8+3*8 {
		t.Fatalf("READ KEYS data %d bytes, want 32: %x", len(rep.Data), rep.Data)
	}
	// Change the key on every path, then unregister on every path.
	r.mustOut(scsi.SARegister, 0, params(0xabc, 0xdef, 0))
	eqKeys(t, "after key change", r.l.keysOf("sdb", "sdc", "sdd"), 0xdef, 0xdef, 0xdef)
	r.mustOut(scsi.SARegisterAndIgnoreExisting, 0, params(0, 0, 0))
	eqKeys(t, "after unregister", r.l.keysOf("sdb", "sdc", "sdd"), 0, 0, 0)
	if last := r.l.daemon[len(r.l.daemon)-2:]; !slices.Equal(last, []string{"unsetprstatus mpatha", "unsetprkey mpatha"}) {
		t.Fatalf("multipathd told %q at the end", r.l.daemon)
	}
}

// TestRegisterRollback: the device refuses REGISTER on one path; the paths
// that took it get their previous key back and the refusal is the answer,
// with the device's own sense.
func TestRegisterRollback(t *testing.T) {
	r := newRig(t, "sdb", "sdc", "sdd")
	r.mustOut(scsi.SARegister, 0, params(0, 0x111, 0))
	r.l.refuse[r.l.dev["sdd"]] = scsi.SenseSpaceAllocFailed // 07/27/07 INSUFFICIENT REGISTRATION RESOURCES, say
	rep, err := r.out(scsi.SARegister, 0, params(0x111, 0x222, 0))
	if s, _ := scsi.ParseSense(rep.Sense[:]); rep.Status != scsi.StatusCheckCondition || s != scsi.SenseSpaceAllocFailed {
		t.Fatalf("reply %#x %v, want the device's CHECK CONDITION", rep.Status, s)
	}
	if err == nil || !strings.Contains(err.Error(), "rolled back") {
		t.Fatalf("log error %v", err)
	}
	eqKeys(t, "after rollback", r.l.keysOf("sdb", "sdc", "sdd"), 0x111, 0x111, 0x111)

	// REGISTER AND IGNORE rolls back to the map's key where the path held it,
	// and to nothing where it did not.
	delete(r.l.refuse, r.l.dev["sdd"])
	r.l.refuse[r.l.dev["sdb"]] = scsi.SenseInvalidParam
	if rep, _ := r.out(scsi.SARegisterAndIgnoreExisting, 0, params(0, 0x333, 0)); rep.Status != scsi.StatusCheckCondition {
		t.Fatalf("status %#x", rep.Status)
	}
	eqKeys(t, "after rollback of REGISTER AND IGNORE", r.l.keysOf("sdb", "sdc", "sdd"), 0x111, 0x111, 0x111)
}

// TestFailedPathLeftOutThenRegistered: a path that fails during REGISTER is
// left out; when it is usable again, the next command registers it first. A
// path added to the map is registered the same way.
func TestFailedPathLeftOutThenRegistered(t *testing.T) {
	r := newRig(t, "sdb", "sdc", "sdd")
	r.l.setDown("sdd", true) // fails on the way, still listed usable
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	eqKeys(t, "with sdd failing", r.l.keysOf("sdb", "sdc", "sdd"), 0xabc, 0xabc, 0)
	r.back("sdd")
	r.in(scsi.SAReadKeys, 8192)
	eqKeys(t, "sdd back", r.l.keysOf("sdb", "sdc", "sdd"), 0xabc, 0xabc, 0xabc)

	// The key changes while sdc is away: sdc keeps the old key until it is back.
	r.fail("sdc")
	r.mustOut(scsi.SARegister, 0, params(0xabc, 0xdef, 0))
	eqKeys(t, "key changed, sdc away", r.l.keysOf("sdb", "sdc", "sdd"), 0xdef, 0xabc, 0xdef)
	r.back("sdc")
	r.in(scsi.SAReadReservation, 8192)
	eqKeys(t, "sdc back", r.l.keysOf("sdb", "sdc", "sdd"), 0xdef, 0xdef, 0xdef)

	// A new path.
	r.l.addPath("sde", 0x5001405000000009)
	r.order = append(r.order, "sde")
	r.usable["sde"] = true
	r.in(scsi.SAReadKeys, 8192)
	eqKeys(t, "new path", r.l.keysOf("sde"), 0xdef)
}

// TestFencedMapNotRegisteredAgain: another host preempts the map's key (a
// fence); a path coming back must not register the fenced key again.
func TestFencedMapNotRegisteredAgain(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	r.fail("sdc")
	r.in(scsi.SAReadKeys, 8192) // the map is used while sdc is away
	if res := r.l.other(scsi.PROutCDB(scsi.SARegister, 0, 0, 24), params(0, 0xf00, 0)); res.Status != scsi.StatusGood {
		t.Fatal(res)
	}
	if res := r.l.other(scsi.PROutCDB(scsi.SAPreempt, 0, scsi.TypeWriteExclusiveRegOnly, 24), params(0xf00, 0xabc, 0)); res.Status != scsi.StatusGood {
		t.Fatal(res)
	}
	r.back("sdc")
	r.in(scsi.SAReadKeys, 8192)
	eqKeys(t, "after the fence", r.l.keysOf("sdb", "sdc"), 0, 0)
	if !slices.Contains(r.l.daemon, "unsetprstatus mpatha") {
		t.Fatalf("multipathd not told the map is unregistered: %q", r.l.daemon)
	}
}

// TestReservationThroughFailedPath: the map reserved through sdb; sdb fails.
// A RESERVE of the same reservation moves it to a usable path, and RELEASE
// then really releases it.
func TestReservationThroughFailedPath(t *testing.T) {
	for _, typ := range []byte{scsi.TypeWriteExclusive, scsi.TypeWriteExclusiveRegOnly} {
		t.Run(fmt.Sprint("type", typ), func(t *testing.T) {
			r := newRig(t, "sdb", "sdc", "sdd")
			r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
			r.mustOut(scsi.SAReserve, typ, params(0xabc, 0, 0))
			if h, _ := r.l.holder(); h != "sdb" {
				t.Fatalf("holder %q", h)
			}
			r.fail("sdb")
			r.mustOut(scsi.SAReserve, typ, params(0xabc, 0, 0))
			if h, ty := r.l.holder(); h != "sdc" || ty != typ {
				t.Fatalf("after RESERVE: holder %q type %d, want sdc", h, ty)
			}
			eqKeys(t, "after the move", r.l.keysOf("sdc", "sdd"), 0xabc, 0xabc)

			// Back to sdb holding it, sdb failing: RELEASE must release.
			r.back("sdb")
			r.in(scsi.SAReadKeys, 8192) // sdb catches up
			r.mustOut(scsi.SARelease, typ, params(0xabc, 0, 0))
			r.order = []string{"sdd", "sdc", "sdb"} // reserve through sdd
			r.mustOut(scsi.SAReserve, typ, params(0xabc, 0, 0))
			if h, _ := r.l.holder(); h != "sdd" {
				t.Fatalf("holder %q, want sdd", h)
			}
			r.fail("sdd")
			r.mustOut(scsi.SARelease, typ, params(0xabc, 0, 0))
			if h, _ := r.l.holder(); h != "" {
				t.Fatalf("reservation still held by %q after RELEASE", h)
			}
			eqKeys(t, "registrations after release", r.l.keysOf("sdb", "sdc"), 0xabc, 0xabc)
		})
	}
}

// TestReserveConflictFromAnotherHost: a real conflict stays a conflict.
func TestReserveConflictFromAnotherHost(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.l.other(scsi.PROutCDB(scsi.SARegister, 0, 0, 24), params(0, 0xf00, 0))
	r.l.other(scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusive, 24), params(0xf00, 0, 0))
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	if rep, _ := r.out(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xabc, 0, 0)); rep.Status != scsi.StatusReservationConflict {
		t.Fatalf("status %#x, want RESERVATION CONFLICT", rep.Status)
	}
	if h, _ := r.l.holder(); h != "other" {
		t.Fatalf("holder %q", h)
	}
	// The map preempts the other host, then CLEARs: multipathd hears of it.
	r.mustOut(scsi.SAPreempt, scsi.TypeWriteExclusive, params(0xabc, 0xf00, 0))
	if h, _ := r.l.holder(); h != "sdb" {
		t.Fatalf("holder %q after PREEMPT", h)
	}
	r.mustOut(scsi.SAClear, 0, params(0xabc, 0, 0))
	eqKeys(t, "after CLEAR", r.l.keysOf("sdb", "sdc"), 0, 0)
	if last := r.l.daemon[len(r.l.daemon)-1]; last != "unsetprkey mpatha" {
		t.Fatalf("multipathd: %q", r.l.daemon)
	}
}

// TestPreemptOwnKeyKeepsPaths: PREEMPT naming the map's own key removes the
// other paths' registrations on the device; they are registered again.
func TestPreemptOwnKeyKeepsPaths(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	r.mustOut(scsi.SAReserve, scsi.TypeExclusiveAccess, params(0xabc, 0, 0))
	r.mustOut(scsi.SAPreempt, scsi.TypeWriteExclusive, params(0xabc, 0xabc, 0))
	eqKeys(t, "after own-key PREEMPT", r.l.keysOf("sdb", "sdc"), 0xabc, 0xabc)
	if _, ty := r.l.holder(); ty != scsi.TypeWriteExclusive {
		t.Fatalf("type %d", ty)
	}
}

// TestFailover: a command goes to the next path when the first fails.
func TestFailover(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	r.l.setDown("sdb", true) // still listed usable: fails on the way
	r.mustOut(scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, params(0xabc, 0, 0))
	if h, _ := r.l.holder(); h != "sdc" {
		t.Fatalf("holder %q", h)
	}
	r.l.setDown("sdc", true)
	rep, err := r.out(scsi.SARelease, scsi.TypeWriteExclusiveRegOnly, params(0xabc, 0, 0))
	if s, _ := scsi.ParseSense(rep.Sense[:]); rep.Status != scsi.StatusCheckCondition || s != scsi.SenseLUNCommFailure || err == nil {
		t.Fatalf("every path down: %#x %v %v", rep.Status, s, err)
	}
	r.fail("sdb")
	r.fail("sdc")
	rep, err = r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PRInCDB(0, 8)})
	if s, _ := scsi.ParseSense(rep.Sense[:]); rep.Status != scsi.StatusCheckCondition || s != scsi.SenseLUNCommFailure || !strings.Contains(fmt.Sprint(err), "no usable path") {
		t.Fatalf("no usable path: %#x %v %v", rep.Status, s, err)
	}
}

// TestConfiguredKey: with reservation_key fixed in multipath.conf, another key
// is refused before anything reaches the device.
func TestConfiguredKey(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.key = &ConfiguredKey{Fixed: true, Key: 0xabc}
	for _, tc := range []struct {
		sa    byte
		param []byte
		ok    bool
	}{
		{scsi.SARegister, params(0, 0xdef, 0), false},
		{scsi.SARegisterAndIgnoreExisting, params(0, 0xdef, 0), false},
		{scsi.SARegister, params(0, 0xabc, 0), true},
		{scsi.SAReserve, params(0xdef, 0, 0), false},
		{scsi.SAReserve, params(0xabc, 0, 0), true},
		{scsi.SARegisterAndIgnoreExisting, params(0x999, 0, 0), true}, // unregistering is always allowed
	} {
		n := len(r.l.cmds)
		rep, err := r.out(tc.sa, scsi.TypeWriteExclusive, tc.param)
		s, _ := scsi.ParseSense(rep.Sense[:])
		refused := rep.Status == scsi.StatusCheckCondition && s == scsi.SenseLUNCommFailure
		if refused == tc.ok || (refused && (len(r.l.cmds) != n || !strings.Contains(fmt.Sprint(err), "multipath.conf"))) {
			t.Errorf("SA %d %x: status %#x %v err %v, sent %v", tc.sa, tc.param[:16], rep.Status, s, err, r.l.cmds[n:])
		}
	}
}

// TestSpecIPT: the TransportIDs go to one path; the other paths register
// plainly.
func TestSpecIPT(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	tid := scsi.SASTransportID(0x5001405000000077)
	p, err := scsi.PROutParams{SAKey: 0xabc, SpecIPT: true, TransportIDs: []scsi.TransportID{tid}}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.mustOut(scsi.SARegister, 0, p)
	eqKeys(t, "paths", r.l.keysOf("sdb", "sdc"), 0xabc, 0xabc)
	if n := len(r.l.st.Registrations); n != 3 {
		t.Fatalf("%d registrations, want 3 (two paths and the TransportID)", n)
	}
}

// TestRegisterAndMove: REGISTER AND MOVE goes to the path that holds the
// reservation, whichever it is; READ FULL STATUS is passed through.
func TestRegisterAndMove(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	r.order = []string{"sdc", "sdb"}
	r.mustOut(scsi.SAReserve, scsi.TypeWriteExclusive, params(0xabc, 0, 0)) // held through sdc
	r.order = []string{"sdb", "sdc"}
	mv, err := scsi.RegisterMoveParams{Key: 0xabc, SAKey: 0x777, RelativeTargetPort: 1, Unreg: true,
		TransportID: scsi.SASTransportID(0x500140500000ff01)}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.mustOut(scsi.SARegisterAndMove, scsi.TypeWriteExclusive, mv)
	if h, _ := r.l.holder(); h != "other" {
		t.Fatalf("holder %q, want the other host", h)
	}
	eqKeys(t, "UNREG: the map left", r.l.keysOf("sdb", "sdc"), 0, 0)
	rep := r.in(scsi.SAReadFullStatus, 8192)
	fs, err := scsi.DecodeFullStatus(rep.Data)
	if err != nil || len(fs.Descriptors) != 1 || fs.Descriptors[0].Key != 0x777 {
		t.Fatalf("READ FULL STATUS %+v %v", fs, err)
	}
}

// TestConcurrentMaps: commands from many goroutines on one map are serialised
// and leave every path with the last key (run with -race).
func TestConcurrent(t *testing.T) {
	r := newRig(t, "sdb", "sdc", "sdd")
	r.mustOut(scsi.SARegister, 0, params(0, 0x1, 0))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PRInCDB(scsi.SAReadKeys, 8192)})
			p := params(0, uint64(0x100+i), 0)
			r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24), Param: p})
		}()
	}
	wg.Wait()
	k := r.l.keysOf("sdb", "sdc", "sdd")
	if k[0] < 0x100 || k[0] != k[1] || k[1] != k[2] {
		t.Fatalf("paths disagree: %x", k)
	}
	if r.l.opened["sdb"] != 1 {
		t.Fatalf("sdb opened %d times, want once", r.l.opened["sdb"])
	}
}

func TestNotAMap(t *testing.T) {
	r := newRig(t, "sdb")
	rep, err := r.b.Execute(context.Background(), &backend.Request{FD: 9, CDB: scsi.PRInCDB(0, 8)})
	if rep.Status != scsi.StatusCheckCondition || err == nil {
		t.Fatalf("%#x %v", rep.Status, err)
	}
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without Discover and Open")
	}
	if _, err := OpenPath("../sda"); err == nil {
		t.Fatal("OpenPath accepted a path")
	}
}

// TestFenceSeenInReadKeys: the guest's own READ KEYS shows the map's key gone;
// multipathd is told at once, so that it and libmpathpersist drop the key.
func TestFenceSeenInReadKeys(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	r.l.other(scsi.PROutCDB(scsi.SARegister, 0, 0, 24), params(0, 0xf00, 0))
	r.in(scsi.SAReadKeys, 8192)
	if slices.Contains(r.l.daemon, "unsetprkey mpatha") {
		t.Fatalf("told too early: %q", r.l.daemon)
	}
	r.l.other(scsi.PROutCDB(scsi.SAPreempt, 0, scsi.TypeWriteExclusiveRegOnly, 24), params(0xf00, 0xabc, 0))
	r.in(scsi.SAReadKeys, 8192)
	if want := []string{"unsetprstatus mpatha", "unsetprkey mpatha"}; !slices.Equal(r.l.daemon[2:], want) {
		t.Fatalf("multipathd told %q, want %q after the setprkey", r.l.daemon, want)
	}
}

// TestManyTransportIDs: qemu-pr-helper's libmpathpersist path aborts the
// helper on a 33rd TransportID; here the list goes to the device as sent and
// the device's answer comes back.
func TestManyTransportIDs(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	var tids []scsi.TransportID
	for i := range 40 {
		tids = append(tids, scsi.SASTransportID(0x5001405000001000+uint64(i)))
	}
	p, err := scsi.PROutParams{SAKey: 0xabc, SpecIPT: true, TransportIDs: tids}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r.mustOut(scsi.SARegister, 0, p)
	if n := len(r.l.st.Registrations); n != 42 {
		t.Fatalf("%d registrations, want 42", n)
	}
}

// FuzzExecute: any CDB and parameter list from a guest gets an answer, never a
// panic, and leaves the LU's state valid.
func FuzzExecute(f *testing.F) {
	f.Add(byte(scsi.OpPersistentReserveOut), byte(scsi.SARegister), byte(0), params(0, 0xabc, 0))
	f.Add(byte(scsi.OpPersistentReserveOut), byte(scsi.SAReserve), byte(5), params(0xabc, 0, 0))
	f.Add(byte(scsi.OpPersistentReserveOut), byte(scsi.SARegisterAndMove), byte(1), []byte{1, 2, 3})
	f.Add(byte(scsi.OpPersistentReserveIn), byte(scsi.SAReadFullStatus), byte(0), []byte(nil))
	f.Add(byte(0x12), byte(0), byte(0), []byte(nil))
	f.Fuzz(func(t *testing.T, op, sa, typ byte, param []byte) {
		r := newRig(t, "sdb", "sdc")
		r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
		var cdb [wire.CDBSize]byte
		if op == scsi.OpPersistentReserveIn {
			cdb = scsi.PRInCDB(sa, 8192)
		} else {
			cdb = scsi.PROutCDB(sa, 0, typ, uint32(len(param)))
			cdb[0] = op
		}
		r.b.Execute(context.Background(), &backend.Request{FD: 3, CDB: cdb, Param: param})
		if err := r.l.st.Validate(); err != nil {
			t.Fatalf("state invalid after %x %x: %v", cdb, param, err)
		}
	})
}

// TestCancelledSendsNothing: once the request's context is cancelled (the
// server's shutdown gave up on it) no SG_IO is started on any path, and the
// paths are not taken for failed: the next request registers on all of them.
func TestCancelledSendsNothing(t *testing.T) {
	r := newRig(t, "sdb", "sdc")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, cdb := range [][wire.CDBSize]byte{scsi.PRInCDB(scsi.SAReadKeys, 8), scsi.PROutCDB(scsi.SARegister, 0, 0, scsi.PROutParamLen)} {
		var param []byte
		if cdb[0] == scsi.OpPersistentReserveOut {
			param = params(0, 0xabc, 0)
		}
		rep, err := r.b.Execute(ctx, &backend.Request{FD: 3, CDB: cdb, Param: param})
		if rep.Status == scsi.StatusGood || !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a cancelled context: status %#x, err %v", scsi.CommandName(cdb[:]), rep.Status, err)
		}
	}
	if len(r.l.cmds) != 0 {
		t.Fatalf("SG_IO sent after cancellation: %v", r.l.cmds)
	}
	r.mustOut(scsi.SARegister, 0, params(0, 0xabc, 0))
	if want := []string{"sdb PR OUT REGISTER", "sdc PR OUT REGISTER"}; !slices.Equal(sortedCopy(r.l.cmds), want) {
		t.Fatalf("after cancellation, a new request sent %v; want %v", r.l.cmds, want)
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
