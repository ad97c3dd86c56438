package config

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"

	"github.com/prhelper/prhelper/internal/backend"
)

// Kinds a rule may name, as package device names them.
var knownKinds = []string{"file", "scsi-disk", "scsi-generic", "dm-multipath", "dm", "nvme", "partition", "other"}

// Config is a parsed configuration file. Empty strings mean "not set".
type Config struct {
	Backend   backend.Name
	DB        string
	Initiator string
	Listen    []Listen
	Rules     []Rule

	// The etcd store, instead of DB: client URLs (comma-separated in the file, as
	// etcdctl takes them), key prefix, and the TLS files named as etcdctl names them.
	EtcdEndpoints                 []string
	EtcdPrefix                    string
	EtcdCACert, EtcdCert, EtcdKey string
	// Fence is the fencing policy of emulated logical units (none, kill,
	// exec:PATH; checked by the daemon) and FenceTimeout its time limit as a
	// Go duration ("10s").
	Fence        string
	FenceTimeout string
	// FenceLeaseTTL and FenceHost are --fence-lease-ttl and --fence-host
	// (fencing across hosts with the etcd store).
	FenceLeaseTTL string
	FenceHost     string
	// VinitKey is --vinit-key: the vinit backend's host key on the real LUN
	// (checked by ParseVinitKey); "" means the derived one.
	VinitKey string
	// Metrics is where Prometheus metrics are served (HOST:PORT or
	// unix:PATH, checked by ParseMetrics); "" is off.
	Metrics string
	// MaxRegistrations bounds the registrations of one emulated logical unit
	// (pr.Profile.MaxRegistrations); 0 means the daemon's default.
	MaxRegistrations int

	// Who may connect (docs/security.md §2): the mode and group of the socket
	// files the helper creates (octal and name or number, checked by the
	// daemon), and allow-lists of peer uids and gids (comma-separated names or
	// numbers). PeerExe is the QEMU binaries the peer identity policy accepts
	// (comma-separated paths or patterns, or "any"; docs/security.md §3).
	SocketMode  string
	SocketGroup string
	AllowUID    string
	AllowGID    string
	PeerExe     string
	// Sandbox is "on" or "off" (docs/security.md §4).
	Sandbox string
}

// Listen is one extra listening socket.
type Listen struct {
	Path      string
	Initiator string // identity policy; "" means the default
	Port      uint16 // relative target port identifier; 0 means 1
}

// Rule chooses a backend for the devices it matches. Empty conditions match
// everything.
type Rule struct {
	WWID, Path, Kind string       // shell patterns
	Backend          backend.Name // "" keeps the default backend
	ID               string       // logical-unit identity to use instead of the device's
	Line             int          // where it was written, for --explain
}

// Matches reports whether the rule applies to a device of this kind, wwid and
// path.
func (r Rule) Matches(kind, wwid, p string) bool {
	return glob(r.Kind, kind) && glob(r.WWID, wwid) && glob(r.Path, p)
}

func glob(pattern, s string) bool {
	if pattern == "" {
		return true
	}
	ok, err := path.Match(pattern, s)
	return err == nil && ok
}

// String writes the rule back in the file's syntax.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString("rule")
	for _, kv := range [][2]string{{"kind", r.Kind}, {"wwid", r.WWID}, {"path", r.Path}, {"backend", string(r.Backend)}, {"id", r.ID}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	return b.String()
}

// Parse reads a configuration; name is used in error messages ("file:line: …").
func Parse(r io.Reader, name string) (*Config, error) {
	c := &Config{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		text, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(text)
		if len(f) == 0 {
			continue
		}
		if err := c.directive(f, line); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return c, nil
}

func (c *Config) directive(f []string, line int) error {
	one := func() (string, error) {
		if len(f) != 2 {
			return "", fmt.Errorf("%s takes one value", f[0])
		}
		return f[1], nil
	}
	var err error
	switch f[0] {
	case "backend":
		var v string
		if v, err = one(); err == nil {
			c.Backend, err = backend.ParseName(v)
		}
	case "db":
		if c.DB, err = one(); err == nil && !strings.HasPrefix(c.DB, "/") {
			err = fmt.Errorf("db path %q must be absolute", c.DB)
		}
	case "initiator":
		c.Initiator, err = one()
	case "etcd-endpoints":
		var v string
		if v, err = one(); err == nil {
			c.EtcdEndpoints, err = ParseEndpoints(v)
		}
	case "etcd-prefix":
		if c.EtcdPrefix, err = one(); err == nil && !strings.HasSuffix(c.EtcdPrefix, "/") {
			err = fmt.Errorf("etcd-prefix %q must end with /", c.EtcdPrefix)
		}
	case "etcd-cacert", "etcd-cert", "etcd-key":
		var v string
		if v, err = one(); err == nil && !strings.HasPrefix(v, "/") {
			err = fmt.Errorf("%s path %q must be absolute", f[0], v)
		}
		switch f[0] {
		case "etcd-cacert":
			c.EtcdCACert = v
		case "etcd-cert":
			c.EtcdCert = v
		default:
			c.EtcdKey = v
		}
	case "fence":
		c.Fence, err = one()
	case "fence-timeout":
		c.FenceTimeout, err = one()
	case "fence-lease-ttl":
		c.FenceLeaseTTL, err = one()
	case "fence-host":
		c.FenceHost, err = one()
	case "vinit-key":
		if c.VinitKey, err = one(); err == nil {
			_, err = ParseVinitKey(c.VinitKey)
		}
	case "metrics":
		if c.Metrics, err = one(); err == nil {
			_, _, err = ParseMetrics(c.Metrics)
		}
	case "max-registrations":
		var v string
		if v, err = one(); err == nil {
			c.MaxRegistrations, err = ParseMaxRegistrations(v)
		}
	case "socket-mode":
		c.SocketMode, err = one()
	case "socket-group":
		c.SocketGroup, err = one()
	case "allow-uid":
		c.AllowUID, err = one()
	case "allow-gid":
		c.AllowGID, err = one()
	case "peer-exe":
		c.PeerExe, err = one()
	case "sandbox":
		if c.Sandbox, err = one(); err == nil && c.Sandbox != "on" && c.Sandbox != "off" {
			err = fmt.Errorf("sandbox %q: want on or off", c.Sandbox)
		}
	case "listen":
		if len(f) < 2 {
			return fmt.Errorf("listen needs a socket path")
		}
		var l Listen
		if l, err = parseListen(f[1], f[2:]); err == nil {
			c.Listen = append(c.Listen, l)
		}
	case "rule":
		var r Rule
		if r, err = parseRule(f[1:], line); err == nil {
			c.Rules = append(c.Rules, r)
		}
	default:
		err = fmt.Errorf("unknown directive %q (backend, db, initiator, listen, rule, fence, fence-timeout, fence-lease-ttl, fence-host, vinit-key, metrics, max-registrations, socket-mode, socket-group, allow-uid, allow-gid, peer-exe, sandbox, etcd-…)", f[0])
	}
	return err
}

func parseRule(kvs []string, line int) (Rule, error) {
	r := Rule{Line: line}
	if len(kvs) == 0 {
		return r, fmt.Errorf("rule needs conditions and a backend= or id=")
	}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return r, fmt.Errorf("rule: %q is not key=value", kv)
		}
		if _, err := path.Match(v, ""); err != nil && (k == "wwid" || k == "path" || k == "kind") {
			return r, fmt.Errorf("rule: bad pattern %s=%q: %w", k, v, err)
		}
		switch k {
		case "wwid":
			r.WWID = v
		case "path":
			r.Path = v
		case "kind":
			if !knownKind(v) {
				return r, fmt.Errorf("rule: unknown kind %q (one of: %s)", v, strings.Join(knownKinds, ", "))
			}
			r.Kind = v
		case "backend":
			n, err := backend.ParseName(v)
			if err != nil {
				return r, fmt.Errorf("rule: %w", err)
			}
			r.Backend = n
		case "id":
			r.ID = v
		default:
			return r, fmt.Errorf("rule: unknown key %q (wwid, path, kind, backend, id)", k)
		}
	}
	if r.Backend == "" && r.ID == "" {
		return r, fmt.Errorf("rule does nothing: give backend= or id=")
	}
	return r, nil
}

func knownKind(k string) bool {
	for _, n := range knownKinds {
		if ok, _ := path.Match(k, n); ok {
			return true
		}
	}
	return false
}

// ParseListen parses the --listen flag's value: PATH[,initiator=POLICY][,port=N].
func ParseListen(s string) (Listen, error) {
	parts := strings.Split(s, ",")
	return parseListen(parts[0], parts[1:])
}

func parseListen(p string, opts []string) (Listen, error) {
	l := Listen{Path: p}
	if !strings.HasPrefix(p, "/") {
		return l, fmt.Errorf("listen: socket path %q must be absolute", p)
	}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		if !ok || v == "" {
			return l, fmt.Errorf("listen: %q is not key=value", o)
		}
		switch k {
		case "initiator":
			l.Initiator = v
		case "port":
			n, err := strconv.ParseUint(v, 0, 16)
			if err != nil || n == 0 {
				return l, fmt.Errorf("listen: port %q is not a relative target port identifier 1..65535", v)
			}
			l.Port = uint16(n)
		default:
			return l, fmt.Errorf("listen: unknown option %q (initiator, port)", k)
		}
	}
	return l, nil
}

// ParseEndpoints splits a comma-separated list of etcd client URLs and checks that
// each is http:// or https:// with a host.
func ParseEndpoints(v string) ([]string, error) {
	var eps []string
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("etcd endpoint %q: want http://HOST:PORT or https://HOST:PORT", e)
		}
		eps = append(eps, e)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("no etcd endpoint in %q", v)
	}
	return eps, nil
}

// ParseMetrics checks where metrics are to be served: "unix:PATH" with an
// absolute PATH (network "unix"), else HOST:PORT (network "tcp").
func ParseMetrics(v string) (network, addr string, err error) {
	if p, ok := strings.CutPrefix(v, "unix:"); ok {
		if !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("metrics socket path %q must be absolute", p)
		}
		return "unix", p, nil
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return "", "", fmt.Errorf("metrics address %q: want HOST:PORT (127.0.0.1:9851) or unix:PATH", v)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", "", fmt.Errorf("metrics address %q: bad port %q", v, port)
	}
	return "tcp", net.JoinHostPort(host, port), nil
}

// ParseVinitKey parses a vinit-key value: the host's reservation key on the
// real LUN (docs/virtual-initiators.md §2), 0x-prefixed hexadecimal or
// decimal, at most 64 bits and not 0 (0 is not a reservation key, SPC-4
// §5.13.7).
func ParseVinitKey(v string) (uint64, error) {
	digits, base := v, 10
	if h, ok := strings.CutPrefix(strings.ToLower(v), "0x"); ok {
		digits, base = h, 16
	}
	k, err := strconv.ParseUint(digits, base, 64)
	if err != nil || strings.Contains(digits, "_") {
		return 0, fmt.Errorf("vinit-key %q: want a 64-bit key, 0x-prefixed hexadecimal or decimal", v)
	}
	if k == 0 {
		return 0, fmt.Errorf("vinit-key %q: 0 is not a reservation key", v)
	}
	return k, nil
}

// ParseMaxRegistrations parses a max-registrations value: a whole number from 1
// to 1,000,000.
func ParseMaxRegistrations(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1_000_000 {
		return 0, fmt.Errorf("max-registrations %q: want a whole number from 1 to 1000000", v)
	}
	return n, nil
}
