// Package server accepts helper-protocol connections and runs their requests
// against a backend: one goroutine per connection, one request at a time on each,
// any number of connections. It owns every received file descriptor and closes it
// when its request ends, on every path.
//
// Shutdown follows qemu-pr-helper (docs/pr-helper-protocol.md §4.4): stop accepting, close idle
// connections, let requests in flight finish and answer, then return.
package server
