package pr

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// The lab's two SAS initiators, each through its own target port, as
// tools/prgen drives LIO over tcm_loop (docs/spc4-pr.md §14 D27, D28).
var (
	sasA = Nexus{Initiator: SASInitiator(0x5001405b00000001), RTPI: 1}
	sasB = Nexus{Initiator: SASInitiator(0x5001405b00000002), RTPI: 2}
)

func sasPorts() []Port {
	return []Port{
		{RTPI: 1, Protocol: scsi.ProtoSAS, Initiators: []Initiator{sasA.Initiator}},
		{RTPI: 2, Protocol: scsi.ProtoSAS, Initiators: []Initiator{sasB.Initiator}},
	}
}

// quirkRun sends scripted commands and checks each answer, and PR IN data to
// the byte.
type quirkRun struct {
	t  *testing.T
	p  Profile
	st State
}

func (q *quirkRun) out(n Nexus, sa, typ byte, param []byte, want string) {
	q.t.Helper()
	cdb := scsi.PROutCDB(sa, 0, typ, uint32(len(param)))
	if got := describe(Execute(q.p, &q.st, n, cdb[:], param)); got != want {
		q.t.Fatalf("%s: PR OUT SA %d type %d from %s: %s, want %s", q.p.Name, sa, typ, n, got, want)
	}
}

// in runs PR IN service action sa and compares its data with want (hex, spaces
// ignored).
func (q *quirkRun) in(n Nexus, sa byte, want string) {
	q.t.Helper()
	cdb := scsi.PRInCDB(sa, 1024)
	r := Execute(q.p, &q.st, n, cdb[:], nil)
	if r.Status != scsi.StatusGood {
		q.t.Fatalf("%s: PR IN SA %d from %s: %s", q.p.Name, sa, n, describe(r))
	}
	if got, w := hex.EncodeToString(r.Data), strings.ReplaceAll(want, " ", ""); got != w {
		q.t.Fatalf("%s: PR IN SA %d from %s:\n got %s\nwant %s", q.p.Name, sa, n, got, w)
	}
}

// sasTID is the SAS TransportID of initiator i (SPC-4 §7.6.4.5): 24 bytes.
func sasTID(i Initiator) []byte { return i.TransportID() }

// specIPTParam is a REGISTER parameter list with SPEC_I_PT and tids.
func specIPTParam(sark uint64, tids ...Initiator) []byte {
	p := registerParam(0, sark, 0x08)
	var list []byte
	for _, i := range tids {
		list = append(list, sasTID(i)...)
	}
	p = binary.BigEndian.AppendUint32(p, uint32(len(list)))
	return append(p, list...)
}

// moveParam is a REGISTER AND MOVE parameter list (SPC-4 §6.16.4) to dest at
// port rtpi.
func moveParam(rk, sark uint64, unreg bool, rtpi uint16, dest Initiator) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:8], rk)
	binary.BigEndian.PutUint64(p[8:16], sark)
	if unreg {
		p[17] = 0x02
	}
	binary.BigEndian.PutUint16(p[18:20], rtpi)
	tid := sasTID(dest)
	binary.BigEndian.PutUint32(p[20:24], uint32(len(tid)))
	return append(p, tid...)
}

const (
	qA = 0xaaaaaaaaaaaaaaaa
	qB = 0xbbbbbbbbbbbbbbbb
	qC = 0xcccccccccccccccc
)

// TestSpecIPTDuplicates is D27: a SPEC_I_PT list naming the commanding
// initiator and repeating another. LIO registers the commanding nexus first,
// then every TransportID not registered before the command: READ KEYS lists
// four keys and the generation goes up by four. Later commands find the first
// of a nexus's registrations: a key change touches it alone, READ FULL STATUS
// shows R_HOLDER on it alone, and unregistering it releases the reservation
// (implicit release, §7.1.1) while the nexus stays registered by its second.
// SPC-4 (one registration per I_T nexus) registers A and B once.
func TestSpecIPTDuplicates(t *testing.T) {
	q := &quirkRun{t: t, p: LIO(), st: State{Ports: sasPorts()}}
	q.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator, sasB.Initiator, sasB.Initiator), "GOOD")
	q.in(sasA, scsi.SAReadKeys, "00000004 00000020 aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa")
	q.out(sasA, scsi.SARegister, 0, registerParam(qA, qC, 0), "GOOD")
	q.in(sasA, scsi.SAReadKeys, "00000005 00000020 cccccccccccccccc aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa")
	q.out(sasA, scsi.SARegister, 0, registerParam(qA, qB, 0), "RC") // A presents its first registration's key
	q.out(sasA, scsi.SAReserve, scsi.TypeWriteExclusive, registerParam(qC, 0, 0), "GOOD")
	desc := func(key string, holder bool, rtpi, addr string) string {
		flags := "0000"
		if holder {
			flags = "0101"
		}
		return key + "00000000" + flags + "00000000" + rtpi + "00000018" + "06000000" + "5001405b0000000" + addr + "00000000 00000000 00000000"
	}
	q.in(sasA, scsi.SAReadFullStatus, "00000005 000000c0"+
		desc("cccccccccccccccc", true, "0001", "1")+desc("aaaaaaaaaaaaaaaa", false, "0001", "1")+
		desc("aaaaaaaaaaaaaaaa", false, "0002", "2")+desc("aaaaaaaaaaaaaaaa", false, "0002", "2"))
	// Unregistering A's first registration releases the reservation it holds;
	// A is still registered, by its second, with key A.
	q.out(sasA, scsi.SARegister, 0, registerParam(qC, 0, 0), "GOOD")
	q.in(sasA, scsi.SAReadReservation, "00000005 00000000")
	q.in(sasA, scsi.SAReadKeys, "00000005 00000018 aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa")
	q.out(sasA, scsi.SAReserve, scsi.TypeExclusiveAccess, registerParam(qA, 0, 0), "GOOD")

	s := &quirkRun{t: t, p: SPC4(), st: State{Ports: sasPorts()}}
	s.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator, sasB.Initiator, sasB.Initiator), "GOOD")
	s.in(sasA, scsi.SAReadKeys, "00000002 00000010 aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa")
}

// TestMoveSourceScope is D28: A holds Write Exclusive and moves it to B
// without UNREG, B moves it back. LIO left the type (1) as the scope of A's
// registration, the source of the first move, and A now holds with it:
// READ RESERVATION still shows scope 0, but A's RESERVE and RELEASE of its own
// reservation conflict, and A preempting itself with the same type counts as a
// change (2Ah/04h RESERVATIONS RELEASED for B) and resets the scope. SPC-4
// moves the reservation with its scope.
func TestMoveSourceScope(t *testing.T) {
	for _, p := range []Profile{LIO(), SPC4()} {
		t.Run(p.Name, func(t *testing.T) {
			lio := p.Name == "lio"
			q := &quirkRun{t: t, p: p, st: State{Ports: sasPorts()}}
			q.out(sasA, scsi.SARegister, 0, registerParam(0, qA, 0), "GOOD")
			q.out(sasB, scsi.SARegister, 0, registerParam(0, qB, 0), "GOOD")
			q.out(sasA, scsi.SAReserve, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), "GOOD")
			q.out(sasA, scsi.SARegisterAndMove, 0, moveParam(qA, qB, false, 2, sasB.Initiator), "GOOD")
			q.out(sasB, scsi.SARegisterAndMove, 0, moveParam(qB, qA, false, 1, sasA.Initiator), "GOOD")
			want := "RC"
			if !lio {
				want = "GOOD"
			}
			q.in(sasA, scsi.SAReadReservation, "00000004 00000010 aaaaaaaaaaaaaaaa 00000000 00 01 0000")
			q.out(sasA, scsi.SAReserve, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), want)
			q.out(sasA, scsi.SARelease, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), want)
			if !lio { // released: reserve again
				q.out(sasA, scsi.SAReserve, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), "GOOD")
			}
			q.out(sasA, scsi.SAPreempt, scsi.TypeWriteExclusive, registerParam(qA, qA, 0), "GOOD")
			tur := make([]byte, 6)
			ua := describe(CheckAccess(p, &q.st, sasB, tur))
			if wantUA := map[bool]string{true: "CC 6/2a/04", false: "GOOD"}[lio]; ua != wantUA {
				t.Fatalf("B's next command after A preempted itself: %s, want %s", ua, wantUA)
			}
			// The PREEMPT gave A scope 0: its own RESERVE is a no-op again.
			q.out(sasA, scsi.SAReserve, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), "GOOD")
			q.out(sasA, scsi.SARelease, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), "GOOD")
			if err := q.st.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
