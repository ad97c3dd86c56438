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
// and where the prkeys file is. Build it with Parse, Load or LoadDir; the
// zero value is an empty configuration (no key anywhere).
type Config struct {
	// Files are the files read, in the order read (Parse records its name).
	Files []string
	// Warnings are lines multipath-tools ignores or reads loosely, and
	// settings releases read differently, as "file:line: text", for the log.
	Warnings []string

	defaults   Key            // last reservation_key of any defaults section
	multipaths map[string]Key // by exact WWID: last reservation_key of its multipath sections

	prkeysFile string // last prkeys_file of any defaults section
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
// (PRKeysFile, ParsePRKeys) or asked of multipathd (its getprkey command).
func (c *Config) ReservationKey(wwid string) Key {
	if k, ok := c.multipaths[wwid]; ok {
		return k
	}
	return c.defaults
}

// PRKeysFile returns the file multipathd keeps "file" keys in: the defaults
// section's prkeys_file if set, else DefaultPRKeysFile. multipath-tools
// 0.9.4 (Debian 12) honours prkeys_file with a deprecation warning (lab:
// setprkey wrote the configured file); multipath.conf(5) says it "will be
// removed in a future release", after which the built-in path is used.
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
	if err := c.parse(r, name); err != nil {
		return nil, err
	}
	return c, nil
}

// maxLine bounds one configuration line. multipath-tools reads lines into a
// 1024-byte buffer (parser.h MAXBUF); longer lines are not configuration.
const maxLine = 64 << 10

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
)

// childSection returns the kind of the section name opens inside parent (nil
// for the top level) and whether multipath.conf(5) describes it there.
// libmultipath looks keywords up per level the same way: "device" opens a
// section inside devices, blacklist and blacklist_exceptions only.
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
		return 0, false
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
	return 0, false
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

// parse reads one file into c.
func (c *Config) parse(r io.Reader, name string) error {
	c.Files = append(c.Files, name)
	p := parser{c: c, file: name}
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
	// libmultipath: "missing '}' at end of <file>"; each file starts at
	// the top level again.
	for i := len(p.stack) - 1; i >= 0; i-- {
		f := p.stack[i]
		p.warnf("section %q opened at line %d not closed before end of file", f.name, f.line)
		p.close()
	}
	return nil
}

type parser struct {
	c     *Config
	file  string
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
// them like whitespace. A string left open runs to the end of the line, as
// libmultipath reads it ("missing closing quotes"); unclosed reports that.
func tokenize(line string) (toks []token, unclosed bool) {
	i := 0
	for i < len(line) {
		ch := line[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\v' || ch == '\f' || ch >= 0x80:
			i++
		case ch == '#' || ch == '!':
			return toks, false
		case ch == '{' || ch == '}':
			toks = append(toks, token{text: line[i : i+1]})
			i++
		case ch == '"':
			var b strings.Builder
			i++
			for {
				j := strings.IndexByte(line[i:], '"')
				if j < 0 {
					b.WriteString(line[i:])
					return append(toks, token{text: b.String(), quoted: true}), true
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
	return toks, false
}

func isSep(ch byte) bool {
	switch ch {
	case ' ', '\t', '\v', '\f', '#', '!', '{', '}', '"':
		return true
	}
	return ch >= 0x80
}

// parseLine reads one line the way libmultipath's process_stream does
// (verified against multipath-tools 0.9.4 in the storage lab): a line
// starting with '}' ends the current section; a section name known at this
// level opens its section; anything else is an attribute of the current
// section, or an unknown keyword that is ignored. Where that reading and the
// evident intent of the line part ways in a way that moves or drops
// settings, it returns a *SyntaxError instead; where they agree, it reads
// the line as libmultipath does and notes it in Warnings.
func (p *parser) parseLine(line string) error {
	// libmultipath's read_line ends a line at '\r' (strtok on "\n\r").
	if i := strings.IndexByte(line, '\r'); i >= 0 {
		line = line[:i]
	}
	if strings.IndexByte(line, 0) >= 0 {
		return p.errorf("NUL byte: not a text file")
	}
	toks, unclosed := tokenize(line)
	if len(toks) == 0 {
		return nil
	}
	if unclosed {
		p.warnf("missing closing '\"': the value runs to the end of the line")
	}
	// multipath.conf(5): "Opening braces ('{') must follow the (sub)section
	// name on the same line. Closing braces ('}') … must be the only
	// non-whitespace character on the line." libmultipath ignores whatever
	// follows a brace and any brace after the value, so "multipath { wwid
	// X }" on one line leaves the section open without its wwid, and
	// "} defaults {" never opens the second section: refuse those.
	for i, t := range toks {
		switch {
		case !t.is("{") && !t.is("}"):
		case t.is("}") && i == 0 && len(toks) > 1:
			return p.errorf("unexpected %q after '}': a closing brace must be alone on its line", toks[1].text)
		case t.is("{") && i == 1 && len(toks) > 2:
			return p.errorf("unexpected %q after '{': put each attribute on its own line", toks[2].text)
		case i > 1 || (i == 1 && t.is("}")):
			return p.errorf("%q after %q: a brace must be alone on its line ('}') or follow a section name ('{')", t.text, toks[0].text)
		}
	}
	first := toks[0]
	switch {
	case first.is("}"):
		p.close()
		return nil
	case first.is("{"):
		// libmultipath: "invalid keyword '{'"; a section name on the line
		// before has opened its section already.
		p.warnf("'{' alone on a line ignored (it belongs after a section name, on the same line)")
		return nil
	case first.quoted:
		p.warnf("quoted keyword %q ignored", first.text)
		return nil
	}
	opens := len(toks) == 2 && toks[1].is("{")
	parent := p.top()
	if kind, known := childSection(parent, first.text); known {
		if !opens && len(toks) > 1 {
			return p.errorf("section %q must be followed by '{', found %q", first.text, toks[1].text)
		}
		if !opens {
			// libmultipath: "missing '{'", and it enters the section anyway.
			p.warnf("section %q without '{' on its line; read as opened here, as multipath-tools does", first.text)
		}
		p.stack = append(p.stack, &frame{kind: kind, name: first.text, line: p.line})
		return nil
	}
	if opens {
		if parent != nil {
			// libmultipath does not enter a section it does not know, so
			// that section's '}' ends the enclosing one and the rest of it
			// is read at the level above (its reservation_key ignored).
			return p.errorf("unknown section %q in section %s: multipath-tools does not enter it, and its '}' would end %s early", first.text, parent.name, parent.name)
		}
		p.warnf("unknown section %q at the top level: not entered; its lines are read at the top level, as multipath-tools does", first.text)
		return nil
	}
	return p.attribute(toks)
}

// close ends the innermost open section; a multipath section's entry takes
// effect then.
func (p *parser) close() {
	f := p.top()
	if f == nil {
		p.warnf("'}' without an open section ignored")
		return
	}
	p.stack = p.stack[:len(p.stack)-1]
	if f.kind != secMultipath {
		return
	}
	if !f.wwidSet {
		// multipath.conf(5): wwid is mandatory; libmultipath drops the entry
		// ("multipaths config section missing wwid").
		if f.keySet {
			p.warnf("multipath section opened at line %d has no wwid: its reservation_key applies to no map", f.line)
		} else {
			p.warnf("multipath section opened at line %d has no wwid", f.line)
		}
		return
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
}

// value returns the single value of an attribute this package interprets.
// libmultipath skips an attribute without a value and uses the first of
// several; both are more likely typos than intent, so they are errors here.
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
	// cannot parse ("error parsing config file", multipath -t exits 1) and
	// skips it in a drop-in; either way it is the operator's to fix.
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
			if _, err := p.value(toks); err != nil {
				return err
			}
			// multipath-tools 0.9.4 (lab): "ignoring deprecated option
			// \"config_dir\"".
			p.warnf("config_dir ignored, as multipath-tools 0.9.4 and later ignore it (LoadDir reads another directory)")
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
	default:
		if name == "reservation_key" {
			p.warnf("reservation_key in section %s ignored: multipath-tools reads it only in defaults and multipaths/multipath (multipath.conf(5), propsel.c select_reservation_key)", f.name)
		}
	}
	return nil
}
