// Package metrics is the daemon's Prometheus instrumentation (--metrics): one
// registry of its own (no global registry), the collectors, and the HTTP
// handler that serves them on a TCP address or a Unix socket.
//
// Names follow Prometheus' conventions: prhelper_ prefix, _total for counters,
// _seconds for durations. No label has unbounded values: commands and
// statuses come from fixed tables (an unknown opcode is "other"), backends and
// stores are the registry's few names, and there is no per-LU or per-VM label,
// so a host with thousands of disks exports the same few series.
//
// The per-request cost is a counter increment and a histogram observation on
// children looked up once per label combination and then kept in a sync.Map
// (BenchmarkObserve); the store, multipath and etcd figures are read only when
// Prometheus scrapes.
package metrics
