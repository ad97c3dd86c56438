// Package server accepts helper-protocol connections and runs their requests
// against a backend: one goroutine per connection, one request at a time on each,
// any number of connections. It owns every received file descriptor and closes it
// when its request ends, on every path.
//
// # Shutdown
//
// Like qemu-pr-helper (docs/pr-helper-protocol.md §4.4), the server stops accepting at once, closes the idle
// connections (those waiting for a request) and lets the requests in flight
// finish and be answered. Unlike qemu-pr-helper it does not wait for them without
// limit: after Options.Grace the backends' context is cancelled and the remaining
// connections are closed without a reply, and Serve returns at the latest
// Options.CancelWait later, with a ShutdownError counting the requests it cut.
// QEMU fails the one command whose reply never came and reconnects for the next,
// as it does when a helper is killed.
//
// The grace period defaults to 10 s. A PR command on a healthy device takes
// milliseconds; one still running after seconds waits for a device in trouble,
// which the SG_IO timeout (30 s, QEMU's scsi-block I/O timeout) will end. Waiting
// for that timeout at every stop would outlast the time supervisors give a
// process before SIGKILL (Kubernetes' default grace period is 30 s), which would
// lose the log of what was cut; 10 s also covers every command qemu-pr-helper
// itself completes, since the block layer raises its SG_IO timeout to 7 s.
//
// A backend that honours its context (the state store while a request is
// queued, multipathd's client) returns on cancellation. An ioctl cannot be
// interrupted: a goroutine inside SG_IO or a <linux/pr.h> ioctl returns when its
// command ends, and Serve does not wait for it beyond CancelWait (2 s). The
// process can then exit; the kernel reaps a thread that sleeps in a block-device
// SG_IO only when that command completes or times out, but the socket is gone and
// nothing more is answered.
//
// # Write deadline
//
// Each reply, and the handshake, must be written within Options.WriteTimeout
// (10 s), in normal operation too. A reply is at most 8296 bytes and a client has
// one request outstanding at a time, so for a client that reads, the reply fits
// in the empty socket buffer and the write returns at once; only a client that
// sends requests without reading the replies fills the buffer. The deadline
// closes its connection rather than let it pin a goroutine; 10 s is far beyond
// any scheduling delay of a client that does read. A reply's deadline is armed
// only when its first write(2) does not take all of it, and counts from then:
// setting it before every reply woke a scheduler thread per request
// (docs/performance.md §3.5). Reads have no deadline: QEMU keeps its
// connection open and idle between commands.
//
// # Descriptors and connections
//
// The daemon raises its soft RLIMIT_NOFILE to the hard limit at start
// (RaiseFileLimit). Each connection can hold two descriptors at once (its
// socket and the one its request carries), so the server serves at most
// Options.MaxConns connections, by default (soft limit - 64) / 2: past it new
// clients wait in the listen backlog until a connection ends, and every open
// connection keeps the descriptor its next request needs. When accept(2) still
// fails for want of descriptors (EMFILE, ENFILE: another part of the process
// or the system holds them), the accept loop pauses, 5 ms doubling to 1 s,
// instead of retrying at once (which spun at 50 % CPU and wrote 4 M log lines
// in 26 s, issue 12), and says when it accepts again.
//
// # Log volume
//
// A client controls how often the server warns: protocol violations, failed
// requests, unidentified peers. Each kind of warning is logged the first time,
// then at most once per Options.LogInterval (10 s) as a summary with the count
// of those suppressed and the details of the last one. Logs name a listener by
// Listener.Name, the socket's published path, not the temporary name it was
// bound under.
package server
