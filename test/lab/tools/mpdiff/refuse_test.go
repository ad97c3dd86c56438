package main

import (
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func TestRefused(t *testing.T) {
	for _, tc := range []struct {
		r    Reply
		want bool
	}{
		{Reply{Status: scsi.StatusCheckCondition, Sense: scsi.SenseLUNCommFailure}, true},
		{Reply{Status: scsi.StatusCheckCondition, Sense: scsi.Sense{Key: scsi.KeyNotReady, ASC: 0x08}}, false}, // LIO's 2/08/00
		{Reply{Status: scsi.StatusCheckCondition, Sense: scsi.SenseInvalidField}, false},
		{Reply{Status: scsi.StatusReservationConflict}, false},
		{Reply{Status: scsi.StatusGood}, false},
	} {
		if got := Refused(tc.r); got != tc.want {
			t.Errorf("Refused(%+v) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

func TestWithoutNexus(t *testing.T) {
	rk, rfs, rr := scsi.PRInCDB(scsi.SAReadKeys, 8192), scsi.PRInCDB(scsi.SAReadFullStatus, 8192), scsi.PRInCDB(scsi.SAReadReservation, 8192)
	// The away path (A2) still holds a1, the map changed to a2 on A1.
	m := Reply{Status: scsi.StatusGood, Data: keys(5, 0xa2, 0xa1, 0xb1)}
	ref := Reply{Status: scsi.StatusGood, Data: keys(3, 0xa2, 0xb1)}
	w, ok := WithoutNexus(rk, m, initiatorA2, 0xa1)
	if !ok || Fold(rk, w) != Fold(rk, ref) {
		t.Fatalf("READ KEYS without A2's a1: %v %s, want %s", ok, Fold(rk, w), Fold(rk, ref))
	}
	// A key the away path does not hold explains nothing.
	if w, ok := WithoutNexus(rk, m, initiatorA2, 0xb2); ok && Fold(rk, w) == Fold(rk, ref) {
		t.Fatal("a key no nexus holds explained the difference")
	}
	// Only one entry goes: b1 held by B and by the away path stays once.
	two := Reply{Status: scsi.StatusGood, Data: keys(5, 0xb1, 0xb1)}
	if w, ok := WithoutNexus(rk, two, initiatorA2, 0xb1); !ok || Fold(rk, w) != Fold(rk, Reply{Status: scsi.StatusGood, Data: keys(1, 0xb1)}) {
		t.Fatalf("b1 of B lost with the away path's: %s", Fold(rk, w))
	}

	fs := Reply{Status: scsi.StatusGood, Data: fullStatus(7, [3]uint64{initiatorA1, 0xa2, 0}, [3]uint64{initiatorA2, 0xa1, 0}, [3]uint64{initiatorB, 0xb1, 1})}
	fref := Reply{Status: scsi.StatusGood, Data: fullStatus(2, [3]uint64{initiatorA1, 0xa2, 0}, [3]uint64{initiatorB, 0xb1, 1})}
	if w, ok := WithoutNexus(rfs, fs, initiatorA2, 0xa1); !ok || Fold(rfs, w) != Fold(rfs, fref) {
		t.Fatalf("READ FULL STATUS without A2: %v %s, want %s", ok, Fold(rfs, w), Fold(rfs, fref))
	}
	if _, ok := WithoutNexus(rfs, fref, initiatorA2, 0); ok {
		t.Fatal("no descriptor of A2, yet something was taken out")
	}
	// Other replies are never explained by it.
	if _, ok := WithoutNexus(rr, Reply{Status: scsi.StatusGood, Data: make([]byte, 8)}, initiatorA2, 0xa1); ok {
		t.Fatal("READ RESERVATION explained")
	}
	if _, ok := WithoutNexus(rk, Reply{Status: scsi.StatusCheckCondition, Sense: scsi.SenseLUNCommFailure}, initiatorA2, 0xa1); ok {
		t.Fatal("a CHECK CONDITION explained")
	}
}

func TestNamesKey(t *testing.T) {
	p := make([]byte, 24)
	p[7], p[15] = 0xb1, 0xa1 // rk b1, sark a1
	out := scsi.PROutCDB(scsi.SAPreempt, 0, 1, 24)
	if !NamesKey(out, p, 0xa1) || !NamesKey(out, p, 0xb1) {
		t.Fatal("a key in the parameter list not found")
	}
	if NamesKey(out, p, 0xa2) || NamesKey(out, p, 0) || NamesKey(out, p[:16], 0xa1) {
		t.Fatal("a key not named, no key, or a short list counted")
	}
	if NamesKey(scsi.PRInCDB(scsi.SAReadKeys, 8192), p, 0xa1) {
		t.Fatal("a PR IN counted")
	}
}
