package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/internal/daemon/server"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// engineLUs is a fake of the lab for the -linuxpr mode: logical units run by
// the pr engine (LIO profile), each reached through files standing for its
// paths (the file's inode names the logical unit and the path). As the
// linuxpr backend on Linux 6.1, a LU marked lossy issues a PR OUT again while
// it gets CHECK CONDITION (up to 3 times) and then answers 0B/00/06; dropAt makes it answer GOOD without executing the n-th PR OUT
// it receives (an unexplained difference that leaves the states apart).
type engineLUs struct {
	mu     sync.Mutex
	paths  map[uint64][2]int // inode -> LU, path
	states []*pr.State
	lossy  []bool
	rtpis  []uint16
	dropAt int
	outs   int
}

func (e *engineLUs) Name() string { return "engine" }

func (e *engineLUs) Execute(_ context.Context, req *backend.Request) (scsi.Result, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(req.FD, &st); err != nil {
		return scsi.CheckCondition(scsi.SenseIOError), err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	lp, ok := e.paths[st.Ino]
	if !ok {
		return scsi.CheckCondition(scsi.SenseIOError), fmt.Errorf("unknown device")
	}
	n := pr.Nexus{Initiator: pr.SASInitiator(InitiatorAddr(lp[1])), RTPI: e.rtpis[lp[1]]}
	if req.CDB[0] == scsi.OpPersistentReserveOut && e.lossy[lp[0]] {
		e.outs++
		if e.outs == e.dropAt {
			return scsi.Result{Status: scsi.StatusGood}, nil
		}
	}
	r := pr.Execute(pr.LIO(), e.states[lp[0]], n, req.CDB[:], req.Param)
	for try := 0; e.lossy[lp[0]] && req.CDB[0] == scsi.OpPersistentReserveOut && r.Status == scsi.StatusCheckCondition && try < 3; try++ {
		r = pr.Execute(pr.LIO(), e.states[lp[0]], n, req.CDB[:], req.Param) // the backend's re-issue (uaRetries)
	}
	if e.lossy[lp[0]] && req.CDB[0] == scsi.OpPersistentReserveOut && r.Status == scsi.StatusCheckCondition {
		return scsi.CheckCondition(scsi.SenseIOError), nil
	}
	return r, nil
}

// serve starts a helper server on the fake and returns its socket.
func serve(t *testing.T, b backend.Backend, dir, name string) string {
	t.Helper()
	sock := filepath.Join(dir, name)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		server.New(b, nil, server.Options{}).Serve(ctx, server.Listener{UnixListener: ln})
		close(done)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// fakeLab makes two LUs of n paths (the second lossy) and returns the
// -linuxpr arguments.
func fakeLab(t *testing.T, n, dropAt int) []string {
	dir := t.TempDir()
	rtpis := rtpisFor(n)
	e := &engineLUs{paths: map[uint64][2]int{}, lossy: []bool{false, true}, rtpis: rtpis, dropAt: dropAt}
	var devs [2][]string
	for lu := 0; lu < 2; lu++ {
		e.states = append(e.states, &pr.State{Ports: LabPorts(rtpis)})
		for p := 0; p < n; p++ {
			f := filepath.Join(dir, fmt.Sprintf("lu%d-path%d", lu, p+1))
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			var st syscall.Stat_t
			if err := syscall.Stat(f, &st); err != nil {
				t.Fatal(err)
			}
			e.paths[st.Ino] = [2]int{lu, p}
			devs[lu] = append(devs[lu], f)
		}
	}
	sgio := serve(t, e, dir, "sgio.sock")
	lpr := serve(t, e, dir, "linuxpr.sock")
	var r []string
	for _, x := range rtpis {
		r = append(r, fmt.Sprint(x))
	}
	return []string{"-lio", sgio, "-lio-dev", strings.Join(devs[0], ","), "-linuxpr", lpr,
		"-linuxpr-dev", strings.Join(devs[1], ","), "-rtpi", strings.Join(r, ","), "-timeout", "10s"}
}

// TestLinuxprModeDocumented: the lost sense is the only difference, it is
// counted as documented, and the run passes.
func TestLinuxprModeDocumented(t *testing.T) {
	var out, errb bytes.Buffer
	if rc := run(append(fakeLab(t, 3, 0), "-seed", "7", "-steps", "600"), &out, &errb); rc != 0 {
		t.Fatalf("exit %d\n%s%s", rc, out.String(), errb.String())
	}
	s := out.String()
	if !strings.Contains(s, "documented sense-lost: OUT/") || !strings.Contains(s, " 0 unexplained; 0 resynchronisations") {
		t.Errorf("want documented sense-lost differences, none unexplained, no resynchronisation:\n%s", s)
	}
	if strings.Contains(s, "MISMATCH") {
		t.Errorf("mismatch reported:\n%s", s)
	}
}

// TestLinuxprModeUnexplained: a PR OUT the linuxpr side acknowledges without
// executing is an unexplained difference (exit 1), the states are cleared and
// later steps match again.
func TestLinuxprModeUnexplained(t *testing.T) {
	var out, errb bytes.Buffer
	rc := run(append(fakeLab(t, 2, 5), "-seed", "7", "-steps", "600"), &out, &errb)
	s := out.String()
	if rc != 1 || !strings.Contains(s, "MISMATCH seed 7 step") {
		t.Fatalf("exit %d, want 1 with a MISMATCH\n%s%s", rc, s, errb.String())
	}
	if !strings.Contains(s, "both cleared") {
		t.Errorf("no resynchronisation after the dropped command:\n%s", s)
	}
	if c := strings.Count(s, "MISMATCH"); c > 3 {
		t.Errorf("%d mismatches after one dropped command: the resynchronisation did not hold\n%s", c, s)
	}
}

// TestIoctlSequence: with Ioctl set, every command is one the linuxpr backend
// passes to an ioctl or answers by SG_IO: READ KEYS and READ RESERVATION with
// the full allocation length, PR OUT of the six ioctl service actions with a
// 24-byte list, no flags, scope LU and a valid type; the sequence is
// deterministic and reaches GOOD for each PR OUT service action.
func TestIoctlSequence(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		g, _ := NewGen(11, rtpisFor(n))
		g.Ioctl = true
		h, _ := NewGen(11, rtpisFor(n))
		h.Ioctl = true
		st := pr.State{Ports: LabPorts(rtpisFor(n))}
		good := map[string]int{}
		for k := 1; k <= 2000; k++ {
			s := g.Next()
			if s2 := h.Next(); s2.Desc != s.Desc || s2.CDB != s.CDB || !bytes.Equal(s2.Param, s.Param) {
				t.Fatalf("step %d: not deterministic", k)
			}
			sa := s.CDB[1] & 0x1f
			if s.CDB[0] == scsi.OpPersistentReserveIn {
				if (sa != scsi.SAReadKeys && sa != scsi.SAReadReservation) || scsi.TransferLength(s.CDB[:]) != fullAlloc {
					t.Fatalf("step %d: %s", k, s.Desc)
				}
			} else {
				ok := map[byte]bool{scsi.SARegister: true, scsi.SARegisterAndIgnoreExisting: true, scsi.SAReserve: true,
					scsi.SARelease: true, scsi.SAClear: true, scsi.SAPreempt: true, scsi.SAPreemptAndAbort: true}[sa]
				typ := s.CDB[2] & 0x0f
				typeOK := typ == 0 && (sa == scsi.SARegister || sa == scsi.SARegisterAndIgnoreExisting || sa == scsi.SAClear) ||
					bytes.IndexByte(validTypes, typ) >= 0
				if !ok || !typeOK || s.CDB[2]&0xf0 != 0 || len(s.Param) != 24 || s.Param[20] != 0 || s.Param[17] != 0 {
					t.Fatalf("step %d: not expressible by the ioctls: %s cdb %x param %x", k, s.Desc, s.CDB[:10], s.Param)
				}
			}
			r := pr.Execute(pr.LIO(), &st, g.Nexus(s.Path), s.CDB[:], s.Param)
			if r.Status == scsi.StatusGood {
				good[s.Kind()]++
			}
		}
		for _, k := range []string{"OUT/REGISTER", "OUT/REGISTER_AND_IGNORE", "OUT/RESERVE", "OUT/RELEASE", "OUT/CLEAR", "OUT/PREEMPT", "IN/READ_KEYS", "IN/READ_RESERVATION"} {
			if good[k] == 0 {
				t.Errorf("%d initiators: 2000 steps never gave %s GOOD", n, k)
			}
		}
		if good["OUT/PREEMPT_AND_ABORT"] != 0 {
			t.Errorf("PREEMPT AND ABORT succeeded %d times", good["OUT/PREEMPT_AND_ABORT"])
		}
	}
}

// TestExplain: the lost-sense exception is exactly a PR OUT the device
// answered with a CHECK CONDITION other than a unit attention, and the test
// side's 0B/00/06.
func TestExplain(t *testing.T) {
	out := Step{CDB: scsi.PROutCDB(scsi.SAPreempt, 0, 5, 24)}
	in := Step{CDB: scsi.PRInCDB(scsi.SAReadKeys, fullAlloc)}
	cc := func(s scsi.Sense) *wireReply { return reply(scsi.CheckCondition(s)) }
	for _, tc := range []struct {
		st        Step
		ref, test *wireReply
		want      string
	}{
		{out, cc(scsi.Sense{Key: 5, ASC: 0x26}), cc(scsi.SenseIOError), "sense-lost"},
		{out, cc(scsi.Sense{Key: 6, ASC: 0x2a, ASCQ: 3}), cc(scsi.SenseIOError), ""},
		{out, reply(scsi.Result{Status: scsi.StatusGood}), cc(scsi.SenseIOError), ""},
		{out, cc(scsi.Sense{Key: 5, ASC: 0x26}), cc(scsi.Sense{Key: 0xb, ASC: 0x29, ASCQ: 7}), ""},
		{in, cc(scsi.Sense{Key: 5, ASC: 0x24}), cc(scsi.SenseIOError), ""},
	} {
		if got := explain(tc.st, tc.ref, tc.test); got != tc.want {
			t.Errorf("%s ref %s test %s: %q, want %q", tc.st.Kind(), summary(tc.ref), summary(tc.test), got, tc.want)
		}
	}
}

// TestShiftGeneration: only the PRgeneration of a GOOD PR IN moves.
func TestShiftGeneration(t *testing.T) {
	in := Step{CDB: scsi.PRInCDB(scsi.SAReadKeys, fullAlloc)}
	r := &wireReply{Status: scsi.StatusGood, Data: []byte{0, 0, 0, 9, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}}
	got := shiftGeneration(in, r, 2)
	if !bytes.Equal(got.Data, []byte{0, 0, 0, 7, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8}) || r.Data[3] != 9 {
		t.Errorf("shifted %x (original now %x)", got.Data, r.Data)
	}
	if s := shiftGeneration(Step{CDB: scsi.PROutCDB(scsi.SAClear, 0, 0, 24)}, r, 2); s != r {
		t.Error("a PR OUT reply was changed")
	}
}

type wireReply = wire.Reply

// reply is r as the helper protocol carries it.
func reply(r scsi.Result) *wire.Reply {
	w := &wire.Reply{Status: r.Status, Data: r.Data}
	w.SetSense(r.Sense)
	return w
}
