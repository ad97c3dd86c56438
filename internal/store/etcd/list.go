package etcd

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prhelper/prhelper/internal/store"
)

// List implements store.Store with one linearizable range read (one revision
// of the whole prefix), leaving tombstones out. etcd keeps no times: each
// entry carries its ModRevision instead.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Entry, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: list: %w", store.ErrClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.state+prefix, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", err)
	}
	var out []store.Entry
	for _, kv := range resp.Kvs {
		if len(kv.Value) == 0 || kv.Value[0] != markValue {
			continue
		}
		out = append(out, store.Entry{Key: strings.TrimPrefix(string(kv.Key), s.state), Value: decode(kv.Value), Revision: kv.ModRevision})
	}
	return out, nil
}

// ConnectionState names the state of the client's connection to the cluster
// (gRPC connectivity: IDLE, CONNECTING, READY, TRANSIENT_FAILURE, SHUTDOWN),
// for metrics.
func (s *Store) ConnectionState() string {
	if c := s.cli.ActiveConnection(); c != nil {
		return c.GetState().String()
	}
	return "SHUTDOWN"
}
