// Package mpathconf reads as much of multipath-tools' configuration
// (/etc/multipath.conf and the drop-ins in /etc/multipath/conf.d) as it takes
// to answer one question: which reservation_key applies to a multipath map,
// and is it a fixed key, the word "file", or unset. It also reads the prkeys
// file where multipathd keeps the keys of "file" maps.
//
// prhelper's dm-multipath backend needs the answer because multipathd and
// libmpathpersist act on it: with a key set, multipathd registers that key on
// every new or reinstated path of the map, and libmpathpersist refuses a
// REGISTER whose key differs (mpathpersist(8): "the reservation_key attribute
// must be defined in the /etc/multipath.conf file. Otherwise the multipathd
// daemon will not check for persistent reservation for newly discovered paths
// or reinstated paths").
//
// It is written from multipath.conf(5) (multipath-tools 0.9.x), and, where the
// man page is silent, from reading multipath-tools' libmultipath (GPL; no code
// taken). What it follows:
//
//   - SYNTAX: "<attribute> and <value> must be on a single line"; a value is
//     one word or one double-quoted string in which '#' and '!' are ordinary
//     and "" is a quote; outside quotes '#' and '!' start a comment; "Opening
//     braces ('{') must follow the (sub)section name on the same line. Closing
//     braces ('}') … must be the only non-whitespace character on the line."
//     Keywords are case-sensitive.
//   - DESCRIPTION: drop-ins ending in .conf "are read in alphabetical order,
//     after reading /etc/multipath.conf … If a keyword occurs in the same
//     section in multiple files, the last occurrence will take precedence".
//   - "defaults section", reservation_key: "the service action reservation key
//     used by mpathpersist … If the --param-aptpl option is used when
//     registering the key with mpathpersist, :aptpl must be appended to the
//     end of the reservation key. Alternatively, this can be set to file,
//     which will store the RESERVATION KEY registered by mpathpersist in the
//     prkeys_file … The prkeys file will automatically keep track of whether
//     the key was registered with --param-aptpl. The default is: <unset>".
//   - "multipaths section": its attributes "take precedence over all other
//     configuration settings, including those from the overrides section";
//     reservation_key is in its attribute list; several multipath
//     subsections for one WWID "are merged, and settings from later entries
//     take precedence"; the wwid must match exactly.
//   - "devices section" and "overrides section": their attribute lists do not
//     include reservation_key (all_tg_pt is there; reservation_key is not).
//     libmultipath's select_reservation_key agrees: multipaths section, then
//     defaults, then none. So the vendor and product of the paths never
//     matter for the key, and a reservation_key written under devices or
//     overrides does nothing; it is reported in Config.Warnings.
//
// The key syntax (ParseKey) and the prkeys file format (ParsePRKeys) are not
// in the man page; their doc comments say what libmultipath accepts.
//
// Checked against multipath-tools 0.9.4 (Debian 12) in the storage lab with
// `multipath -t` and `multipathd getprkey map M` on a real map: a
// multipaths entry beats defaults; reservation_key under overrides or a
// device is "invalid keyword" and ignored; "12" is 0x12; "0x0" is accepted
// and getprkey answers "none"; "0" fails the whole main file ("error parsing
// config file"); drop-ins override the main file, each drop-in starts at the
// top level, and 30.conf.bak is not read; config_dir is ignored ("ignoring
// deprecated option"); prkeys_file is honoured (deprecated); setprkey,
// setprkey with ":aptpl" and unsetprkey write "0x…", "0X…" and "#X…" lines.
//
// Lines are read as libmultipath reads them, loose syntax included (a
// section name with its '{' on the next line, a '}' with nothing to close, a
// section left open at the end of a file, an unterminated quote running to
// the end of the line, an unknown top-level section whose lines count at the
// top level), each noted in Config.Warnings. Where libmultipath's reading
// moves or drops settings against the evident intent of the file, this
// package returns a *SyntaxError with file and line instead: a one-line
// section ("multipath { wwid X }", whose wwid libmultipath drops and whose
// '}' it ignores), any other text after a brace or brace after text, an
// unknown section inside a known one (libmultipath does not enter it, so its
// '}' ends the enclosing section early), a section name followed by a word
// other than '{', an unparsable reservation_key, and a missing or extra
// value for reservation_key, wwid or prkeys_file.
//
// Parse, ParseKey and ParsePRKeys are pure; Load, LoadDir and LoadPRKeys add
// the file system.
package mpathconf
