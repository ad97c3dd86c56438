package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"

	"github.com/prhelper/prhelper/scsi"
)

// jsonSense is the sense part of --json output.
type jsonSense struct {
	Key         byte   `json:"key"`
	ASC         byte   `json:"asc"`
	ASCQ        byte   `json:"ascq"`
	KeyName     string `json:"key_name"`
	Description string `json:"description"`
	Raw         string `json:"raw"`
}

// jsonResult is the one object --json prints. Payload is the decoded PR IN data
// (scsi.Keys, scsi.Reservation, scsi.Capabilities or scsi.FullStatus).
type jsonResult struct {
	Device     string     `json:"device"`
	Socket     string     `json:"socket"`
	Command    string     `json:"command"`
	CDB        string     `json:"cdb"`
	Param      string     `json:"parameter_list,omitempty"`
	Status     *byte      `json:"status"`
	StatusName string     `json:"status_name,omitempty"`
	Sense      *jsonSense `json:"sense,omitempty"`
	ExitStatus int        `json:"exit_status"`
	Category   string     `json:"category"`
	Error      string     `json:"error,omitempty"`
	Data       string     `json:"data,omitempty"`
	Payload    any        `json:"payload,omitempty"`
}

// writeJSON prints r as one JSON object on one line.
func writeJSON(w io.Writer, o Options, r *result) error {
	j := jsonResult{
		Device:     o.Device,
		Socket:     o.Socket,
		Command:    scsi.CommandName(r.cdb[:]),
		CDB:        hex.EncodeToString(r.cdb[:10]),
		Param:      hex.EncodeToString(r.param),
		ExitStatus: r.exit,
		Category:   categoryString(r.exit, false),
		Error:      r.err,
		Payload:    r.payload,
	}
	if r.reply != nil {
		st := r.reply.Status
		j.Status, j.StatusName = &st, scsi.StatusName(st)
		j.Data = hex.EncodeToString(r.reply.Data)
		if r.hasSense {
			j.Sense = &jsonSense{Key: r.sense.Key, ASC: r.sense.ASC, ASCQ: r.sense.ASCQ,
				KeyName: senseKeyName(r.sense.Key), Description: ascText(r.sense.ASC, r.sense.ASCQ),
				Raw: hex.EncodeToString(trimSense(r.reply.Sense[:]))}
		}
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// trimSense drops the zero padding of the 96-byte sense field: fixed format
// sense is 8 + ADDITIONAL SENSE LENGTH bytes (SPC-4 §4.5.3).
func trimSense(b []byte) []byte {
	if len(b) < 8 {
		return b
	}
	n := 8 + int(b[7])
	if n > len(b) {
		n = len(b)
	}
	return b[:n]
}
