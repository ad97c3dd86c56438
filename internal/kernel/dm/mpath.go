package dm

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MultipathTable is the table line of a "multipath" target, which is the
// constructor string the map was loaded with (drivers/md/dm-mpath.c
// multipath_status, STATUSTYPE_TABLE):
//
//	<#features> [feature]* <#handler args> [handler [handler arg]*]
//	<#groups> <initial group>
//	  ( <selector> <#selector args> [selector arg]*
//	    <#paths> <#path args> ( <major:minor> [path arg]* )* )*
type MultipathTable struct {
	// Features are the feature words ("queue_if_no_path",
	// "pg_init_retries", "5", ...), values included, as counted.
	Features []string
	// HWHandler is the hardware handler's name followed by its arguments
	// (the kernel counts the name), empty when there is none.
	HWHandler []string
	// InitialGroup is the 1-based number of the group the kernel uses first
	// (the current one, when it has chosen); 0 only when there are no groups.
	InitialGroup int
	Groups       []TableGroup
}

// TableGroup is one priority group of a multipath table.
type TableGroup struct {
	// Selector is the path selector ("service-time", "round-robin",
	// "queue-length", "historical-service-time").
	Selector     string
	SelectorArgs []string
	Paths        []TablePath
}

// TablePath is one path of a priority group in a multipath table.
type TablePath struct {
	Dev Dev
	// Args are the selector's per-path arguments (repeat count, and for
	// service-time the relative throughput).
	Args []string
}

// GroupState is a priority group's state in a multipath status line.
type GroupState byte

// Priority group states (dm-mpath.c multipath_status, STATUSTYPE_INFO).
const (
	// GroupActive is the group I/O currently goes to.
	GroupActive GroupState = 'A'
	// GroupEnabled is a group that may be switched to.
	GroupEnabled GroupState = 'E'
	// GroupDisabled is a bypassed group ("disable_group" message, or a
	// hardware handler's pg_init asking for it).
	GroupDisabled GroupState = 'D'
)

// String names the state.
func (s GroupState) String() string {
	switch s {
	case GroupActive:
		return "active"
	case GroupEnabled:
		return "enabled"
	case GroupDisabled:
		return "disabled"
	}
	return fmt.Sprintf("GroupState(%q)", byte(s))
}

// MultipathStatus is the status line of a "multipath" target
// (dm-mpath.c multipath_status, STATUSTYPE_INFO):
//
//	<#status args> [status arg]* <#handler status args> [handler status arg]*
//	<#groups> <current group>
//	  ( <A|E|D> <#selector status args> [selector status arg]*
//	    <#paths> <#path status args>
//	    ( <major:minor> <A|F> <fail count> [path status arg]* )* )*
//
// The kernel writes "2 <queue_io> <pg_init_count>" as the first field group
// and "0" for the handler status.
type MultipathStatus struct {
	// Features holds the counted map status words: queue_io (1 while I/O is
	// queued for a pending path-group init) and pg_init_count.
	Features []string
	// HWHandler holds the counted handler status words (none today).
	HWHandler []string
	// Group is the 1-based number of the current group, else the next one
	// the kernel will use; 0 only when there are no groups.
	Group  int
	Groups []StatusGroup
}

// StatusGroup is one priority group of a multipath status line.
type StatusGroup struct {
	State          GroupState
	SelectorStatus []string
	Paths          []StatusPath
}

// StatusPath is one path of a priority group in a multipath status line.
type StatusPath struct {
	Dev Dev
	// Active is false for a path the kernel has failed ("F"): I/O does not
	// go to it until multipathd reinstates it.
	Active bool
	// Failures is the path's fail count.
	Failures int
	// SelectorStatus are the selector's per-path status words (for
	// service-time the in-flight size and relative throughput).
	SelectorStatus []string
}

// Path is one path of a multipath map as MergePaths and MultipathPaths
// report it.
type Path struct {
	Dev Dev
	// Group is the 1-based number of the path's priority group, in table
	// order, as the kernel numbers groups (pg_num).
	Group int
	// GroupState is the state of that group.
	GroupState GroupState
	// Active is the kernel's is_active: false when the path has failed.
	Active bool
	// Failures is the kernel's fail_count for the path.
	Failures int
}

// ErrMismatch is wrapped by MergePaths when a table and a status line do not
// describe the same groups and paths.
var ErrMismatch = errors.New("multipath table and status disagree")

// words walks the blank-separated words of a table or status line.
type words struct {
	w []string
	i int
}

func newWords(s string) *words { return &words{w: strings.Fields(s)} }

func (p *words) left() int { return len(p.w) - p.i }

// word returns the next word; what names it in the error.
func (p *words) word(what string) (string, error) {
	if p.i >= len(p.w) {
		return "", fmt.Errorf("%w: line ends before %s (word %d)", ErrMalformed, what, p.i+1)
	}
	p.i++
	return p.w[p.i-1], nil
}

// uint reads a decimal unsigned 32-bit number.
func (p *words) uint(what string) (uint64, error) {
	s, err := p.word(what)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q (word %d) is not a number", ErrMalformed, what, s, p.i)
	}
	return n, nil
}

// count reads a count of items of per words each and checks that the line
// has that many words left, so that no count can make us allocate more than
// the line holds.
func (p *words) count(what string, per uint64) (int, error) {
	n, err := p.uint(what)
	if err != nil {
		return 0, err
	}
	if n*per > uint64(p.left()) {
		return 0, fmt.Errorf("%w: %s %d (word %d) but only %d words follow", ErrMalformed, what, n, p.i, p.left())
	}
	return int(n), nil
}

// list reads a count and that many words.
func (p *words) list(what string) ([]string, error) {
	n, err := p.count(what, 1)
	if err != nil {
		return nil, err
	}
	l := p.w[p.i : p.i+n : p.i+n]
	p.i += n
	return l, nil
}

// take returns the next n words; the caller checked that they are there.
func (p *words) take(n int) []string {
	l := p.w[p.i : p.i+n : p.i+n]
	p.i += n
	return l
}

func (p *words) dev(what string) (Dev, error) {
	s, err := p.word(what)
	if err != nil {
		return Dev{}, err
	}
	d, err := ParseDev(s)
	if err != nil {
		return Dev{}, fmt.Errorf("%s (word %d): %w", what, p.i, err)
	}
	return d, nil
}

func (p *words) end() error {
	if p.left() > 0 {
		return fmt.Errorf("%w: %d unexpected words after the last group, from word %d %q",
			ErrMalformed, p.left(), p.i+1, p.w[p.i])
	}
	return nil
}

// groupHead reads the group count and the initial/current group number, which
// the kernel keeps within 1..count, 0 for a map without groups.
func (p *words) groupHead(minPerGroup uint64) (n, cur int, err error) {
	if n, err = p.count("priority group count", minPerGroup); err != nil {
		return 0, 0, err
	}
	c, err := p.uint("group number")
	if err != nil {
		return 0, 0, err
	}
	if c > uint64(n) || (n > 0 && c == 0) {
		return 0, 0, fmt.Errorf("%w: group number %d (word %d) outside 1..%d", ErrMalformed, c, p.i, n)
	}
	return n, int(c), nil
}

// ParseMultipathTable parses the table line of a "multipath" target (the
// Params of a Target read with table true). It checks the counts and the
// shape, not the values of features or selector arguments, which differ
// between kernel versions.
func ParseMultipathTable(line string) (MultipathTable, error) {
	var t MultipathTable
	p := newWords(line)
	var err error
	if t.Features, err = p.list("feature count"); err != nil {
		return MultipathTable{}, err
	}
	if t.HWHandler, err = p.list("hardware handler count"); err != nil {
		return MultipathTable{}, err
	}
	// A group is at least: selector, #selector args, #paths, #path args.
	n, cur, err := p.groupHead(4)
	if err != nil {
		return MultipathTable{}, err
	}
	t.InitialGroup = cur
	t.Groups = make([]TableGroup, 0, n)
	for g := 1; g <= n; g++ {
		var tg TableGroup
		if tg.Selector, err = p.word("path selector"); err != nil {
			return MultipathTable{}, fmt.Errorf("group %d: %w", g, err)
		}
		if tg.SelectorArgs, err = p.list("selector argument count"); err != nil {
			return MultipathTable{}, fmt.Errorf("group %d: %w", g, err)
		}
		paths, err := p.count("path count", 1)
		if err != nil {
			return MultipathTable{}, fmt.Errorf("group %d: %w", g, err)
		}
		args, err := p.count("path argument count", 0)
		if err != nil {
			return MultipathTable{}, fmt.Errorf("group %d: %w", g, err)
		}
		if uint64(paths)*(1+uint64(args)) > uint64(p.left()) {
			return MultipathTable{}, fmt.Errorf("group %d: %w: %d paths of %d words each but only %d words follow",
				g, ErrMalformed, paths, 1+args, p.left())
		}
		tg.Paths = make([]TablePath, 0, paths)
		for range paths {
			d, err := p.dev("path device")
			if err != nil {
				return MultipathTable{}, fmt.Errorf("group %d: %w", g, err)
			}
			tg.Paths = append(tg.Paths, TablePath{Dev: d, Args: p.take(args)})
		}
		t.Groups = append(t.Groups, tg)
	}
	if err := p.end(); err != nil {
		return MultipathTable{}, err
	}
	return t, nil
}

// ParseMultipathStatus parses the status line of a "multipath" target (the
// Params of a Target read with table false).
func ParseMultipathStatus(line string) (MultipathStatus, error) {
	var s MultipathStatus
	p := newWords(line)
	var err error
	if s.Features, err = p.list("status argument count"); err != nil {
		return MultipathStatus{}, err
	}
	if s.HWHandler, err = p.list("hardware handler status count"); err != nil {
		return MultipathStatus{}, err
	}
	// A group is at least: state, #selector status args, #paths, #path args.
	n, cur, err := p.groupHead(4)
	if err != nil {
		return MultipathStatus{}, err
	}
	s.Group = cur
	s.Groups = make([]StatusGroup, 0, n)
	for g := 1; g <= n; g++ {
		var sg StatusGroup
		st, err := p.word("group state")
		if err != nil {
			return MultipathStatus{}, fmt.Errorf("group %d: %w", g, err)
		}
		if len(st) != 1 || (st[0] != 'A' && st[0] != 'E' && st[0] != 'D') {
			return MultipathStatus{}, fmt.Errorf("group %d: %w: state %q (word %d) is not A, E or D", g, ErrMalformed, st, p.i)
		}
		sg.State = GroupState(st[0])
		if sg.SelectorStatus, err = p.list("selector status count"); err != nil {
			return MultipathStatus{}, fmt.Errorf("group %d: %w", g, err)
		}
		paths, err := p.count("path count", 1)
		if err != nil {
			return MultipathStatus{}, fmt.Errorf("group %d: %w", g, err)
		}
		args, err := p.count("path status count", 0)
		if err != nil {
			return MultipathStatus{}, fmt.Errorf("group %d: %w", g, err)
		}
		if uint64(paths)*(3+uint64(args)) > uint64(p.left()) {
			return MultipathStatus{}, fmt.Errorf("group %d: %w: %d paths of %d words each but only %d words follow",
				g, ErrMalformed, paths, 3+args, p.left())
		}
		sg.Paths = make([]StatusPath, 0, paths)
		for range paths {
			var sp StatusPath
			if sp.Dev, err = p.dev("path device"); err != nil {
				return MultipathStatus{}, fmt.Errorf("group %d: %w", g, err)
			}
			a, err := p.word("path state")
			if err != nil {
				return MultipathStatus{}, fmt.Errorf("group %d: path %s: %w", g, sp.Dev, err)
			}
			switch a {
			case "A":
				sp.Active = true
			case "F":
			default:
				return MultipathStatus{}, fmt.Errorf("group %d: path %s: %w: state %q (word %d) is not A or F",
					g, sp.Dev, ErrMalformed, a, p.i)
			}
			fc, err := p.uint("fail count")
			if err != nil {
				return MultipathStatus{}, fmt.Errorf("group %d: path %s: %w", g, sp.Dev, err)
			}
			sp.Failures = int(fc)
			sp.SelectorStatus = p.take(args)
			sg.Paths = append(sg.Paths, sp)
		}
		s.Groups = append(s.Groups, sg)
	}
	if err := p.end(); err != nil {
		return MultipathStatus{}, err
	}
	return s, nil
}

// MergePaths lists the paths of a multipath map from its table and status:
// the table gives the groups and paths, the status each path's state. Both
// come from the same kernel structure in the same order, so they must list
// the same devices in the same groups; when they do not (the map was reloaded
// between the two reads) the error wraps ErrMismatch.
func MergePaths(t MultipathTable, s MultipathStatus) ([]Path, error) {
	if len(t.Groups) != len(s.Groups) {
		return nil, fmt.Errorf("%w: %d priority groups in the table, %d in the status", ErrMismatch, len(t.Groups), len(s.Groups))
	}
	var paths []Path
	for gi, tg := range t.Groups {
		sg := s.Groups[gi]
		if len(tg.Paths) != len(sg.Paths) {
			return nil, fmt.Errorf("%w: group %d has %d paths in the table, %d in the status",
				ErrMismatch, gi+1, len(tg.Paths), len(sg.Paths))
		}
		for pi, tp := range tg.Paths {
			sp := sg.Paths[pi]
			if tp.Dev != sp.Dev {
				return nil, fmt.Errorf("%w: group %d path %d is %s in the table, %s in the status",
					ErrMismatch, gi+1, pi+1, tp.Dev, sp.Dev)
			}
			paths = append(paths, Path{
				Dev:        tp.Dev,
				Group:      gi + 1,
				GroupState: sg.State,
				Active:     sp.Active,
				Failures:   sp.Failures,
			})
		}
	}
	return paths, nil
}
