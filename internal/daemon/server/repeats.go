package server

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prhelper/prhelper/scsi"
)

// repeats bounds the volume of warnings a client can cause (a flood of protocol
// violations wrote 445 MB of log in 5.5 min, issue 12): the first warning of a
// kind is logged at once; those that follow within the interval are counted and
// logged as one summary line when the interval ends, with the count and the
// attributes of the last one. After a quiet interval the next one is logged at
// once again.
type repeats struct {
	log      *slog.Logger
	interval time.Duration

	mu    sync.Mutex
	kinds map[string]*repeat
}

type repeat struct {
	msg        string
	since      time.Time // start of the current interval
	suppressed int
	last       []any        // attributes of the last suppressed warning
	lastFail   failure      // or, for warnFailure's, the parts they are built from
	lastLog    *slog.Logger // and the logger it came with
	timer      *time.Timer
}

func newRepeats(log *slog.Logger, interval time.Duration) *repeats {
	return &repeats{log: log, interval: interval, kinds: make(map[string]*repeat)}
}

// warn logs msg with attrs on log (nil: the server's logger), or counts it if a
// warning of kind was logged less than the interval ago. kind is made of a
// fixed set of strings (the server's own, command names and sense codes), so
// the map stays small.
func (r *repeats) warn(log *slog.Logger, kind, msg string, attrs ...any) {
	r.warnAt(time.Now(), log, kind, msg, attrs...)
}

// warnAt is warn at time now, for a caller that has just read the clock (a
// request's start): in the lab guest every clock read is a system call
// (docs/performance.md §2.4).
func (r *repeats) warnAt(now time.Time, log *slog.Logger, kind, msg string, attrs ...any) {
	if log == nil {
		log = r.log
	}
	r.mu.Lock()
	k := r.kinds[kind]
	if r.fresh(k, now) {
		r.kinds[kind] = &repeat{msg: msg, since: now}
		r.mu.Unlock()
		log.Warn(msg, attrs...)
		return
	}
	k.suppressed++
	k.last, k.lastFail, k.lastLog = attrs, failure{}, log
	r.arm(k, kind, now)
	r.mu.Unlock()
}

// warnFailure is warnAt for a failed request (failure.msg), whose kind the
// caller builds in a buffer (failure.appendKind): the kind is looked up
// without making a string, and the attributes are built only when the
// warning is logged, not when it is counted. A guest's failing commands
// (RESERVATION CONFLICT is an everyday answer in a cluster) then cost no
// allocation here while their warning repeats (docs/performance.md §3.6).
func (r *repeats) warnFailure(now time.Time, log *slog.Logger, kind []byte, f *failure) {
	if log == nil {
		log = r.log
	}
	r.mu.Lock()
	k := r.kinds[string(kind)]
	if r.fresh(k, now) {
		r.kinds[string(kind)] = &repeat{msg: f.msg(), since: now}
		r.mu.Unlock()
		log.Warn(f.msg(), f.attrs()...)
		return
	}
	k.suppressed++
	k.last, k.lastFail, k.lastLog = nil, *f, log
	if k.timer == nil {
		r.arm(k, string(kind), now)
	}
	r.mu.Unlock()
}

// fresh says whether a warning of the kind counted in k (nil: none yet) is
// logged at once at now: the first one, or the first after a quiet interval.
func (r *repeats) fresh(k *repeat, now time.Time) bool {
	return k == nil || (k.suppressed == 0 && now.Sub(k.since) >= r.interval)
}

// arm starts the timer that ends k's interval with a summary, unless it runs.
func (r *repeats) arm(k *repeat, kind string, now time.Time) {
	if k.timer == nil {
		k.timer = time.AfterFunc(k.since.Add(r.interval).Sub(now), func() { r.summarize(kind) })
	}
}

// summarize logs the count of kind's suppressed warnings and starts a new
// interval.
func (r *repeats) summarize(kind string) {
	r.mu.Lock()
	k := r.kinds[kind]
	if k == nil || k.suppressed == 0 {
		r.mu.Unlock()
		return
	}
	n, last, log, msg := k.suppressed, k.last, k.lastLog, k.msg
	if k.lastFail.cmd != "" {
		last = k.lastFail.attrs()
	}
	k.suppressed, k.last, k.lastFail, k.lastLog, k.timer, k.since = 0, nil, failure{}, nil, nil, time.Now()
	r.mu.Unlock()
	attrs := append([]any{"suppressed", n, "interval", r.interval}, last...)
	log.Warn(msg+" (repeated; last one's details follow)", attrs...)
}

// flush logs every pending summary now (at the end of Serve).
func (r *repeats) flush() {
	r.mu.Lock()
	var kinds []string
	for kind, k := range r.kinds {
		if k.timer != nil {
			k.timer.Stop()
		}
		kinds = append(kinds, kind)
	}
	r.mu.Unlock()
	for _, kind := range kinds {
		r.summarize(kind)
	}
}

// failure is the warning of a failed request, kept in parts (warnFailure).
type failure struct {
	cmd, backend string
	status       byte
	sense        scsi.Sense
	hasSense     bool // sense is the reply's (a CHECK CONDITION's)
	err          error
}

func (f *failure) msg() string { return "request failed" }

// attrs are the warning's attributes: cmd, backend, status, then sense and
// err when there are.
func (f *failure) attrs() []any {
	a := []any{"cmd", f.cmd, "backend", f.backend, "status", scsi.StatusName(f.status)}
	if f.hasSense {
		a = append(a, "sense", f.sense.String())
	}
	if f.err != nil {
		a = append(a, "err", f.err)
	}
	return a
}

// appendKind appends the kind of f's warning to b: "failed", the command,
// the status and the sense, so that each different answer to each command
// has its own count.
func (f *failure) appendKind(b []byte) []byte {
	b = append(append(append(b, "failed "...), f.cmd...), ' ')
	b = append(b, scsi.StatusName(f.status)...)
	if f.hasSense {
		b = f.sense.Append(append(b, ' '))
	}
	return b
}
