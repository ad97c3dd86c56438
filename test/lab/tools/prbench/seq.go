package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/prhelper/prhelper/wire"
)

// step is one command of a mixed sequence: the initiator (0-based) that sends
// it, the 16-byte CDB and the PR OUT parameter list.
type step struct {
	path  int
	cdb   [wire.CDBSize]byte
	param []byte
}

// readSeq parses a sequence written by prgen -print -dump: one step a line,
// "PATH CDB-HEX PARAM-HEX" with "-" for no parameter list. Blank lines and
// lines starting with # are skipped.
func readSeq(r io.Reader) ([]step, error) {
	var seq []step
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want 3 fields, got %d", ln, len(f))
		}
		path, err := strconv.Atoi(f[0])
		if err != nil || path < 0 {
			return nil, fmt.Errorf("line %d: bad initiator index %q", ln, f[0])
		}
		var st step
		st.path = path
		cdb, err := hex.DecodeString(f[1])
		if err != nil || len(cdb) != wire.CDBSize {
			return nil, fmt.Errorf("line %d: CDB must be %d bytes of hex", ln, wire.CDBSize)
		}
		copy(st.cdb[:], cdb)
		if err := wire.ValidateCDB(st.cdb[:]); err != nil {
			return nil, fmt.Errorf("line %d: %w", ln, err)
		}
		if f[2] != "-" {
			if st.param, err = hex.DecodeString(f[2]); err != nil {
				return nil, fmt.Errorf("line %d: parameter list: %v", ln, err)
			}
		}
		seq = append(seq, st)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(seq) == 0 {
		return nil, fmt.Errorf("empty sequence")
	}
	return seq, nil
}
