package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prhelper/prhelper/internal/store"
)

// List implements store.Store: one SELECT, which SQLite answers from one
// snapshot of the database (in WAL mode without waiting for a writer), with
// the time of each key's last commit.
func (s *Store) List(ctx context.Context, prefix string) ([]store.Entry, error) {
	if s.isClosed() {
		return nil, fmt.Errorf("store: list: %w", store.ErrClosed)
	}
	var out []store.Entry
	err := s.retryBusy(ctx, func() error {
		out = nil
		rows, err := s.db.QueryContext(ctx, "SELECT key, "+valueExpr+", updated FROM lu WHERE substr(key, 1, ?) = ? ORDER BY key",
			len(prefix), prefix)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var e store.Entry
			var ms int64
			if err := rows.Scan(&e.Key, &e.Value, &ms); err != nil {
				return err
			}
			if !strings.HasPrefix(e.Key, prefix) {
				continue // substr counts characters; a key with multi-byte ones is checked here
			}
			if e.Value == nil {
				e.Value = []byte{}
			}
			e.Changed = time.UnixMilli(ms)
			out = append(out, e)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("store: list: %w", describe(err))
	}
	return out, nil
}
