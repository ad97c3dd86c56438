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
	lastFail   failure      // or, for warnFailure's (cmd not ""), the parts they are built from
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
	if r.count(now, []byte(kind), msg, log, attrs, nil) {
		log.Warn(msg, attrs...)
	}
}

// warnFailure is warnAt for a failed request, whose kind the caller builds in
// a buffer (failure.appendKind): the kind is looked up without making a
// string, and the attributes are built only when the warning is logged, not
// when it is counted. A guest's failing commands (RESERVATION CONFLICT is an
// everyday answer in a cluster) then cost no allocation here while their
// warning repeats (docs/performance.md §3.6).
func (r *repeats) warnFailure(now time.Time, log *slog.Logger, kind []byte, f *failure) {
	if log == nil {
		log = r.log
	}
	if r.count(now, kind, failedMsg, log, nil, f) {
		log.Warn(failedMsg, f.attrs()...)
	}
}

// count decides whether a warning of kind at now is logged at once (true: the
// first one, or the first after a quiet interval, which starts a new interval)
// or counted. A counted one keeps its details for the interval's summary, its
// attrs or, when f is not nil, a copy of f, and arms the timer that ends the
// interval. kind is copied into a string only when an entry or a timer is
// made.
func (r *repeats) count(now time.Time, kind []byte, msg string, log *slog.Logger, attrs []any, f *failure) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := r.kinds[string(kind)]
	if k == nil || (k.suppressed == 0 && now.Sub(k.since) >= r.interval) {
		r.kinds[string(kind)] = &repeat{msg: msg, since: now}
		return true
	}
	k.suppressed++
	k.last, k.lastFail, k.lastLog = attrs, failure{}, log
	if f != nil {
		k.lastFail = *f
	}
	if k.timer == nil {
		name := string(kind)
		k.timer = time.AfterFunc(k.since.Add(r.interval).Sub(now), func() { r.summarize(name) })
	}
	return false
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

// failedMsg is the message of a failed request's warning.
const failedMsg = "request failed"

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
