package store

import "time"

// Entry is one stored value with what the store knows of its last change, for
// tools (prhelperctl list).
type Entry struct {
	Key   string
	Value []byte
	// Changed is when the value was last written, zero when the store keeps no
	// time (etcd keeps revisions, not times).
	Changed time.Time
	// Revision is the store's revision of the last write (etcd's ModRevision),
	// 0 when the store has none.
	Revision int64
}

// Commit describes one committed write transaction, for metrics: how many
// Update calls it answered and how long it took from its start to its durable
// commit.
type Commit struct {
	Updates  int
	Duration time.Duration
}
