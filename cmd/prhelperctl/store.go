package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/prhelper/prhelper/internal/store"
	"github.com/prhelper/prhelper/internal/store/etcd"
	"github.com/prhelper/prhelper/internal/store/sqlite"
)

// openStore opens the store the options name with the daemon's own store
// packages, so every change is the transaction a helper's command is. A SQLite
// file must exist already, except for import (which makes a new store).
func openStore(o *options) (store.Store, error) {
	if len(o.etcdEndpoints) > 0 {
		st, err := etcd.Open(etcd.Options{Endpoints: o.etcdEndpoints, Prefix: o.etcdPrefix,
			CACert: o.etcdCACert, Cert: o.etcdCert, Key: o.etcdKey})
		if err != nil {
			return nil, fail(exitFile, err)
		}
		return st, nil
	}
	if o.cmd != "import" {
		if _, err := os.Stat(o.db); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fail(exitFile, fmt.Errorf("no state database at %s (give prhelper's --db)", o.db))
			}
			return nil, fail(exitFile, err)
		}
	}
	st, err := sqlite.Open(o.db, sqlite.Options{})
	if err != nil {
		return nil, fail(exitFile, err)
	}
	return st, nil
}
