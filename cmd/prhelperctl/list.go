package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/prhelper/prhelper/internal/store"
)

// listItem is one LU in list's output.
type listItem struct {
	LU             string `json:"lu"`
	Generation     uint32 `json:"generation"`
	Registrations  int    `json:"registrations"`
	Holder         string `json:"holder,omitempty"`
	HolderKey      string `json:"holder_key,omitempty"`
	Type           *byte  `json:"type,omitempty"`
	TypeName       string `json:"type_name,omitempty"`
	PTPLA          bool   `json:"ptpl_a"`
	UnitAttentions int    `json:"unit_attentions"`
	PendingFences  int    `json:"pending_fences"`
	Changed        string `json:"changed,omitempty"`
	Revision       int64  `json:"revision,omitempty"`
	Error          string `json:"error,omitempty"`
}

func (e *env) list(ctx context.Context, st store.Store) (any, error) {
	all, err := lus(ctx, st)
	if err != nil {
		return nil, err
	}
	items := make([]listItem, 0, len(all))
	for _, l := range all {
		it := listItem{LU: l.name, PendingFences: len(l.pending), Revision: l.revision}
		if !l.changed.IsZero() {
			it.Changed = l.lastChange()
		}
		if l.err != nil {
			it.Error = l.err.Error()
			items = append(items, it)
			continue
		}
		s := l.state
		it.Generation, it.Registrations, it.PTPLA = s.Generation, len(s.Registrations), s.APTPL
		for _, q := range s.UnitAttentions {
			it.UnitAttentions += len(q.Conditions)
		}
		if s.Reservation != nil {
			t := s.Reservation.Type
			var k uint64
			it.Holder, k = holder(s)
			it.HolderKey, it.Type, it.TypeName = hexKey(k), &t, typeName(t)
		}
		items = append(items, it)
	}
	if e.o.json {
		return map[string]any{"lus": items}, nil
	}
	if len(items) == 0 {
		fmt.Fprintln(e.stdout, "no LU in the store")
		return nil, nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LU\tGEN\tREGS\tHOLDER\tKEY\tTYPE\tCHANGED")
	for i, it := range items {
		if it.Error != "" {
			fmt.Fprintf(tw, "%s\t?\t?\tcannot decode: %s\t\t\t%s\n", it.LU, it.Error, all[i].lastChange())
			continue
		}
		h, k, t := "-", "-", "-"
		if it.Type != nil {
			h, k, t = it.Holder, it.HolderKey, shortType(*it.Type)
		}
		fmt.Fprintf(tw, "%s\t0x%x\t%d\t%s\t%s\t%s\t%s\n", it.LU, it.Generation, it.Registrations, h, k, t, all[i].lastChange())
	}
	return nil, tw.Flush()
}
