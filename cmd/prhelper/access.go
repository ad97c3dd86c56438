package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/prhelper/prhelper/internal/daemon/access"
	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/daemon/identity"
	"github.com/prhelper/prhelper/internal/daemon/privilege"
)

// Socket file modes when --socket-mode is not given (docs/security.md §2).
const (
	defaultSocketMode      os.FileMode = 0o600
	defaultGroupSocketMode os.FileMode = 0o660
)

// accessSettings say who may connect: the socket files' mode and group, the
// peer allow-list, and the QEMU binaries of the peer identity policy.
type accessSettings struct {
	mode       os.FileMode
	modeSet    bool
	gid        int // -1: the helper's own
	policy     access.Policy
	peerExe    string // the list as given; "" means the default
	peerExeOff bool
}

func (a *accessSettings) load(c *config.Config, o *options) error {
	a.gid = -1
	if v := firstSet(o.socketMode, c.SocketMode); v != "" {
		m, err := strconv.ParseUint(v, 8, 32)
		if err != nil || m > 0o777 {
			return fmt.Errorf("--socket-mode %q: want an octal mode such as 0660", v)
		}
		a.mode, a.modeSet = os.FileMode(m), true
	}
	if v := firstSet(o.socketGroup, c.SocketGroup); v != "" {
		gid, err := privilege.LookupGroup(v)
		if err != nil {
			return fmt.Errorf("--socket-group: %w", err)
		}
		a.gid = gid
	}
	if !a.modeSet {
		a.mode = defaultSocketMode
		if a.gid != -1 {
			a.mode = defaultGroupSocketMode
		}
	}
	lookupUID := func(s string) (int, error) {
		uid, _, err := privilege.LookupUser(s)
		return uid, err
	}
	var err error
	if v := firstSet(o.allowUID, c.AllowUID); v != "" {
		if a.policy.UIDs, err = access.ParseIDs(v, lookupUID); err != nil {
			return fmt.Errorf("--allow-uid: %w", err)
		}
	}
	if v := firstSet(o.allowGID, c.AllowGID); v != "" {
		if a.policy.GIDs, err = access.ParseIDs(v, privilege.LookupGroup); err != nil {
			return fmt.Errorf("--allow-gid: %w", err)
		}
	}
	a.peerExe = firstSet(o.peerExe, c.PeerExe)
	// Check the list now: a typo is an error at start, not on every connection.
	l, err := a.exeList()
	if err != nil {
		return fmt.Errorf("--peer-exe: %w", err)
	}
	a.peerExeOff = l == nil
	l.Close()
	return nil
}

// exeList opens the peer executable list; nil when the check is off.
func (a *accessSettings) exeList() (*identity.ExeList, error) {
	if a.peerExe == "" {
		return identity.NewExeList(identity.DefaultPeerExe)
	}
	return identity.ParsePeerExe(a.peerExe)
}
