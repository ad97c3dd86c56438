package multipathd

import (
	"context"
	"fmt"
	"strings"
)

// pathsFormat is the "show paths raw format" string Paths sends. The fields are
// multipathd path wildcards present in every release since 0.8 (print.c's
// path table; multipathd(8) "Path format wildcards"): %d device name, %D
// major:minor, %t device-mapper state, %T checker state, %o device state, %m
// map. "raw" drops the header and the column padding, and each path ends with
// "\n". The separator '|' appears in none of the fixed-vocabulary fields and
// the format has no blank (multipathd would split it); the one free-form
// field, the map alias, comes last so a '|' in it stays in it.
const pathsFormat = "%d|%D|%t|%T|%o|%m"

// mapsFormat is the "show maps raw format" string Maps sends: %d dm-N, %t
// device-mapper state, %w WWID, %n alias (last, as above).
const mapsFormat = "%d|%t|%w|%n"

// Values multipathd prints for a path's device-mapper state (%t).
const (
	DMStateActive = "active"
	DMStateFailed = "failed"
)

// Values multipathd prints for a path's checker state (%T); "undef" for a
// path not in a map or not checked yet.
const (
	CheckerReady     = "ready"
	CheckerFaulty    = "faulty"
	CheckerShaky     = "shaky"
	CheckerGhost     = "ghost"
	CheckerPending   = "i/o pending"
	CheckerTimeout   = "i/o timeout"
	CheckerDelayed   = "delayed"
	CheckerUndefined = "undef"
)

// orphanMap is what %m prints for a path that belongs to no map.
const orphanMap = "[orphan]"

// Path is one path device as multipathd sees it.
type Path struct {
	Dev          string // kernel name (%d), e.g. "sdb"
	DevT         string // "major:minor" (%D), e.g. "8:16"
	Map          string // alias of its map (%m); "" when multipathd says "[orphan]"
	DMState      string // device-mapper path state (%t): "active", "failed" or "undef"
	CheckerState string // path checker state (%T): CheckerReady, CheckerFaulty, ...
	DevState     string // device state (%o): "running", "offline" ("unknown" for orphans in some releases)
	Online       bool   // DevState == "running"
}

// Usable reports whether I/O can go down the path now: device-mapper has it
// active and its checker says ready or ghost (standby, as ALUA standby ports
// report), the states libmpathpersist sends PR commands through.
func (p Path) Usable() bool {
	return p.DMState == DMStateActive && (p.CheckerState == CheckerReady || p.CheckerState == CheckerGhost)
}

// Map is one multipath map as multipathd sees it.
type Map struct {
	Name    string // alias (%n), e.g. "mpatha", or the WWID without user_friendly_names
	WWID    string // %w
	Sysfs   string // dm-N (%d)
	DMState string // device-mapper state (%t): "active" or "suspend"
}

// Paths lists every path multipathd monitors ("show paths raw format ...",
// a list command: no root needed).
func (c *Client) Paths(ctx context.Context) ([]Path, error) {
	cmd := "show paths raw format " + pathsFormat
	reply, err := c.Command(ctx, cmd)
	if err != nil {
		return nil, err
	}
	paths, err := ParsePaths(reply)
	if err != nil {
		return nil, &CommandError{Cmd: cmd, Reply: reply, Err: err}
	}
	return paths, nil
}

// MapPaths returns the paths of map mapName, in multipathd's order.
func (c *Client) MapPaths(ctx context.Context, mapName string) ([]Path, error) {
	if err := ValidateName(mapName); err != nil {
		return nil, err
	}
	all, err := c.Paths(ctx)
	if err != nil {
		return nil, err
	}
	var out []Path
	for _, p := range all {
		if p.Map == mapName {
			out = append(out, p)
		}
	}
	return out, nil
}

// Maps lists every map multipathd monitors ("show maps raw format ...", a
// list command: no root needed).
func (c *Client) Maps(ctx context.Context) ([]Map, error) {
	cmd := "show maps raw format " + mapsFormat
	reply, err := c.Command(ctx, cmd)
	if err != nil {
		return nil, err
	}
	maps, err := ParseMaps(reply)
	if err != nil {
		return nil, &CommandError{Cmd: cmd, Reply: reply, Err: err}
	}
	return maps, nil
}

// ParsePaths reads the reply to "show paths raw format %d|%D|%t|%T|%o|%m":
// one line per path. multipathd answers a list with nothing in it with its
// generic success reply "ok\n", which is an empty list.
func ParsePaths(reply string) ([]Path, error) {
	lines := replyLines(reply)
	paths := make([]Path, 0, len(lines))
	for i, line := range lines {
		f := strings.SplitN(line, "|", 6)
		if len(f) != 6 {
			return nil, fmt.Errorf("%w: path line %d: %d fields, want 6: %q", ErrUnexpectedReply, i+1, len(f), shorten(line, 80))
		}
		p := Path{Dev: f[0], DevT: f[1], DMState: f[2], CheckerState: f[3], DevState: f[4], Map: f[5]}
		if p.Dev == "" || strings.ContainsAny(p.Dev, " /") {
			return nil, fmt.Errorf("%w: path line %d: device name %q", ErrUnexpectedReply, i+1, p.Dev)
		}
		if !isDevT(p.DevT) {
			return nil, fmt.Errorf("%w: path line %d: dev_t %q", ErrUnexpectedReply, i+1, p.DevT)
		}
		if p.Map == orphanMap {
			p.Map = ""
		}
		p.Online = p.DevState == "running"
		paths = append(paths, p)
	}
	return paths, nil
}

// ParseMaps reads the reply to "show maps raw format %d|%t|%w|%n"; "ok\n"
// is an empty list, as for ParsePaths.
func ParseMaps(reply string) ([]Map, error) {
	lines := replyLines(reply)
	maps := make([]Map, 0, len(lines))
	for i, line := range lines {
		f := strings.SplitN(line, "|", 4)
		if len(f) != 4 {
			return nil, fmt.Errorf("%w: map line %d: %d fields, want 4: %q", ErrUnexpectedReply, i+1, len(f), shorten(line, 80))
		}
		m := Map{Sysfs: f[0], DMState: f[1], WWID: f[2], Name: f[3]}
		if m.Name == "" {
			return nil, fmt.Errorf("%w: map line %d: empty name", ErrUnexpectedReply, i+1)
		}
		maps = append(maps, m)
	}
	return maps, nil
}

// replyLines splits a list reply into its non-empty lines; "ok" alone is the
// empty list.
func replyLines(reply string) []string {
	if strings.TrimSpace(reply) == "ok" {
		return nil
	}
	var lines []string
	for _, line := range strings.Split(reply, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		lines = append(lines, line)
	}
	return lines
}

// isDevT reports whether s is "major:minor" in decimal.
func isDevT(s string) bool {
	maj, min, ok := strings.Cut(s, ":")
	return ok && isDigits(maj) && isDigits(min)
}

func isDigits(s string) bool {
	if s == "" || len(s) > 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
