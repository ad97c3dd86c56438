package main

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// fullStatus is READ FULL STATUS data for registrations (addr, key, holder).
func fullStatus(gen uint32, regs ...[3]uint64) []byte {
	var body []byte
	for _, r := range regs {
		d := make([]byte, 24)
		binary.BigEndian.PutUint64(d[0:8], r[1])
		if r[2] != 0 {
			d[12] = 1
			d[13] = byte(r[2])
		}
		binary.BigEndian.PutUint16(d[18:20], 1)
		tid := pr.SASInitiator(r[0]).TransportID()
		binary.BigEndian.PutUint32(d[20:24], uint32(len(tid)))
		body = append(append(body, d...), tid...)
	}
	h := binary.BigEndian.AppendUint32(nil, gen)
	h = binary.BigEndian.AppendUint32(h, uint32(len(body)))
	return append(h, body...)
}

func keys(gen uint32, ks ...uint64) []byte {
	b := binary.BigEndian.AppendUint32(nil, gen)
	b = binary.BigEndian.AppendUint32(b, uint32(8*len(ks)))
	for _, k := range ks {
		b = binary.BigEndian.AppendUint64(b, k)
	}
	return b
}

func TestFold(t *testing.T) {
	rk, rfs := scsi.PRInCDB(scsi.SAReadKeys, 8192), scsi.PRInCDB(scsi.SAReadFullStatus, 8192)
	for _, tc := range []struct {
		name      string
		cdb       [16]byte
		map_, ref []byte
		same      bool
	}{
		{"keys: duplicates and generation folded", rk, keys(9, 0xa1, 0xb1, 0xa1), keys(4, 0xb1, 0xa1), true},
		{"keys: a key more", rk, keys(9, 0xa1, 0xa2), keys(9, 0xa1), false},
		{"full status: the map's two nexuses are host A", rfs,
			fullStatus(7, [3]uint64{initiatorA2, 0xa1, 0}, [3]uint64{initiatorA1, 0xa1, 5}, [3]uint64{initiatorB, 0xb1, 0}),
			fullStatus(3, [3]uint64{initiatorA1, 0xa1, 5}, [3]uint64{initiatorB, 0xb1, 0}), true},
		{"full status: B holds on one side", rfs,
			fullStatus(7, [3]uint64{initiatorA1, 0xa1, 0}, [3]uint64{initiatorB, 0xb1, 1}),
			fullStatus(7, [3]uint64{initiatorA1, 0xa1, 1}, [3]uint64{initiatorB, 0xb1, 0}), false},
		{"full status: host A with two keys", rfs,
			fullStatus(7, [3]uint64{initiatorA1, 0xa1, 0}, [3]uint64{initiatorA2, 0xa2, 0}),
			fullStatus(7, [3]uint64{initiatorA1, 0xa1, 0}), false},
	} {
		m, r := Fold(tc.cdb, Reply{Data: tc.map_}), Fold(tc.cdb, Reply{Data: tc.ref})
		if (m == r) != tc.same {
			t.Errorf("%s: map %q ref %q", tc.name, m, r)
		}
	}
	res := Reply{Status: scsi.StatusCheckCondition, Sense: scsi.SenseInvalidField}
	if f := Fold(rk, res); !strings.Contains(f, "CHECK CONDITION") {
		t.Errorf("fold of a CHECK CONDITION: %q", f)
	}
}

// TestGen: the sequence depends on the seed only, and REGISTER AND MOVE
// carries each LU's RTPI for host B.
func TestGen(t *testing.T) {
	a, b := NewGen(5, Ports{BMap: 3, BRef: 5}), NewGen(5, Ports{BMap: 3, BRef: 5})
	moves := 0
	for k := 0; k < 2000; k++ {
		x, y := a.Next(), b.Next()
		if x.Desc != y.Desc || !bytes.Equal(x.ParamMap, y.ParamMap) {
			t.Fatalf("step %d: %q vs %q", k, x.Desc, y.Desc)
		}
		if x.CDB[0] == scsi.OpPersistentReserveOut && x.CDB[1]&0x1f == scsi.SARegisterAndMove {
			moves++
			if binary.BigEndian.Uint16(x.ParamMap[18:20]) != 3 || binary.BigEndian.Uint16(x.ParamRef[18:20]) != 5 {
				t.Fatalf("step %d: RTPIs %x / %x", k, x.ParamMap[18:20], x.ParamRef[18:20])
			}
		} else if !bytes.Equal(x.ParamMap, x.ParamRef) {
			t.Fatalf("step %d: parameter lists differ outside REGISTER AND MOVE", k)
		}
		if x.CDB[0] == scsi.OpPersistentReserveOut && x.CDB[1]&0x1f == scsi.SAPreemptAndAbort {
			t.Fatalf("step %d: PREEMPT AND ABORT generated", k)
		}
	}
	if moves == 0 {
		t.Fatal("no REGISTER AND MOVE in 2000 steps")
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if run([]string{"-steps", "1"}, &out, &errb) != 1 || !strings.Contains(errb.String(), "usage") {
		t.Fatalf("no usage: %q", errb.String())
	}
}
