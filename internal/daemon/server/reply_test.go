package server

import (
	"bytes"
	"testing"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// TestReply checks the one place a backend's result becomes a helper reply:
// the status is kept, sense of any length lands in the 96-byte field (cut
// after 96 bytes, zero filled after a shorter one), and data is kept for
// wire.EncodeReply to apply the protocol's rules to.
func TestReply(t *testing.T) {
	long := bytes.Repeat([]byte{0x72, 0x05, 0x24}, 40) // 120 bytes of device sense
	for _, tc := range []struct {
		name string
		res  scsi.Result
		want []byte // the 96-byte sense field
	}{
		{"GOOD with data", scsi.Good([]byte{1, 2, 3}), nil},
		{"RESERVATION CONFLICT", scsi.Conflict(), nil},
		{"built CHECK CONDITION", scsi.CheckCondition(scsi.SenseInvalidField), scsi.SenseInvalidField.Fixed()},
		{"device sense longer than the field", scsi.Result{Status: scsi.StatusCheckCondition, Sense: long}, long[:wire.SenseSize]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := reply(tc.res)
			want := make([]byte, wire.SenseSize)
			copy(want, tc.want)
			if rep.Status != tc.res.Status || !bytes.Equal(rep.Sense[:], want) || !bytes.Equal(rep.Data, tc.res.Data) {
				t.Errorf("reply(%v) = status %#x sense % x data % x", tc.res, rep.Status, rep.Sense, rep.Data)
			}
		})
	}
}
