package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"

	"github.com/prhelper/prhelper/internal/fence"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
	"github.com/prhelper/prhelper/scsi"
)

// showResult is show's output: READ FULL STATUS as the engine answers it,
// decoded, and what that data does not carry.
type showResult struct {
	LU             string          `json:"lu"`
	Changed        string          `json:"changed,omitempty"`
	Revision       int64           `json:"revision,omitempty"`
	FullStatus     *fullStatusJSON `json:"full_status"`
	PTPLA          bool            `json:"ptpl_a"`
	UnitAttentions []uaJSON        `json:"unit_attentions"`
	PendingFences  []fence.Record  `json:"pending_fences"`
}

type fullStatusJSON struct {
	Generation  uint32     `json:"generation"`
	Descriptors []descJSON `json:"descriptors"`
}

type descJSON struct {
	Key                string `json:"key"`
	AllTgPt            bool   `json:"all_tg_pt"`
	Holder             bool   `json:"r_holder"`
	Scope              byte   `json:"scope"`
	Type               byte   `json:"type"`
	TypeName           string `json:"type_name,omitempty"`
	RelativeTargetPort uint16 `json:"relative_target_port"`
	TransportID        string `json:"transport_id"`
	TransportIDHex     string `json:"transport_id_hex"`
}

type uaJSON struct {
	Nexus       string `json:"nexus"`
	ASC         byte   `json:"asc"`
	ASCQ        byte   `json:"ascq"`
	Description string `json:"description"`
}

// fullStatus is what READ FULL STATUS returns for st: the engine runs the
// command on a copy without the pending unit attentions (which it would report
// instead of the data to their own nexus) and without an SPC-2 reservation
// (which conflicts with every PR command), from a nexus that is not
// registered; PR IN does not depend on who asks.
func fullStatus(st *pr.State) (scsi.FullStatus, error) {
	c := *st
	c.UnitAttentions, c.SPC2Holder = nil, nil
	n := pr.Nexus{Initiator: pr.ISCSIInitiator("prhelperctl", ""), RTPI: 1}
	cdb := scsi.PRInCDB(scsi.SAReadFullStatus, 0xffff)
	r := pr.Execute(profile(), &c, n, cdb[:], nil)
	if r.Status != scsi.StatusGood {
		return scsi.FullStatus{}, fmt.Errorf("READ FULL STATUS: %s", r)
	}
	return scsi.DecodeFullStatus(r.Data)
}

func (e *env) show(ctx context.Context, st store.Store, name string) (any, error) {
	l, err := getLU(ctx, st, name)
	if err != nil {
		return nil, err
	}
	if l.err != nil {
		return nil, fail(exitMalformed, fmt.Errorf("LU %s: %w", name, l.err))
	}
	fs, err := fullStatus(l.state)
	if err != nil {
		return nil, fail(exitMalformed, fmt.Errorf("LU %s: %w", name, err))
	}
	res := showResult{LU: name, Revision: l.revision, PTPLA: l.state.APTPL, PendingFences: l.pending,
		FullStatus: &fullStatusJSON{Generation: fs.Generation, Descriptors: []descJSON{}}, UnitAttentions: []uaJSON{}}
	if !l.changed.IsZero() {
		res.Changed = l.lastChange()
	}
	if res.PendingFences == nil {
		res.PendingFences = []fence.Record{}
	}
	for _, d := range fs.Descriptors {
		raw, _ := d.TransportID.Encode()
		j := descJSON{Key: hexKey(d.Key), AllTgPt: d.AllTargetPorts, Holder: d.Holder, Scope: d.Scope, Type: d.Type,
			RelativeTargetPort: d.RelativeTargetPort, TransportID: d.TransportID.String(), TransportIDHex: hex.EncodeToString(raw)}
		if d.Holder {
			j.TypeName = typeName(d.Type)
		}
		res.FullStatus.Descriptors = append(res.FullStatus.Descriptors, j)
	}
	for _, q := range l.state.UnitAttentions {
		for _, c := range q.Conditions {
			res.UnitAttentions = append(res.UnitAttentions, uaJSON{Nexus: q.Nexus.String(), ASC: c.ASC, ASCQ: c.ASCQ, Description: uaText(c)})
		}
	}
	if e.o.json {
		return res, nil
	}
	printShow(e.stdout, res)
	return nil, nil
}

// printShow prints res in sg_persist --read-full-status's words, then the rest.
func printShow(w io.Writer, res showResult) {
	fmt.Fprintf(w, "LU %s (last change %s)\n", res.LU, changedText(res))
	fmt.Fprintf(w, "  PR generation=0x%x\n", res.FullStatus.Generation)
	if len(res.FullStatus.Descriptors) == 0 {
		fmt.Fprintf(w, "  No full status descriptors\n")
	}
	for _, d := range res.FullStatus.Descriptors {
		fmt.Fprintf(w, "    Key=%s\n", d.Key)
		if d.AllTgPt {
			fmt.Fprintf(w, "      All target ports bit set\n")
		} else {
			fmt.Fprintf(w, "      All target ports bit clear\n")
			fmt.Fprintf(w, "      Relative port address: 0x%x\n", d.RelativeTargetPort)
		}
		if d.Holder {
			fmt.Fprintf(w, "      << Reservation holder >>\n")
			fmt.Fprintf(w, "      scope: LU_SCOPE,  type: %s\n", d.TypeName)
		} else {
			fmt.Fprintf(w, "      not reservation holder\n")
		}
		fmt.Fprintf(w, "      Transport Id of initiator:\n        %s\n", d.TransportID)
	}
	fmt.Fprintf(w, "  Persist Through Power Loss Active(PTPL_A): %d\n", b2i(res.PTPLA))
	if len(res.UnitAttentions) == 0 {
		fmt.Fprintf(w, "  No pending unit attentions\n")
	} else {
		fmt.Fprintf(w, "  Pending unit attentions (reported on each nexus's next PR command):\n")
		for _, u := range res.UnitAttentions {
			fmt.Fprintf(w, "    %s: %02Xh/%02Xh %s\n", u.Nexus, u.ASC, u.ASCQ, u.Description)
		}
	}
	if len(res.PendingFences) == 0 {
		fmt.Fprintf(w, "  No pending fences\n")
	} else {
		fmt.Fprintf(w, "  Pending fences (docs/fencing.md):\n")
		for _, r := range res.PendingFences {
			fmt.Fprintf(w, "    %s evicted by %s, confirmed by %d helper(s), %d failure(s)\n", r.Victim, r.Evictor, len(r.Done), len(r.Failed))
		}
	}
}

func changedText(res showResult) string {
	switch {
	case res.Changed != "":
		return res.Changed
	case res.Revision != 0:
		return fmt.Sprintf("revision %d", res.Revision)
	}
	return "unknown"
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// uaText names the unit attentions the engine raises (SPC-4 Annex D).
func uaText(u pr.UA) string {
	switch uint16(u.ASC)<<8 | uint16(u.ASCQ) {
	case 0x2a03:
		return "Reservations preempted"
	case 0x2a04:
		return "Reservations released"
	case 0x2a05:
		return "Registrations preempted"
	}
	return fmt.Sprintf("ASC=0x%02x ASCQ=0x%02x", u.ASC, u.ASCQ)
}
