package multipathd

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is the longest map name accepted: device-mapper names are at
// most DM_NAME_LEN (128, <linux/dm-ioctl.h>) bytes including the NUL.
const MaxNameLen = 127

// ValidateName checks that name can be passed to multipathd as a command
// parameter unchanged. multipathd splits a command into words with
// libmultipath's alloc_strvec: blanks and every byte outside ASCII separate
// words, '"' toggles quoting, '{' and '}' are words of their own, and an
// unquoted '!' or '#' ends the command as a comment. A name with any of those
// (or a control byte, DEL or a single quote, refused as a precaution) would
// reach another map or none, so it is refused here.
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes, device-mapper names have at most %d", ErrInvalidName, len(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case b <= ' ' || b >= 0x7f:
			return fmt.Errorf("%w %q: byte %#02x at offset %d (multipathd splits commands at blanks and non-ASCII bytes)", ErrInvalidName, name, b, i)
		case b == '"' || b == '\'' || b == '!' || b == '#' || b == '{' || b == '}':
			return fmt.Errorf("%w %q: %q at offset %d is special to multipathd's command parser", ErrInvalidName, name, b, i)
		}
	}
	return nil
}

// FormatPRKey returns key as setprkey takes it: "0x" and 16 hex digits, with
// ":aptpl" appended when aptpl is set. multipathd's parse_prkey_flags accepts
// an optional "0x", at most 16 hex digits and the optional ":aptpl" flag (the
// same form the prkeys file and multipath.conf's reservation_key use).
func FormatPRKey(key uint64, aptpl bool) string {
	s := fmt.Sprintf("0x%016x", key)
	if aptpl {
		s += ":aptpl"
	}
	return s
}

// ParsePRKey reads a getprkey reply: "none\n" when the map has no key, else
// "0x<hex>\n" or "0x<hex>:aptpl\n" (printed with "0x%" PRIx64, so without
// leading zeros). Releases before a 2020 fix (dm-devel, Martin Wilck) cut
// the ":aptpl" suffix off; 0.9.4 prints it.
func ParsePRKey(reply string) (key uint64, aptpl, set bool, err error) {
	s := strings.TrimSpace(reply)
	if s == "none" {
		return 0, false, false, nil
	}
	body, flag, hasFlag := strings.Cut(s, ":")
	if hasFlag {
		if flag != "aptpl" {
			return 0, false, false, fmt.Errorf("%w: prkey flag %q", ErrUnexpectedReply, flag)
		}
		aptpl = true
	}
	hex, ok := strings.CutPrefix(body, "0x")
	if !ok {
		hex, ok = strings.CutPrefix(body, "0X")
	}
	if !ok || hex == "" || len(hex) > 16 || strings.TrimLeft(hex, "0123456789abcdefABCDEF") != "" {
		return 0, false, false, fmt.Errorf("%w: prkey %q", ErrUnexpectedReply, body)
	}
	key, err = strconv.ParseUint(hex, 16, 64)
	if err != nil {
		return 0, false, false, fmt.Errorf("%w: prkey %q: %v", ErrUnexpectedReply, body, err)
	}
	if key == 0 {
		// multipathd prints "none" for a zero key.
		return 0, false, false, fmt.Errorf("%w: zero prkey %q", ErrUnexpectedReply, body)
	}
	return key, aptpl, true, nil
}

// PRStatus is multipathd's persistent-reservation flag for a map (prflag):
// whether it believes the map's paths are registered, so that it registers
// paths that appear or come back.
type PRStatus int

// PRStatus values.
const (
	// PRStatusUnknown: multipathd has not determined the status yet
	// ("unknown", 0.9.5 and later).
	PRStatusUnknown PRStatus = iota
	// PRStatusUnset: not registered ("unset"; "0" up to 0.9.4).
	PRStatusUnset
	// PRStatusSet: registered ("set"; "1" up to 0.9.4).
	PRStatusSet
)

// String returns the word multipathd 0.9.5+ uses for s.
func (s PRStatus) String() string {
	switch s {
	case PRStatusUnknown:
		return "unknown"
	case PRStatusUnset:
		return "unset"
	case PRStatusSet:
		return "set"
	}
	return fmt.Sprintf("PRStatus(%d)", int(s))
}

// ParsePRStatus reads a getprstatus (or getprhold) reply. Up to
// multipath-tools 0.9.4 (Debian 12) getprstatus prints the flag as a number,
// "0" or "1", without a newline; 0.9.5 (2023/03, "libmultipath: make prflag
// an enum") prints "unset\n" or "set\n", and "unknown\n" before multipathd
// has checked the map.
func ParsePRStatus(reply string) (PRStatus, error) {
	switch strings.TrimSpace(reply) {
	case "set", "1":
		return PRStatusSet, nil
	case "unset", "0":
		return PRStatusUnset, nil
	case "unknown":
		return PRStatusUnknown, nil
	}
	return PRStatusUnknown, fmt.Errorf("%w: pr status %q", ErrUnexpectedReply, shorten(reply, 60))
}

// SetPRKey stores key (with the APTPL flag) as the reservation key of map
// mapName in multipathd's prkeys file ("setprkey map <name> key <key>", the
// form libmpathpersist's update_prkey_flags sends). multipathd uses it to
// register paths that appear later only when multipath.conf says
// "reservation_key file"; otherwise it answers "fail" (ErrFailed), as it does
// for an unknown map. A zero key is refused (ErrInvalidKey): to remove the key
// call UnsetPRKey. Needs root.
func (c *Client) SetPRKey(ctx context.Context, mapName string, key uint64, aptpl bool) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	if key == 0 {
		return fmt.Errorf("setprkey map %s: %w: 0 (use UnsetPRKey)", mapName, ErrInvalidKey)
	}
	return c.expectOK(ctx, "setprkey map "+mapName+" key "+FormatPRKey(key, aptpl))
}

// UnsetPRKey removes the map's key from the prkeys file ("unsetprkey map
// <name>"). Needs root.
func (c *Client) UnsetPRKey(ctx context.Context, mapName string) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	return c.expectOK(ctx, "unsetprkey map "+mapName)
}

// GetPRKey returns the reservation key multipathd uses for the map
// ("getprkey map <name>"): from multipath.conf or, with "reservation_key
// file", from the prkeys file. set is false when there is none. Needs root.
func (c *Client) GetPRKey(ctx context.Context, mapName string) (key uint64, aptpl, set bool, err error) {
	if err := ValidateName(mapName); err != nil {
		return 0, false, false, err
	}
	cmd := "getprkey map " + mapName
	reply, err := c.Command(ctx, cmd)
	if err != nil {
		return 0, false, false, err
	}
	key, aptpl, set, err = ParsePRKey(reply)
	if err != nil {
		return 0, false, false, &CommandError{Cmd: cmd, Reply: reply, Err: err}
	}
	return key, aptpl, set, nil
}

// SetPRStatus tells multipathd the map's paths are registered ("setprstatus
// map <name>"), so it registers the map's key on paths that appear or are
// reinstated. libmpathpersist sends it after a successful REGISTER. Needs
// root.
func (c *Client) SetPRStatus(ctx context.Context, mapName string) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	return c.expectOK(ctx, "setprstatus map "+mapName)
}

// UnsetPRStatus clears the flag ("unsetprstatus map <name>"), as
// libmpathpersist does after unregistering. Needs root.
func (c *Client) UnsetPRStatus(ctx context.Context, mapName string) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	return c.expectOK(ctx, "unsetprstatus map "+mapName)
}

// GetPRStatus returns the map's flag ("getprstatus map <name>"); see
// ParsePRStatus for the replies of each version. Needs root.
func (c *Client) GetPRStatus(ctx context.Context, mapName string) (PRStatus, error) {
	return c.getStatus(ctx, "getprstatus", mapName)
}

// SetPRHold tells multipathd this host holds the map's reservation
// ("setprhold map <name>"). Only multipathd from the 0.13 persistent-
// reservation rework on knows it; Debian 12's 0.9.4 answers "fail"
// (ErrFailed, seen in the lab), a daemon that answers with its command
// reference gives ErrUnknownCommand. Needs root.
func (c *Client) SetPRHold(ctx context.Context, mapName string) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	return c.expectOK(ctx, "setprhold map "+mapName)
}

// UnsetPRHold clears the hold flag ("unsetprhold map <name>"); 0.13+ only,
// like SetPRHold. Needs root.
func (c *Client) UnsetPRHold(ctx context.Context, mapName string) error {
	if err := ValidateName(mapName); err != nil {
		return err
	}
	return c.expectOK(ctx, "unsetprhold map "+mapName)
}

// GetPRHold returns the hold flag ("getprhold map <name>", answered like
// getprstatus with "set"/"unset"/"unknown"); 0.13+ only, like SetPRHold.
// Needs root.
func (c *Client) GetPRHold(ctx context.Context, mapName string) (PRStatus, error) {
	return c.getStatus(ctx, "getprhold", mapName)
}

func (c *Client) getStatus(ctx context.Context, verb, mapName string) (PRStatus, error) {
	if err := ValidateName(mapName); err != nil {
		return PRStatusUnknown, err
	}
	cmd := verb + " map " + mapName
	reply, err := c.Command(ctx, cmd)
	if err != nil {
		return PRStatusUnknown, err
	}
	st, err := ParsePRStatus(reply)
	if err != nil {
		return PRStatusUnknown, &CommandError{Cmd: cmd, Reply: reply, Err: err}
	}
	return st, nil
}

// expectOK sends cmd and requires multipathd's success reply "ok\n" (what it
// answers when a handler succeeds without output; libmpathpersist checks for
// the same "ok").
func (c *Client) expectOK(ctx context.Context, cmd string) error {
	reply, err := c.Command(ctx, cmd)
	if err != nil {
		return err
	}
	if strings.TrimSpace(reply) != "ok" {
		return &CommandError{Cmd: cmd, Reply: reply, Err: ErrUnexpectedReply}
	}
	return nil
}
