package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/prhelper/prhelper/internal/daemon/config"
	"github.com/prhelper/prhelper/internal/daemon/metrics"
	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/sqlite"
)

// etcdSettings selects the etcd store instead of the SQLite file.
type etcdSettings struct {
	endpoints             []string
	prefix                string
	cacert, cert, keyFile string
}

func (e *etcdSettings) enabled() bool { return len(e.endpoints) > 0 }

// load merges the configuration file's etcd keys with the flags (flags win). A store
// named on the command line replaces the file's: --db drops the file's etcd
// endpoints and --etcd-endpoints the file's db; both in one place is an error.
func (e *etcdSettings) load(c *config.Config, o *options) error {
	if o.etcdEndpoints != "" && o.db != "" {
		return fmt.Errorf("%w: --db and --etcd-endpoints: give one store", errUsage)
	}
	if len(c.EtcdEndpoints) > 0 && c.DB != "" && o.db == "" && o.etcdEndpoints == "" {
		return errors.New("config: db and etcd-endpoints: give one store")
	}
	file := *c
	if o.db != "" {
		file = config.Config{} // the command line's SQLite file replaces the file's etcd store
	}
	e.endpoints = file.EtcdEndpoints
	if o.etcdEndpoints != "" {
		eps, err := config.ParseEndpoints(o.etcdEndpoints)
		if err != nil {
			return fmt.Errorf("--etcd-endpoints: %w", err)
		}
		e.endpoints = eps
	}
	pick := func(file, flag string) string {
		if flag != "" {
			return flag
		}
		return file
	}
	e.prefix = pick(file.EtcdPrefix, o.etcdPrefix)
	e.cacert = pick(file.EtcdCACert, o.etcdCACert)
	e.cert = pick(file.EtcdCert, o.etcdCert)
	e.keyFile = pick(file.EtcdKey, o.etcdKey)
	if e.prefix != "" && !strings.HasSuffix(e.prefix, "/") {
		return fmt.Errorf("--etcd-prefix %q must end with /", e.prefix)
	}
	if !e.enabled() && (e.prefix != "" || e.cacert != "" || e.cert != "" || e.keyFile != "") {
		return fmt.Errorf("%w: --etcd-prefix, --etcd-cacert, --etcd-cert and --etcd-key need --etcd-endpoints", errUsage)
	}
	return nil
}

// openStore opens the store the settings name: etcd when endpoints are given, else
// the SQLite file.
func openStore(s *settings, m *metrics.Metrics, log *slog.Logger) (store.Store, error) {
	if !s.etcd.enabled() {
		st, err := sqlite.Open(s.db, sqlite.Options{OnCommit: m.StoreCommit("sqlite"), Log: log})
		if err == nil {
			m.StoreCounter("sqlite", "busy_retries", "SQLite attempts that found the database locked by another process.",
				func() uint64 { return st.Stats().BusyRetries })
			m.StoreCounter("sqlite", "transactions", "SQLite write transactions committed (one fsync each).",
				func() uint64 { return st.Stats().Transactions })
		}
		return st, err
	}
	st, err := etcd.Open(etcd.Options{
		Endpoints: s.etcd.endpoints,
		Prefix:    s.etcd.prefix,
		CACert:    s.etcd.cacert,
		Cert:      s.etcd.cert,
		Key:       s.etcd.keyFile,
		OnCommit:  m.StoreCommit("etcd"),
	})
	if err != nil {
		return nil, err
	}
	m.StoreCounter("etcd", "transactions", "etcd transactions committed (each may carry several logical units' writes).",
		func() uint64 { return st.Stats().Transactions })
	m.StoreCounter("etcd", "conflicts", "etcd batches recomputed because another helper changed the key first.",
		func() uint64 { return st.Stats().Conflicts })
	m.StoreCounter("etcd", "unknown_outcomes", "etcd transactions whose outcome stayed unknown until the store's timeout.",
		func() uint64 { return st.Stats().Unknown })
	m.WatchEtcd(st.ConnectionState)
	if !strings.HasPrefix(s.etcd.endpoints[0], "https://") || s.etcd.cert == "" {
		log.Warn("etcd without TLS client certificates: whoever can write the prefix controls every reservation (see --etcd-cert)", "endpoints", strings.Join(s.etcd.endpoints, ","))
	}
	log.Info("emulated reservations in etcd", "endpoints", strings.Join(s.etcd.endpoints, ","), "prefix", prefixOr(s.etcd.prefix))
	return &sharedStore{Store: st, log: log, warned: map[string]bool{}}, nil
}

func prefixOr(p string) string {
	if p == "" {
		return etcd.DefaultPrefix
	}
	return p
}

// sharedStore is the etcd store seen by the emulate backend: it warns, once per
// logical unit, when one is named by a regular file's host-local identity
// ("file:<major>:<minor>:<inode>", package device): another host names the same
// image differently, so the helpers would not share its reservations. A rule with
// id= gives it a name every host agrees on. The etcd store's other methods (List,
// Watch: the fence coordinator reads with them) are its own.
type sharedStore struct {
	*etcd.Store
	log    *slog.Logger
	mu     sync.Mutex
	warned map[string]bool
}

func (s *sharedStore) Update(ctx context.Context, key string, fn store.UpdateFunc) error {
	s.warn(key)
	return s.Store.Update(ctx, key, fn)
}

// Queue is the etcd store's (store.Queuer: the emulate backend keeps several
// batches of a unit in flight, docs/performance.md §5.6.1), with the warning.
func (s *sharedStore) Queue(ctx context.Context, key string, fn store.UpdateFunc) func() error {
	s.warn(key)
	return s.Store.Queue(ctx, key, fn)
}

func (s *sharedStore) warn(key string) {
	if lu, ok := strings.CutPrefix(key, "lu/"); ok && strings.HasPrefix(lu, "file:") {
		s.mu.Lock()
		first := !s.warned[lu]
		s.warned[lu] = true
		s.mu.Unlock()
		if first {
			s.log.Warn("a regular file without id= is served from etcd: its name is local to this host, so other hosts do not share its reservations; give it a rule with id=",
				"lu", lu)
		}
	}
}
