package server

import (
	"log/slog"
	"sync"
	"time"
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
	if k == nil || (k.suppressed == 0 && now.Sub(k.since) >= r.interval) {
		r.kinds[kind] = &repeat{msg: msg, since: now}
		r.mu.Unlock()
		log.Warn(msg, attrs...)
		return
	}
	k.suppressed++
	k.last, k.lastLog = attrs, log
	if k.timer == nil {
		k.timer = time.AfterFunc(k.since.Add(r.interval).Sub(now), func() { r.summarize(kind) })
	}
	r.mu.Unlock()
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
	k.suppressed, k.last, k.lastLog, k.timer, k.since = 0, nil, nil, nil, time.Now()
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
