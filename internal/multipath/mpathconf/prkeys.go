package mpathconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// prkeyLen is the length of a key in the prkeys file: "0x" and 16 hex digits.
const prkeyLen = 18

// ParsePRKeys reads a prkeys file, where multipathd keeps the keys of maps
// whose reservation_key is "file", and returns them by WWID; name is used in
// errors and Where. Keys have Source File.
//
// The format is multipathd's (libmultipath prkey.c, verified against
// multipath-tools' source; the file's header says "Format: prkey wwid"):
// header lines start with '#'; an entry is the key as "0x" and exactly 16
// hex digits (multipathd writes them in lower case), one space, and the WWID
// to the end of the line. A
// capital "0X" marks a key registered with APTPL. multipathd removes an
// entry by overwriting its first character with '#', and writes a new key
// for the WWID over the first line naming it, so the first line naming a
// WWID decides: if that line is a removed entry, the WWID has no key, as
// multipathd's own lookup answers.
//
// A line that is neither a comment nor an entry is an error with its line
// number: the file is multipathd's, and a line it could not have written
// means the file is damaged.
func ParsePRKeys(r io.Reader, name string) (map[string]Key, error) {
	keys := make(map[string]Key)
	seen := make(map[string]bool)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] == '#' {
			// A removed entry keeps its shape behind the '#'.
			if len(line) > prkeyLen+1 && line[prkeyLen] == ' ' &&
				(line[1] == 'x' || line[1] == 'X') && allHex(line[2:prkeyLen]) {
				seen[line[prkeyLen+1:]] = true
			}
			continue
		}
		k, wwid, err := parsePRKeyLine(line)
		if err != nil {
			return nil, &SyntaxError{name, n, err.Error()}
		}
		if seen[wwid] {
			continue
		}
		seen[wwid] = true
		k.Where = fmt.Sprintf("%s:%d", name, n)
		keys[wwid] = k
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &SyntaxError{name, n + 1, fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return keys, nil
}

func parsePRKeyLine(line string) (Key, string, error) {
	if len(line) <= prkeyLen+1 || line[prkeyLen] != ' ' || line[prkeyLen+1] == ' ' {
		return Key{}, "", fmt.Errorf("malformed prkeys line %q: want 0x<16 hex digits> <wwid>", line)
	}
	ks, wwid := line[:prkeyLen], line[prkeyLen+1:]
	if ks[0] != '0' || (ks[1] != 'x' && ks[1] != 'X') || !allHex(ks[2:]) {
		return Key{}, "", fmt.Errorf("malformed prkeys key %q: want 0x and 16 hex digits", ks)
	}
	v, err := strconv.ParseUint(ks[2:], 16, 64)
	if err != nil {
		return Key{}, "", fmt.Errorf("malformed prkeys key %q: %v", ks, err)
	}
	return Key{Source: File, Value: v, APTPL: ks[1] == 'X'}, wwid, nil
}

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHex(s[i]) {
			return false
		}
	}
	return true
}
