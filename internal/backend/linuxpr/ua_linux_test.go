package linuxpr

import (
	"context"
	"github.com/prhelper/prhelper/internal/kernel/blkpr"
	"testing"
	"unsafe"

	"github.com/prhelper/prhelper/internal/backend"
	"github.com/prhelper/prhelper/scsi"
)

// TestUnitAttentionReissued: a PR OUT ioctl that meets a unit attention comes
// back CHECK CONDITION without sense (PR_STS_IOERR from 6.4, the raw result 02h
// before, 08000002h with the driver byte before 5.14); the backend issues it
// again, so the guest gets what the device answers after the attention, as
// its own retry would have. A CHECK CONDITION that stays is 0B/00/06 after
// uaRetries more tries; other results are not repeated.
func TestUnitAttentionReissued(t *testing.T) {
	for _, tc := range []struct {
		name    string
		first   []int // results of the first calls, then GOOD
		calls   int
		status  byte
		ioError bool
	}{
		{"one unit attention, 6.4+", []int{blkpr.PR_STS_IOERR}, 2, scsi.StatusGood, false},
		{"two, raw result of 6.1", []int{0x02, 0x02}, 3, scsi.StatusGood, false},
		{"raw result with DRIVER_SENSE, before 5.14", []int{0x08000002}, 2, scsi.StatusGood, false},
		{"a CHECK CONDITION that stays", []int{2, 2, 2, 2, 2}, 4, scsi.StatusCheckCondition, true},
		{"a conflict is the answer", []int{0x118}, 1, scsi.StatusReservationConflict, false},
		{"a path failure is not repeated", []int{0x10002}, 1, scsi.StatusCheckCondition, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			b, err := New(Options{Ioctl: func(fd int, req uint, arg unsafe.Pointer) (int, error) {
				calls++
				if calls <= len(tc.first) {
					return tc.first[calls-1], nil
				}
				return 0, nil
			}})
			if err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 24)
			p[15] = 0xa1
			rep, _ := b.Execute(context.Background(), &backend.Request{FD: 5, CDB: scsi.PROutCDB(scsi.SARegister, 0, 0, 24), Param: p})
			if calls != tc.calls || rep.Status != tc.status {
				t.Fatalf("%d ioctls, status %#x; want %d, %#x", calls, rep.Status, tc.calls, tc.status)
			}
			if s, _ := scsi.ParseSense(rep.Sense[:]); tc.ioError && s != scsi.SenseIOError {
				t.Fatalf("sense %v, want 0B/00/06", s)
			}
		})
	}
}
