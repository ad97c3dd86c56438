package mpathconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SyntaxError is a configuration line this package will not guess about. Its
// message names the file and line ("/etc/multipath.conf:12: …").
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// Config is what this package reads of multipath-tools' configuration: the
// reservation keys of the defaults section and of the multipaths section,
// and the defaults that say where the drop-in directory and the prkeys file
// are. Build it with Parse, Load or LoadDir; the zero value is an empty
// configuration (no key anywhere).
type Config struct {
	// Files are the files read, in the order read (Parse records its name).
	Files []string
	// Warnings are lines multipath-tools ignores or treats differently
	// across releases, as "file:line: text", for the log.
	Warnings []string

	defaults   Key            // last reservation_key of any defaults section
	multipaths map[string]Key // by exact WWID: last reservation_key of its multipath sections

	configDir    string // config_dir of the main file's defaults
	configDirSet bool
	prkeysFile   string // prkeys_file of any defaults section
}

// ReservationKey returns the reservation key multipath-tools applies to the
// map with this WWID: that of its multipaths/multipath section if one sets
// reservation_key, else that of the defaults section, else None.
//
// The order is libmultipath's select_reservation_key (propsel.c): the
// multipath section, then the defaults; multipath.conf(5) lists
// reservation_key among the defaults keywords and the multipath subsection's
// attributes, but not among those of the devices or overrides sections, so
// neither vendor/product nor overrides matter (a reservation_key there is
// reported in Warnings and ignored, as multipath-tools ignores it). WWIDs
// match exactly, as the man page says of the multipaths section.
//
// A Key of Source File still has to be looked up in the prkeys file
// (PRKeysFile, ParsePRKeys) or asked of multipathd ("map M getprkey").
func (c *Config) ReservationKey(wwid string) Key {
	if k, ok := c.multipaths[wwid]; ok {
		return k
	}
	return c.defaults
}

// PRKeysFile returns the file multipathd keeps "file" keys in: the defaults
// section's prkeys_file if set, else DefaultPRKeysFile. Releases up to 0.9.4
// (Debian 12) honour prkeys_file; later ones deprecate it and always use the
// built-in path (multipath.conf(5): "(Deprecated) This option is deprecated,
// and will be removed in a future release").
func (c *Config) PRKeysFile() string {
	if c.prkeysFile != "" {
		return c.prkeysFile
	}
	return DefaultPRKeysFile
}

// Parse reads one configuration file from r; name is used in errors and
// Where. It is Load without the file system: the drop-in directory is not
// read.
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{}
	if err := c.parse(r, name, true); err != nil {
		return nil, err
	}
	return c, nil
}

// maxLine bounds one configuration line. multipath-tools reads lines into a
// 1024-byte buffer (parser.h MAXBUF); longer lines are not configuration.
const maxLine = 64 << 10

// maxDepth bounds section nesting; the deepest real nesting is 2
// (devices/device, multipaths/multipath, overrides/protocol).
const maxDepth = 32

type section int

const (
	secDefaults section = iota
	secBlacklist
	secDevices
	secDevice
	secMultipaths
	secMultipath
	secOverrides
	secProtocol
	secUnknown // skipped: a section multipath.conf(5) does not describe here
)

// childSection returns the kind of the section name opens inside parent (nil
// for the top level) and whether multipath.conf(5) describes it there.
func childSection(parent *frame, name string) (section, bool) {
	if parent == nil {
		switch name {
		case "defaults":
			return secDefaults, true
		case "blacklist", "blacklist_exceptions":
			return secBlacklist, true
		case "devices":
			return secDevices, true
		case "multipaths":
			return secMultipaths, true
		case "overrides":
			return secOverrides, true
		}
		return secUnknown, false
	}
	switch {
	case parent.kind == secBlacklist && name == "device",
		parent.kind == secDevices && name == "device":
		return secDevice, true
	case parent.kind == secMultipaths && name == "multipath":
		return secMultipath, true
	case parent.kind == secOverrides && name == "protocol":
		return secProtocol, true
	}
	return secUnknown, false
}

type frame struct {
	kind section
	name string
	line int

	// multipath subsection being read
	wwid    string
	wwidSet bool
	key     Key
	keySet  bool
}

type token struct {
	text   string
	quoted bool
}

func (t token) is(s string) bool { return !t.quoted && t.text == s }

// parse reads one file into c. main says whether it is the main file, the
// only one whose config_dir counts.
func (c *Config) parse(r io.Reader, name string, main bool) error {
	c.Files = append(c.Files, name)
	p := parser{c: c, file: name, main: main}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for sc.Scan() {
		p.line++
		if err := p.parseLine(sc.Text()); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return &SyntaxError{name, p.line + 1, fmt.Sprintf("line longer than %d bytes", maxLine)}
		}
		return fmt.Errorf("read %s: %w", name, err)
	}
	if n := len(p.stack); n > 0 {
		f := p.stack[n-1]
		return &SyntaxError{name, f.line, fmt.Sprintf("section %q is not closed: '}' missing before end of file", f.name)}
	}
	return nil
}

type parser struct {
	c     *Config
	file  string
	main  bool
	line  int
	stack []*frame
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{p.file, p.line, fmt.Sprintf(format, args...)}
}

func (p *parser) warnf(format string, args ...any) {
	p.c.Warnings = append(p.c.Warnings, fmt.Sprintf("%s:%d: ", p.file, p.line)+fmt.Sprintf(format, args...))
}

func (p *parser) where() string { return fmt.Sprintf("%s:%d", p.file, p.line) }

func (p *parser) top() *frame {
	if len(p.stack) == 0 {
		return nil
	}
	return p.stack[len(p.stack)-1]
}

// tokenize splits a line as multipath.conf(5) SYNTAX describes: words
// separated by whitespace; '{' and '}' are tokens of their own; '#' or '!'
// outside quotes starts a comment; a double-quoted string is one value in
// which whitespace, '#' and '!' are ordinary and "" stands for one '"'.
// Bytes outside ASCII separate words, as libmultipath's alloc_strvec treats
// them like whitespace.
func tokenize(line string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(line) {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f' || ch >= 0x80:
			i++
		case ch == '#' || ch == '!':
			return toks, nil
		case ch == '{' || ch == '}':
			toks = append(toks, token{text: line[i : i+1]})
			i++
		case ch == '"':
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					return nil, errors.New("missing closing '\"'")
				}
				b.WriteString(line[i : i+j])
				i += j + 1
				if i < len(line) && line[i] == '"' { // "" inside a string
					b.WriteByte('"')
					i++
					continue
				}
				break
			}
			toks = append(toks, token{text: b.String(), quoted: true})
		default:
			j := i
			for j < len(line) && !isSep(line[j]) {
				j++
			}
			toks = append(toks, token{text: line[i:j]})
			i = j
		}
	}
	return toks, nil
}

func isSep(ch byte) bool {
	switch ch {
	case ' ', '\t', '\v', '\f', '#', '!', '{', '}', '"':
		return true
	}
	return ch >= 0x80
}

func (p *parser) parseLine(line string) error {
	// libmultipath's read_line ends a line at '\r' (strtok on "\n\r").
	if i := strings.IndexByte(line, '\r'); i >= 0 {
		line = line[:i]
	}
	if strings.IndexByte(line, 0) >= 0 {
		return p.errorf("NUL byte: not a text file")
	}
	toks, err := tokenize(line)
	if err != nil {
		return p.errorf("%v", err)
	}
	if len(toks) == 0 {
		return nil
	}
	// Braces: "name {" opens, a lone "}" closes (multipath.conf(5):
	// "Opening braces ('{') must follow the (sub)section name on the same
	// line. Closing braces ('}') … must be the only non-whitespace
	// character on the line"). libmultipath ignores anything after them
	// with a warning, so "multipath { wwid X }" on one line would leave the
	// section open and drop the wwid: refuse what it would misread.
	for i, t := range toks {
		switch {
		case t.is("}") && i > 0:
			return p.errorf("'}' must be alone on its line")
		case t.is("}") && len(toks) > 1:
			return p.errorf("unexpected %q after '}': a closing brace must be alone on its line", toks[1].text)
		case t.is("{") && i != 1:
			if i == 0 {
				return p.errorf("'{' must follow a section name on the same line")
			}
			return p.errorf("'{' must directly follow the section name %q", toks[0].text)
		case t.is("{") && len(toks) > 2:
			return p.errorf("unexpected %q after '{': put each attribute on its own line", toks[2].text)
		}
	}
	if toks[0].is("}") {
		return p.close()
	}
	if toks[0].quoted {
		return p.errorf("a keyword cannot be quoted: %q", toks[0].text)
	}
	if len(toks) == 2 && toks[1].is("{") {
		return p.open(toks[0].text)
	}
	return p.attribute(toks)
}

func (p *parser) open(name string) error {
	if len(p.stack) >= maxDepth {
		return p.errorf("sections nested more than %d deep", maxDepth)
	}
	parent := p.top()
	kind, known := childSection(parent, name)
	if !known && (parent == nil || parent.kind != secUnknown) {
		where := "at the top level"
		if parent != nil {
			where = "in section " + parent.name
		}
		// libmultipath logs "invalid keyword" and does not enter the
		// section; skipping it as a whole is the reading that cannot move
		// later attributes into another section.
		p.warnf("unknown section %q %s skipped", name, where)
	}
	p.stack = append(p.stack, &frame{kind: kind, name: name, line: p.line})
	return nil
}

func (p *parser) close() error {
	f := p.top()
	if f == nil {
		return p.errorf("'}' without an open section")
	}
	p.stack = p.stack[:len(p.stack)-1]
	if f.kind != secMultipath {
		return nil
	}
	if !f.wwidSet {
		// multipath.conf(5): wwid is mandatory; an entry without one
		// matches no map.
		if f.keySet {
			p.warnf("multipath section opened at line %d has no wwid: its reservation_key applies to no map", f.line)
		} else {
			p.warnf("multipath section opened at line %d has no wwid", f.line)
		}
		return nil
	}
	// multipath.conf(5): "If there are multiple multipath subsections
	// matching a given WWID, the contents of these sections are merged, and
	// settings from later entries take precedence"; a later entry without
	// reservation_key keeps an earlier one's (config.c merge_mpe).
	if f.keySet {
		if p.c.multipaths == nil {
			p.c.multipaths = make(map[string]Key)
		}
		p.c.multipaths[f.wwid] = f.key
	}
	return nil
}

// value returns the single value of an attribute this package interprets.
func (p *parser) value(toks []token) (string, error) {
	switch {
	case len(toks) < 2:
		return "", p.errorf("%s needs a value", toks[0].text)
	case len(toks) > 2:
		return "", p.errorf("%s takes one value, found extra %q (quote a value that has spaces)", toks[0].text, toks[2].text)
	}
	return toks[1].text, nil
}

func (p *parser) key(toks []token) (Key, error) {
	v, err := p.value(toks)
	if err != nil {
		return Key{}, err
	}
	// libmultipath rejects the whole main file for a reservation_key it
	// cannot parse ("error parsing config file") and skips it in a
	// drop-in; either way it is the operator's to fix, not ours to guess.
	k, err := ParseKey(v)
	if err != nil {
		return Key{}, p.errorf("%v", err)
	}
	k.Where = p.where()
	return k, nil
}

func (p *parser) attribute(toks []token) error {
	name := toks[0].text
	f := p.top()
	if _, known := childSection(f, name); known {
		return p.errorf("section %q must be followed by '{' on the same line", name)
	}
	if f == nil {
		p.warnf("unknown keyword %q at the top level ignored", name)
		return nil
	}
	switch f.kind {
	case secDefaults:
		switch name {
		case "reservation_key":
			k, err := p.key(toks)
			if err != nil {
				return err
			}
			p.c.defaults = k
		case "config_dir":
			v, err := p.value(toks)
			if err != nil {
				return err
			}
			if !p.main {
				p.warnf("config_dir is only read from the main configuration file; ignored here")
				return nil
			}
			p.c.configDir, p.c.configDirSet = v, true
		case "prkeys_file":
			v, err := p.value(toks)
			if err != nil {
				return err
			}
			p.c.prkeysFile = v
		}
	case secMultipath:
		switch name {
		case "wwid":
			v, err := p.value(toks)
			if err != nil {
				return err
			}
			f.wwid, f.wwidSet = v, true
		case "reservation_key":
			k, err := p.key(toks)
			if err != nil {
				return err
			}
			f.key, f.keySet = k, true
		}
	case secUnknown:
		// inside a skipped section
	default:
		if name == "reservation_key" {
			p.warnf("reservation_key in section %s is ignored: multipath-tools reads it only in defaults and multipaths/multipath (multipath.conf(5), propsel.c select_reservation_key)", f.name)
		}
	}
	return nil
}
