package scsi

import "fmt"

var prInNames = [...]string{
	SAReadKeys:           "READ KEYS",
	SAReadReservation:    "READ RESERVATION",
	SAReportCapabilities: "REPORT CAPABILITIES",
	SAReadFullStatus:     "READ FULL STATUS",
}

var prOutNames = [...]string{
	SARegister:                  "REGISTER",
	SAReserve:                   "RESERVE",
	SARelease:                   "RELEASE",
	SAClear:                     "CLEAR",
	SAPreempt:                   "PREEMPT",
	SAPreemptAndAbort:           "PREEMPT AND ABORT",
	SARegisterAndIgnoreExisting: "REGISTER AND IGNORE EXISTING KEY",
	SARegisterAndMove:           "REGISTER AND MOVE",
	SAReplaceLostReservation:    "REPLACE LOST RESERVATION",
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
		return dir + " " + names[sa]
	}
	return fmt.Sprintf("%s sa 0x%02x", dir, sa)
}
