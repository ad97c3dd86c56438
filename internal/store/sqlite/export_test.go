package sqlite

import "context"

// ExecWriter runs q on the writer connection, for tests that set a
// connection's limits (PRAGMA max_page_count) to make SQLite answer a fault.
func (s *Store) ExecWriter(q string) error {
	_, err := s.conn.ExecContext(context.Background(), q)
	return err
}
