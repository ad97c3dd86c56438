package etcd

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/prhelper/prhelper/internal/store"
)

var _ store.Watcher = (*Store)(nil)

// Watch implements store.Watcher with an etcd watch on the prefix's keys.
// The watch requires a leader (clientv3.WithRequireLeader): a member cut off
// from the others ends it instead of staying silent, and it starts again on
// another member, signalling then, since a change may have been missed.
func (s *Store) Watch(ctx context.Context, prefix string) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go func() {
		defer close(ch)
		for attempt := 0; ctx.Err() == nil && !s.isClosed(); attempt++ {
			wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
			wch := s.cli.Watch(wctx, s.state+prefix, clientv3.WithPrefix())
			store.Signal(ch) // (re)started: what changed before it is not in wch
			for resp := range wch {
				if resp.Err() != nil || resp.Canceled {
					break
				}
				if len(resp.Events) > 0 {
					store.Signal(ch)
					attempt = 0
				}
			}
			cancel()
			if sleep(ctx, backoff(attempt)) != nil {
				return
			}
		}
	}()
	return ch
}
