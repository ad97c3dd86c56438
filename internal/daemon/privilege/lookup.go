package privilege

import (
	"fmt"
	"os/user"
	"strconv"
)

// LookupUser resolves the -u/--user argument as qemu-pr-helper does: first as a
// user name (the passwd database; os/user reads /etc/passwd in a CGO_ENABLED=0
// build), else as a decimal uid. gid is the user's primary group when the user is
// known to the passwd database, -1 otherwise. qemu-pr-helper itself uses only the
// uid and keeps the current gid unless -g is given; the daemon decides whether to
// use gid.
func LookupUser(s string) (uid, gid int, err error) {
	if s == "" {
		return -1, -1, fmt.Errorf("invalid user %q", s)
	}
	if u, lerr := user.Lookup(s); lerr == nil {
		uid, err1 := parseID(u.Uid)
		gid, err2 := parseID(u.Gid)
		if err1 != nil || err2 != nil {
			return -1, -1, fmt.Errorf("invalid user %q: passwd entry has uid %q gid %q", s, u.Uid, u.Gid)
		}
		return uid, gid, nil
	}
	uid, err = parseID(s)
	if err != nil {
		return -1, -1, fmt.Errorf("invalid user %q: no such user and not a numeric uid", s)
	}
	gid = -1
	if u, lerr := user.LookupId(s); lerr == nil {
		if g, err := parseID(u.Gid); err == nil {
			gid = g
		}
	}
	return uid, gid, nil
}

// LookupGroup resolves the -g/--group argument as qemu-pr-helper does: first as a
// group name (the group database), else as a decimal gid.
func LookupGroup(s string) (gid int, err error) {
	if s == "" {
		return -1, fmt.Errorf("invalid group %q", s)
	}
	if g, lerr := user.LookupGroup(s); lerr == nil {
		gid, err := parseID(g.Gid)
		if err != nil {
			return -1, fmt.Errorf("invalid group %q: group entry has gid %q", s, g.Gid)
		}
		return gid, nil
	}
	gid, err = parseID(s)
	if err != nil {
		return -1, fmt.Errorf("invalid group %q: no such group and not a numeric gid", s)
	}
	return gid, nil
}

// parseID parses a decimal uid or gid. 4294967295 is refused: it is (uid_t)-1,
// which setuid/setgid and chown read as "unchanged".
func parseID(s string) (int, error) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return -1, err
	}
	if v == 1<<32-1 {
		return -1, fmt.Errorf("id %s is reserved", s)
	}
	return int(v), nil
}
