package scsi

import "fmt"

var prInNames = [...]string{
	SAReadKeys:           "PR IN READ KEYS",
	SAReadReservation:    "PR IN READ RESERVATION",
	SAReportCapabilities: "PR IN REPORT CAPABILITIES",
	SAReadFullStatus:     "PR IN READ FULL STATUS",
}

var prOutNames = [...]string{
	SARegister:                  "PR OUT REGISTER",
	SAReserve:                   "PR OUT RESERVE",
	SARelease:                   "PR OUT RELEASE",
	SAClear:                     "PR OUT CLEAR",
	SAPreempt:                   "PR OUT PREEMPT",
	SAPreemptAndAbort:           "PR OUT PREEMPT AND ABORT",
	SARegisterAndIgnoreExisting: "PR OUT REGISTER AND IGNORE EXISTING KEY",
	SARegisterAndMove:           "PR OUT REGISTER AND MOVE",
	SAReplaceLostReservation:    "PR OUT REPLACE LOST RESERVATION",
}

// CommandName names a PR CDB for logs, e.g. "PR OUT REGISTER" or "PR IN sa 0x1f".
func CommandName(cdb []byte) string {
	if len(cdb) < 2 {
		return "short CDB"
	}
	sa := ServiceAction(cdb)
	var dir string
	var names []string
	switch cdb[0] {
	case OpPersistentReserveIn:
		dir, names = "PR IN", prInNames[:]
	case OpPersistentReserveOut:
		dir, names = "PR OUT", prOutNames[:]
	default:
		return fmt.Sprintf("opcode 0x%02x", cdb[0])
	}
	if int(sa) < len(names) && names[sa] != "" {
		// The tables hold whole names: a name per request (logs, the
		// shutdown's view) without building a string (docs/performance.md §3).
		return names[sa]
	}
	return fmt.Sprintf("%s sa 0x%02x", dir, sa)
}
