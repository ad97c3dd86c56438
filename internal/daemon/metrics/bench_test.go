package metrics

import (
	"testing"
	"time"

	"github.com/prhelper/prhelper/scsi"
)

// BenchmarkObserve is what every answered request costs the metrics.
func BenchmarkObserve(b *testing.B) {
	m := New("bench")
	cdb := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Request(cdb[:], "emulate", scsi.StatusGood, 300*time.Microsecond)
		}
	})
}
