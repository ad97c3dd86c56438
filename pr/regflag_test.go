package pr

import (
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

// raw runs cdb from n and checks the answer (for PR IN, whose data is not
// compared here: a unit attention is consumed by it).
func (q *quirkRun) raw(n Nexus, cdb []byte, want string) {
	q.t.Helper()
	if got := describe(Execute(q.p, &q.st, n, cdb, nil)); got != want {
		q.t.Fatalf("%s: CDB % x from %s: %s, want %s", q.p.Name, cdb, n, got, want)
	}
}

// readKeysCDB is PR IN READ KEYS, the command the tests use to consume a unit
// attention.
func readKeysCDB() []byte { c := scsi.PRInCDB(scsi.SAReadKeys, 1024); return c[:] }

// The three seeds tools/prgen found with every generator flag on
// (test/lab/transcripts/emulate-vs-lio-all-flags.txt) are one LIO quirk, D29
// (docs/spc4-pr.md §14.4): the reservation check reads "registered" from a flag
// of the initiator device's LUN entry, which freeing any registration of that
// device at that port clears, though another of its registrations (a D27
// duplicate) remains. Each test replays one seed's mechanism with the lab's SAS
// initiators; LIO answered RESERVATION CONFLICT at the last command, where the
// engine used to answer GOOD.

// TestRegFlagOwnKeyPreempt is seed 5004 (3 initiators, steps 44-76): A holds
// three registrations (a SPEC_I_PT list naming A twice, D27); under B's
// all-registrants reservation A preempts its own key, which removes A's two
// other registrations and keeps the first; LIO has cleared A's flag, so after B
// takes a Write Exclusive reservation A's PREEMPT of B conflicts.
func TestRegFlagOwnKeyPreempt(t *testing.T) {
	for _, p := range []Profile{LIO(), SPC4()} {
		t.Run(p.Name, func(t *testing.T) {
			lio := p.Name == "lio"
			q := &quirkRun{t: t, p: p, st: State{Ports: sasPorts()}}
			q.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator, sasA.Initiator), "GOOD")
			q.out(sasB, scsi.SARegister, 0, registerParam(0, qB, 0), "GOOD")
			q.out(sasB, scsi.SAReserve, scsi.TypeWriteExclusiveAllRegs, registerParam(qB, 0, 0), "GOOD")
			q.out(sasA, scsi.SAPreempt, scsi.TypeWriteExclusiveAllRegs, registerParam(qA, qA, 0), "GOOD")
			if lio { // A's other two registrations were preempted (D27: they are not the caller's)
				q.raw(sasA, readKeysCDB(), "CC 6/2a/05")
			}
			q.in(sasA, scsi.SAReadKeys, map[bool]string{true: "00000005", false: "00000003"}[lio]+"00000010 aaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbb")
			if !lio { // one registration of A all along; the rest is LIO's (D8)
				return
			}
			// B, the representative, preempts itself into Write Exclusive.
			q.out(sasB, scsi.SAPreempt, scsi.TypeWriteExclusive, registerParam(qB, qB, 0), "GOOD")
			q.raw(sasA, readKeysCDB(), "CC 6/2a/04")
			q.out(sasA, scsi.SAPreempt, scsi.TypeWriteExclusive, registerParam(qA, qB, 0), "RC")
		})
	}
}

// TestRegFlagHolderPreempted is seed 5005 (4 initiators, steps 177-202): A is
// registered twice (SPEC_I_PT naming A), changes the first registration's key
// and reserves with it; B preempts that key, which removes A's first
// registration only. A is still registered by its second, but LIO's check
// counts A as unregistered: A's RELEASE conflicts (a registered non-holder's
// RELEASE is a GOOD no-op, D10).
func TestRegFlagHolderPreempted(t *testing.T) {
	q := &quirkRun{t: t, p: LIO(), st: State{Ports: sasPorts()}}
	q.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator), "GOOD")
	q.out(sasA, scsi.SARegister, 0, registerParam(qA, qC, 0), "GOOD")
	q.out(sasA, scsi.SAReserve, scsi.TypeExclusiveAccess, registerParam(qC, 0, 0), "GOOD")
	q.out(sasB, scsi.SARegister, 0, registerParam(0, qB, 0), "GOOD")
	q.out(sasB, scsi.SAPreempt, scsi.TypeWriteExclusive, registerParam(qB, qC, 0), "GOOD")
	q.raw(sasA, readKeysCDB(), "CC 6/2a/05")
	q.in(sasA, scsi.SAReadKeys, "00000005 00000010 aaaaaaaaaaaaaaaa bbbbbbbbbbbbbbbb")
	q.out(sasA, scsi.SARelease, scsi.TypeWriteExclusive, registerParam(qA, 0, 0), "RC")
	// A CLEAR from A conflicts for the same reason; from B it is fine.
	q.out(sasA, scsi.SAClear, 0, registerParam(qA, 0, 0), "RC")
}

// TestRegFlagUnregisterFirst is seed 5022 (3 initiators, steps 2061-2070): A is
// registered twice and unregisters the first registration; its second keeps
// A registered (READ KEYS, a REGISTER with A's key), but A's PREEMPT of B's
// Exclusive Access reservation conflicts. Only a registration added for A sets
// the flag again: once A has unregistered its last registration and registers
// anew, the same PREEMPT succeeds.
func TestRegFlagUnregisterFirst(t *testing.T) {
	for _, p := range []Profile{LIO(), SPC4()} {
		t.Run(p.Name, func(t *testing.T) {
			lio := p.Name == "lio"
			q := &quirkRun{t: t, p: p, st: State{Ports: sasPorts()}}
			q.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator), "GOOD")
			q.out(sasB, scsi.SARegister, 0, registerParam(0, qB, 0), "GOOD")
			q.out(sasB, scsi.SAReserve, scsi.TypeExclusiveAccess, registerParam(qB, 0, 0), "GOOD")
			q.out(sasA, scsi.SARegister, 0, registerParam(qA, 0, 0), "GOOD")
			if !lio { // one registration under SPC-4: A has none left
				return
			}
			q.out(sasA, scsi.SARegister, 0, registerParam(qA, qA, 0), "GOOD")
			q.out(sasA, scsi.SAPreempt, scsi.TypeExclusiveAccess, registerParam(qA, qB, 0), "RC")
			q.out(sasA, scsi.SARegister, 0, registerParam(qA, 0, 0), "GOOD")
			q.out(sasA, scsi.SARegister, 0, registerParam(0, qA, 0), "GOOD")
			q.out(sasA, scsi.SAPreempt, scsi.TypeExclusiveAccess, registerParam(qA, qB, 0), "GOOD")
		})
	}
}

// TestRegFlagISIDs is D29 without duplicates: two ISIDs of one iSCSI initiator
// at one target port share LIO's node ACL LUN entry and so its flag. When the
// first unregisters, the second, still registered, is judged unregistered by
// the reservation check; a new registration of the first sets the flag again.
// Read from LIO's code, not seen in the lab (its tcm_loop initiators are SAS,
// one per port); SPC-4 judges each I_T nexus by its own registration.
func TestRegFlagISIDs(t *testing.T) {
	x1 := Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", "00023d000001"), RTPI: 1}
	x2 := Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i1", "00023d000002"), RTPI: 1}
	y := Nexus{Initiator: ISCSIInitiator("iqn.1994-05.com.example:i2", "00023d000001"), RTPI: 1}
	for _, p := range []Profile{LIO(), SPC4()} {
		t.Run(p.Name, func(t *testing.T) {
			lio := p.Name == "lio"
			q := &quirkRun{t: t, p: p, st: State{Ports: []Port{{RTPI: 1, Protocol: scsi.ProtoISCSI}}}}
			q.out(y, scsi.SARegister, 0, registerParam(0, qC, 0), "GOOD")
			q.out(y, scsi.SAReserve, scsi.TypeWriteExclusiveRegOnly, registerParam(qC, 0, 0), "GOOD")
			q.out(x1, scsi.SARegister, 0, registerParam(0, qA, 0), "GOOD")
			q.out(x2, scsi.SARegister, 0, registerParam(0, qB, 0), "GOOD")
			write := []byte{0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0}
			if got := describe(CheckAccess(p, &q.st, x2, write)); got != "GOOD" {
				t.Fatalf("WRITE from a registrant under WERO: %s", got)
			}
			q.out(x1, scsi.SARegister, 0, registerParam(qA, 0, 0), "GOOD")
			want := map[bool]string{true: "RC", false: "GOOD"}[lio]
			if got := describe(CheckAccess(p, &q.st, x2, write)); got != want {
				t.Fatalf("WRITE from x2 after x1 unregistered: %s, want %s", got, want)
			}
			q.out(x1, scsi.SARegister, 0, registerParam(0, qA, 0), "GOOD")
			if got := describe(CheckAccess(p, &q.st, x2, write)); got != "GOOD" {
				t.Fatalf("WRITE from x2 after x1 registered again: %s", got)
			}
		})
	}
}

// TestRegFlagPowerOn: a restart with PTPL_A re-adds every registration, which
// sets the flag again (LIO re-registers them as their initiators log in).
func TestRegFlagPowerOn(t *testing.T) {
	q := &quirkRun{t: t, p: LIO(), st: State{Ports: sasPorts()}}
	q.out(sasA, scsi.SARegister, 0, specIPTParam(qA, sasA.Initiator), "GOOD")
	q.out(sasB, scsi.SARegister, 0, registerParam(0, qB, 0x01), "GOOD")
	q.out(sasB, scsi.SAReserve, scsi.TypeExclusiveAccess, registerParam(qB, 0, 0), "GOOD")
	q.out(sasA, scsi.SARegister, 0, registerParam(qA, 0, 0x01), "GOOD")
	q.out(sasA, scsi.SAPreempt, scsi.TypeExclusiveAccess, registerParam(qA, qB, 0), "RC")
	PowerOn(q.p, &q.st)
	q.out(sasA, scsi.SAPreempt, scsi.TypeExclusiveAccess, registerParam(qA, qB, 0), "GOOD")
}
