package access

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// DefaultLogInterval is how often refusals of one peer uid are logged at most.
const DefaultLogInterval = time.Minute

// maxTracked bounds the refusal records kept for the log: past it, records
// older than the interval are forgotten.
const maxTracked = 4096

// Gate applies a Policy to accepted connections and logs refusals: the first
// refusal of a peer uid at once, later ones at most once per Interval, with
// the number refused since the last line.
type Gate struct {
	Policy   Policy
	Log      *slog.Logger
	Interval time.Duration    // 0 means DefaultLogInterval
	Now      func() time.Time // nil means time.Now

	mu   sync.Mutex
	seen map[uint32]*refusals
}

type refusals struct {
	logged     time.Time
	suppressed int
}

// Admit reports whether conn's peer may be served. A connection whose peer's
// credentials cannot be read is refused unless the policy admits everybody.
func (g *Gate) Admit(conn *net.UnixConn) bool {
	if g.Policy.Open() {
		return true
	}
	c, err := PeerCred(conn)
	if err != nil {
		g.log().Warn("peer refused: credentials unreadable", "err", err)
		return false
	}
	if g.Policy.Admits(c) {
		return true
	}
	g.refused(c)
	return false
}

func (g *Gate) refused(c Cred) {
	now := g.now()
	interval := g.Interval
	if interval <= 0 {
		interval = DefaultLogInterval
	}
	g.mu.Lock()
	if g.seen == nil {
		g.seen = make(map[uint32]*refusals)
	}
	r := g.seen[c.UID]
	if r != nil && now.Sub(r.logged) < interval {
		r.suppressed++
		g.mu.Unlock()
		return
	}
	suppressed := 0
	if r != nil {
		suppressed = r.suppressed
	}
	if len(g.seen) >= maxTracked {
		for uid, old := range g.seen {
			if now.Sub(old.logged) >= interval {
				delete(g.seen, uid)
			}
		}
	}
	g.seen[c.UID] = &refusals{logged: now}
	g.mu.Unlock()
	attrs := []any{"peer_pid", c.PID, "peer_uid", c.UID, "peer_gid", c.GID, "allowed", g.Policy.String()}
	if suppressed > 0 {
		attrs = append(attrs, "refused_since_last_line", suppressed)
	}
	g.log().Warn("peer refused: not on the allow-list; connection closed without a reply", attrs...)
}

func (g *Gate) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

func (g *Gate) log() *slog.Logger {
	if g.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return g.Log
}
