package privilege

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Status is the credential part of /proc/<pid>/status (proc(5)). Uid and Gid are
// the real, effective, saved set and filesystem ids in the kernel's order. The
// capability sets are bit masks, bit n for capability n (linux/capability.h).
type Status struct {
	Uid        [4]int
	Gid        [4]int
	Groups     []int
	CapInh     uint64
	CapPrm     uint64
	CapEff     uint64
	CapBnd     uint64
	CapAmb     uint64
	NoNewPrivs bool
}

// ParseStatus parses the contents of a /proc/<pid>/status or
// /proc/<pid>/task/<tid>/status file. Lines it does not need are ignored; a
// needed line that is malformed or missing is an error.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	seen := make(map[string]bool)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		val = strings.TrimSpace(val)
		var err error
		switch key {
		case "Uid":
			err = parseIDs4(val, &s.Uid)
		case "Gid":
			err = parseIDs4(val, &s.Gid)
		case "Groups":
			s.Groups, err = parseGroups(val)
		case "CapInh":
			s.CapInh, err = parseCapMask(val)
		case "CapPrm":
			s.CapPrm, err = parseCapMask(val)
		case "CapEff":
			s.CapEff, err = parseCapMask(val)
		case "CapBnd":
			s.CapBnd, err = parseCapMask(val)
		case "CapAmb":
			s.CapAmb, err = parseCapMask(val)
		case "NoNewPrivs":
			switch val {
			case "0":
				s.NoNewPrivs = false
			case "1":
				s.NoNewPrivs = true
			default:
				err = fmt.Errorf("want 0 or 1")
			}
		default:
			continue
		}
		if err != nil {
			return Status{}, fmt.Errorf("parse status line %s: %q: %w", key, val, err)
		}
		if seen[key] {
			return Status{}, fmt.Errorf("parse status: duplicate %s line", key)
		}
		seen[key] = true
	}
	if err := sc.Err(); err != nil {
		return Status{}, fmt.Errorf("parse status: %w", err)
	}
	// CapAmb (Linux 4.3) and NoNewPrivs (Linux 4.10) are optional so that older
	// kernels parse; they read as zero there.
	for _, k := range [...]string{"Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd"} {
		if !seen[k] {
			return Status{}, fmt.Errorf("parse status: no %s line", k)
		}
	}
	return s, nil
}

func parseIDs4(val string, out *[4]int) error {
	f := strings.Fields(val)
	if len(f) != 4 {
		return fmt.Errorf("want 4 ids, got %d", len(f))
	}
	for i, v := range f {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return err
		}
		out[i] = int(n)
	}
	return nil
}

func parseGroups(val string) ([]int, error) {
	f := strings.Fields(val)
	if len(f) == 0 {
		return nil, nil
	}
	g := make([]int, len(f))
	for i, v := range f {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, err
		}
		g[i] = int(n)
	}
	return g, nil
}

// parseCapMask parses the kernel's 16-hex-digit capability mask.
func parseCapMask(val string) (uint64, error) {
	if len(val) == 0 || len(val) > 16 {
		return 0, fmt.Errorf("want 1 to 16 hex digits")
	}
	return strconv.ParseUint(val, 16, 64)
}

// ReadStatus reads and parses /proc/<pid>/status. The process-level file shows the
// thread group leader's credentials only; use ReadThreadStatuses to see every thread.
func ReadStatus(pid int) (Status, error) {
	return readStatusFile(fmt.Sprintf("/proc/%d/status", pid))
}

// ReadThreadStatuses reads /proc/<pid>/task/<tid>/status for every thread of the
// process, keyed by thread id. Capabilities are per thread, so this is what shows
// whether a drop reached all of them.
func ReadThreadStatuses(pid int) (map[int]Status, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	out := make(map[int]Status, len(tids))
	for _, tid := range tids {
		s, err := readStatusFile(filepath.Join(dir, strconv.Itoa(tid), "status"))
		if os.IsNotExist(err) {
			continue // thread exited meanwhile
		}
		if err != nil {
			return nil, err
		}
		out[tid] = s
	}
	return out, nil
}

func readStatusFile(path string) (Status, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Status{}, err
	}
	s, err := ParseStatus(b)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
