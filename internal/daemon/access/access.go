package access

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Cred is what the kernel says about a connected peer: its pid, uid and gid at
// connect(2) time (SO_PEERCRED) and its supplementary groups (SO_PEERGROUPS,
// Linux 4.13; nil when the kernel has no such option).
type Cred struct {
	PID    int32
	UID    uint32
	GID    uint32
	Groups []uint32
}

// Policy is an allow-list. A peer is admitted when its uid is in UIDs or its
// primary or a supplementary gid is in GIDs; with both lists empty every peer
// that can open the socket is admitted (the socket file's mode and group then
// decide alone).
type Policy struct {
	UIDs []uint32
	GIDs []uint32
}

// Open reports whether the policy admits everybody.
func (p Policy) Open() bool { return len(p.UIDs) == 0 && len(p.GIDs) == 0 }

// Admits reports whether a peer with credentials c may connect. It is pure.
func (p Policy) Admits(c Cred) bool {
	if p.Open() {
		return true
	}
	if slices.Contains(p.UIDs, c.UID) || slices.Contains(p.GIDs, c.GID) {
		return true
	}
	for _, g := range c.Groups {
		if slices.Contains(p.GIDs, g) {
			return true
		}
	}
	return false
}

// String describes the policy for the start-up log.
func (p Policy) String() string {
	if p.Open() {
		return "any peer"
	}
	var parts []string
	if len(p.UIDs) > 0 {
		parts = append(parts, "uid "+join(p.UIDs))
	}
	if len(p.GIDs) > 0 {
		parts = append(parts, "gid "+join(p.GIDs))
	}
	return strings.Join(parts, " or ")
}

func join(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

// ParseIDs parses a comma-separated list of user or group names or numbers
// ("qemu,107"); lookup turns one name or number into its id (the passwd or
// group database).
func ParseIDs(list string, lookup func(string) (int, error)) ([]uint32, error) {
	var ids []uint32
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		id, err := lookup(s)
		if err != nil {
			return nil, err
		}
		if id < 0 || int64(id) > int64(^uint32(0)-1) {
			return nil, fmt.Errorf("id %q out of range", s)
		}
		if !slices.Contains(ids, uint32(id)) {
			ids = append(ids, uint32(id))
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("empty list %q", list)
	}
	return ids, nil
}
