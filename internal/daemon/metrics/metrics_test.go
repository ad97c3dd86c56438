package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/prhelper/prhelper/scsi"
)

// TestRequestLabels: commands and statuses become fixed label values; an
// opcode that is not PR is "other"; a nil *Metrics records nothing.
func TestRequestLabels(t *testing.T) {
	m := New("test")
	reg := scsi.PROutCDB(scsi.SARegister, 0, 0, 24)
	m.Request(reg[:], "emulate", scsi.StatusGood, time.Millisecond)
	m.Request(reg[:], "emulate", scsi.StatusGood, time.Millisecond)
	m.Request([]byte{0x12, 0}, "sgio", scsi.StatusCheckCondition, time.Millisecond)
	m.Request(nil, "server", scsi.StatusCheckCondition, time.Millisecond)
	want := `
# HELP prhelper_requests_total PR commands answered, by command, backend that served them, and SCSI status.
# TYPE prhelper_requests_total counter
prhelper_requests_total{backend="emulate",command="pr_out_register",status="good"} 2
prhelper_requests_total{backend="server",command="other",status="check_condition"} 1
prhelper_requests_total{backend="sgio",command="other",status="check_condition"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "prhelper_requests_total"); err != nil {
		t.Fatal(err)
	}
	var none *Metrics
	none.Request(reg[:], "emulate", 0, 0)
	none.ConnOpened()
	none.PeerRefused("identity")
	if none.StoreCommit("sqlite") != nil {
		t.Fatal("nil Metrics gave a commit hook")
	}
}
