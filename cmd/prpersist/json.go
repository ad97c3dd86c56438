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

// jsonResult is the one object --json prints. Payload is the decoded PR IN data;
// see jsonPayload.
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
		Payload:    jsonPayload(r.payload),
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

// jsonPayload shapes decoded PR IN data for --json. Reservation keys become
// "0x..." strings, as sg_persist prints them: a 64-bit key does not survive a
// JSON number in most consumers (IEEE doubles hold 53 bits).
func jsonPayload(p any) any {
	hexKey := func(k uint64) string { return fmt.Sprintf("0x%x", k) }
	switch v := p.(type) {
	case *scsi.Keys:
		keys := make([]string, len(v.Keys))
		for i, k := range v.Keys {
			keys[i] = hexKey(k)
		}
		return struct {
			Generation       uint32   `json:"generation"`
			AdditionalLength uint32   `json:"additional_length"`
			Keys             []string `json:"keys"`
			Truncated        bool     `json:"truncated,omitempty"`
		}{v.Generation, v.AdditionalLength, keys, v.Truncated}
	case *scsi.Reservation:
		type res struct {
			Generation       uint32 `json:"generation"`
			AdditionalLength uint32 `json:"additional_length"`
			Held             bool   `json:"held"`
			Key              string `json:"key,omitempty"`
			Scope            byte   `json:"scope"`
			Type             byte   `json:"type"`
			TypeName         string `json:"type_name,omitempty"`
			Truncated        bool   `json:"truncated,omitempty"`
		}
		r := res{Generation: v.Generation, AdditionalLength: v.AdditionalLength, Held: v.Held, Truncated: v.Truncated}
		if v.Held {
			r.Key, r.Scope, r.Type, r.TypeName = hexKey(v.Key), v.Scope, v.Type, typeName(v.Type)
		}
		return r
	case *scsi.FullStatus:
		type tid struct {
			Protocol    byte   `json:"protocol"`
			Format      byte   `json:"format"`
			Description string `json:"description,omitempty"`
			Error       string `json:"error,omitempty"`
			Hex         string `json:"hex"`
		}
		type desc struct {
			Key                string `json:"key"`
			AllTgPt            bool   `json:"all_tg_pt"`
			Holder             bool   `json:"r_holder"`
			Scope              byte   `json:"scope"`
			Type               byte   `json:"type"`
			TypeName           string `json:"type_name,omitempty"`
			RelativeTargetPort uint16 `json:"relative_target_port"`
			TransportID        tid    `json:"transport_id"`
		}
		ds := make([]desc, len(v.Descriptors))
		for i, d := range v.Descriptors {
			raw, _ := d.TransportID.Encode()
			t := tid{Protocol: d.TransportID.Protocol, Format: d.TransportID.Format, Error: d.TransportIDErr, Hex: hex.EncodeToString(raw)}
			if d.TransportIDErr == "" && len(raw) > 0 {
				t.Description = d.TransportID.String()
			}
			ds[i] = desc{Key: hexKey(d.Key), AllTgPt: d.AllTargetPorts, Holder: d.Holder, Scope: d.Scope, Type: d.Type,
				RelativeTargetPort: d.RelativeTargetPort, TransportID: t}
			if d.Holder {
				ds[i].TypeName = typeName(d.Type)
			}
		}
		return struct {
			Generation       uint32 `json:"generation"`
			AdditionalLength uint32 `json:"additional_length"`
			Descriptors      []desc `json:"descriptors"`
			Truncated        bool   `json:"truncated,omitempty"`
		}{v.Generation, v.AdditionalLength, ds, v.Truncated}
	}
	return p // *scsi.Capabilities has no keys; nil stays nil
}
