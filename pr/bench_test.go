package pr

import (
	"encoding/binary"
	"testing"

	"github.com/prhelper/prhelper/scsi"
)

func benchParam(rk, sark uint64) []byte {
	p := make([]byte, 24)
	binary.BigEndian.PutUint64(p[0:], rk)
	binary.BigEndian.PutUint64(p[8:], sark)
	return p
}

// BenchmarkEngine measures the pure engine: operations per second of the commands
// a cluster issues most, on a logical unit with a few registrations.
func BenchmarkEngine(b *testing.B) {
	nexus := func(i int) Nexus { return Nexus{Initiator: SASInitiator(0x5001405b00000000 | uint64(i)), RTPI: 1} }
	setup := func() *State {
		st := &State{}
		for i := 1; i <= 4; i++ {
			c := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
			Execute(LIO(), st, nexus(i), c[:], benchParam(0, uint64(i)))
		}
		c := scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeWriteExclusiveRegOnly, 24)
		Execute(LIO(), st, nexus(1), c[:], benchParam(1, 0))
		return st
	}
	p := LIO()
	readKeys := scsi.PRInCDB(scsi.SAReadKeys, 8192)
	fullStatus := scsi.PRInCDB(scsi.SAReadFullStatus, 8192)
	riek := scsi.PROutCDB(scsi.SARegisterAndIgnoreExisting, 0, 0, 24)
	conflict := scsi.PROutCDB(scsi.SAReserve, 0, scsi.TypeExclusiveAccess, 24)
	for _, bc := range []struct {
		name  string
		cdb   [16]byte
		param func(i int) []byte
		n     Nexus
	}{
		{"READ_KEYS", readKeys, func(int) []byte { return nil }, nexus(2)},
		{"READ_FULL_STATUS", fullStatus, func(int) []byte { return nil }, nexus(2)},
		{"REGISTER_AND_IGNORE", riek, func(i int) []byte { return benchParam(0, uint64(i)|1<<40) }, nexus(3)},
		{"RESERVE_conflict", conflict, func(int) []byte { return benchParam(2, 0) }, nexus(2)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			st := setup()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				r := Execute(p, st, bc.n, bc.cdb[:], bc.param(i))
				if r.Status == scsi.StatusCheckCondition {
					b.Fatalf("%s: CHECK CONDITION %v", bc.name, r.Sense)
				}
			}
		})
	}
	b.Run("MarshalUnmarshal", func(b *testing.B) {
		st := setup()
		for b.Loop() {
			buf, _ := st.MarshalBinary()
			var s State
			if err := s.UnmarshalBinary(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
