package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/prhelper/prhelper/internal/backend/emulate"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/pr"
)

// clearResult is what clear did.
type clearResult struct {
	LU                   string   `json:"lu"`
	Changed              bool     `json:"changed"`
	GenerationBefore     uint32   `json:"generation_before"`
	Generation           uint32   `json:"generation"`
	RegistrationsRemoved int      `json:"registrations_removed"`
	ReservationReleased  bool     `json:"reservation_released"`
	UnitAttentions       []string `json:"unit_attention_for"`
}

var errGone = errors.New("the LU was removed meanwhile")

// clear runs an administrator's CLEAR (pr.Clear) on one LU as one store
// update: the LU's state as it is at that moment, whatever changed since the
// confirmation, loses its reservation and registrations; the fence records
// kept with it stay.
func (e *env) clear(ctx context.Context, st store.Store, name string) (any, error) {
	l, err := getLU(ctx, st, name)
	if err != nil {
		return nil, err
	}
	if l.err != nil {
		return nil, fail(exitMalformed, fmt.Errorf("LU %s: %w", name, l.err))
	}
	if !e.o.force {
		h, _ := holder(l.state)
		res := "no reservation"
		if l.state.Reservation != nil {
			res = "a " + typeName(l.state.Reservation.Type) + " reservation held by " + h
		}
		fmt.Fprintf(e.stderr, "LU %s: generation 0x%x, %d registration(s), %s.\n", name, l.state.Generation, len(l.state.Registrations), res)
		fmt.Fprintf(e.stderr, "Clear it as PERSISTENT RESERVE OUT CLEAR would? Every registered I_T nexus gets RESERVATIONS PREEMPTED. [y/N] ")
		line, _ := bufio.NewReader(e.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return nil, fail(exitSyntax, errors.New("not confirmed: nothing changed (--force clears without asking)"))
		}
	}
	var out clearResult
	err = st.Update(ctx, emulate.KeyPrefix+name, func(cur []byte) ([]byte, bool, error) {
		out = clearResult{LU: name, UnitAttentions: []string{}}
		if cur == nil {
			return nil, false, errGone
		}
		s, pending, err := decodeValue(cur)
		if err != nil {
			return nil, false, err
		}
		out.GenerationBefore, out.RegistrationsRemoved, out.ReservationReleased = s.Generation, len(s.Registrations), s.Reservation != nil
		for _, r := range s.Registrations {
			out.UnitAttentions = append(out.UnitAttentions, r.Nexus.String())
		}
		out.Changed = pr.Clear(profile(), s)
		out.Generation = s.Generation
		if !out.Changed {
			return nil, false, nil
		}
		next, err := encodeValue(s, pending)
		return next, err == nil, err
	})
	switch {
	case errors.Is(err, errGone):
		return nil, fail(exitNotFound, fmt.Errorf("LU %s: %w", name, errGone))
	case err != nil:
		return nil, err
	}
	if e.o.json {
		return out, nil
	}
	if !out.Changed {
		fmt.Fprintf(e.stdout, "LU %s has no registration: nothing to clear (generation 0x%x)\n", name, out.Generation)
		return nil, nil
	}
	fmt.Fprintf(e.stdout, "LU %s cleared: generation 0x%x -> 0x%x, %d registration(s) removed", name, out.GenerationBefore, out.Generation, out.RegistrationsRemoved)
	if out.ReservationReleased {
		fmt.Fprintf(e.stdout, ", reservation released")
	}
	fmt.Fprintf(e.stdout, "\n")
	for _, n := range out.UnitAttentions {
		fmt.Fprintf(e.stdout, "  unit attention RESERVATIONS PREEMPTED pending for %s\n", n)
	}
	return nil, nil
}
