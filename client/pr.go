package client

import (
	"context"
	"fmt"

	"github.com/prhelper/prhelper/scsi"
	"github.com/prhelper/prhelper/wire"
)

// The PR IN helpers below send one PERSISTENT RESERVE IN (SPC-4 §6.15) with the
// given allocation length and decode the data when the status is GOOD. They
// always return the reply when the helper answered, so callers can report the
// status and sense; the decoded value is nil otherwise. A decode failure returns
// the reply, a nil value and an error wrapping scsi.ErrMalformed.

// ReadKeys sends PR IN READ KEYS.
func (c *Client) ReadKeys(ctx context.Context, fd int, allocLen uint16) (*wire.Reply, *scsi.Keys, error) {
	return prIn(ctx, c, fd, scsi.SAReadKeys, allocLen, scsi.DecodeKeys)
}

// ReadReservation sends PR IN READ RESERVATION.
func (c *Client) ReadReservation(ctx context.Context, fd int, allocLen uint16) (*wire.Reply, *scsi.Reservation, error) {
	return prIn(ctx, c, fd, scsi.SAReadReservation, allocLen, scsi.DecodeReservation)
}

// ReportCapabilities sends PR IN REPORT CAPABILITIES.
func (c *Client) ReportCapabilities(ctx context.Context, fd int, allocLen uint16) (*wire.Reply, *scsi.Capabilities, error) {
	return prIn(ctx, c, fd, scsi.SAReportCapabilities, allocLen, scsi.DecodeCapabilities)
}

// ReadFullStatus sends PR IN READ FULL STATUS.
func (c *Client) ReadFullStatus(ctx context.Context, fd int, allocLen uint16) (*wire.Reply, *scsi.FullStatus, error) {
	return prIn(ctx, c, fd, scsi.SAReadFullStatus, allocLen, scsi.DecodeFullStatus)
}

func prIn[T any](ctx context.Context, c *Client, fd int, sa byte, allocLen uint16, decode func([]byte) (T, error)) (*wire.Reply, *T, error) {
	cdb := scsi.PRInCDB(sa, allocLen)
	rep, err := c.Do(ctx, cdb, fd, nil)
	if err != nil {
		return nil, nil, err
	}
	if rep.Status != scsi.StatusGood {
		return rep, nil, nil
	}
	v, err := decode(rep.Data)
	if err != nil {
		return rep, nil, fmt.Errorf("%s: %w", scsi.CommandName(cdb[:]), err)
	}
	return rep, &v, nil
}

// PROut sends one PERSISTENT RESERVE OUT (SPC-4 §6.16) with service action sa,
// scope and type, and param as the parameter list (see scsi.PROutParams and
// scsi.RegisterMoveParams). The helper protocol frames the list on CDB bytes 7-8,
// so it is limited to wire.MaxData bytes.
func (c *Client) PROut(ctx context.Context, fd int, sa, scope, typ byte, param []byte) (*wire.Reply, error) {
	if len(param) > wire.MaxData {
		return nil, fmt.Errorf("%w: parameter list of %d bytes exceeds %d", ErrRequest, len(param), wire.MaxData)
	}
	return c.Do(ctx, scsi.PROutCDB(sa, scope, typ, uint32(len(param))), fd, param)
}
