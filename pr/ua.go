package pr

import "github.com/prhelper/prhelper/scsi"

// Opcodes that neither report nor clear a unit attention (SAM-5 §5.14, LIO
// target_scsi3_ua_check; docs/spc4-pr.md §6 step 1). REQUEST SENSE reports it as data.
const (
	opInquiry      = 0x12
	opReportLUNs   = 0xa0
	opRequestSense = 0x03
)

// uaTarget returns the queue a unit attention for nexus n goes to: the nexus
// itself, or with NodeACLGranularity its initiator device at its target port
// (LIO keys UAs per node ACL + mapped LUN, docs/spc4-pr.md §9, D16).
func uaTarget(p Profile, n Nexus) Nexus {
	if p.NodeACLGranularity {
		n.Initiator.ISID = ""
	}
	return n
}

// addUA establishes unit attention 2Ah/ascq for the registration of nexus n.
// An identical ASC/ASCQ already queued is not queued twice (LIO
// core_scsi3_ua_allocate). The 2Ah conditions the engine raises all share one
// priority, so the queue is FIFO.
func (st *State) addUA(p Profile, n Nexus, ascq byte) {
	t := uaTarget(p, n)
	u := UA{ASC: 0x2a, ASCQ: ascq}
	for i := range st.UnitAttentions {
		q := &st.UnitAttentions[i]
		if !q.Nexus.Equal(t) {
			continue
		}
		for _, c := range q.Conditions {
			if c == u {
				return
			}
		}
		q.Conditions = append(q.Conditions, u)
		return
	}
	st.UnitAttentions = append(st.UnitAttentions, PendingUA{Nexus: t, Conditions: []UA{u}})
}

// pendingUA returns the index of the queue that holds unit attentions for
// nexus n, or -1. A queue made for a registration without ISID covers every
// ISID of its initiator device.
func (st *State) pendingUA(p Profile, n Nexus) int {
	t := uaTarget(p, n)
	for i, q := range st.UnitAttentions {
		if len(q.Conditions) > 0 && q.Nexus.covers(t) {
			return i
		}
	}
	return -1
}

// takeUA removes and returns the unit attention to report to nexus n. With
// UAClearAll every queued condition goes (LIO with UA_INTLCK_CTRL=00b,
// core_scsi3_ua_for_check_condition), else only the head (SAM-5).
func (st *State) takeUA(p Profile, n Nexus) (UA, bool) {
	i := st.pendingUA(p, n)
	if i < 0 {
		return UA{}, false
	}
	q := &st.UnitAttentions[i]
	u := q.Conditions[0]
	if p.UAClearAll || len(q.Conditions) == 1 {
		st.UnitAttentions = append(st.UnitAttentions[:i:i], st.UnitAttentions[i+1:]...)
		if len(st.UnitAttentions) == 0 {
			st.UnitAttentions = nil
		}
	} else {
		q.Conditions = append([]UA(nil), q.Conditions[1:]...)
	}
	return u, true
}

// reportUA implements docs/spc4-pr.md §6 step 1: when the profile reports unit
// attentions and one is pending for n, the command (unless it is INQUIRY,
// REPORT LUNS or REQUEST SENSE) ends in CHECK CONDITION with it and the
// condition is cleared.
func (st *State) reportUA(p Profile, n Nexus, opcode byte) (Result, bool) {
	if !p.ReportUnitAttentions {
		return Result{}, false
	}
	switch opcode {
	case opInquiry, opReportLUNs, opRequestSense:
		return Result{}, false
	}
	u, ok := st.takeUA(p, n)
	if !ok {
		return Result{}, false
	}
	return checkCondition(u.Sense()), true
}

// checkCondition returns CHECK CONDITION with sense s.
func checkCondition(s scsi.Sense) Result {
	return scsi.CheckCondition(s)
}

// conflict is RESERVATION CONFLICT; it carries no sense data.
var conflict = Result{Status: scsi.StatusReservationConflict}

// good is GOOD without data.
var good = Result{Status: scsi.StatusGood}
