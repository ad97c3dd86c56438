package etcd

// Queues reports, for tests, how many writes wait for a committer, how many are
// chained after a write in a transaction, and how many requests wait in key's
// queue (neither in a batch nor in a write).
func (s *Store) Queues(key string) (ready, chained, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if kq := s.keys[key]; kq != nil {
		queued = len(kq.queue)
	}
	return len(s.ready), s.chained, queued
}
