// Package detach implements -d/--daemon for a Go program, which cannot fork:
// qemu-pr-helper calls daemon(0, 0) (docs/pr-helper-protocol.md §4.1, §4.2 step 6), i.e. it moves
// into the background in a new session with its working directory at "/" and its
// standard streams on /dev/null.
//
// Start, in the original process (the parent), re-executes the program with the
// same arguments in a new session, handing it the write end of a pipe, and waits:
// the parent is done, and should exit 0, once the child calls Ready (one byte on
// the pipe); if the child exits, closes the pipe or does not become ready in time
// the parent gets an error and should print it and exit 1. In the child, Start
// finishes the detachment (chdir "/", stdin on /dev/null) and returns so the
// program continues its normal start-up.
//
// The child's stdout and stderr stay connected to the parent's until Ready, so an
// error the child prints while starting (bad socket path, pid file held, privilege
// drop failure) still reaches the user, after which the parent reports that the
// child exited. Ready moves them to /dev/null, as daemon(0, 0) does. Logs of a
// detached daemon must therefore go elsewhere (a file, syslog, the journal) or
// they are lost.
//
// Socket activation survives the re-exec: when the parent was socket-activated
// (LISTEN_PID is its pid), its descriptors 3.. are passed to the child at the same
// numbers and the child's LISTEN_PID is set to the child's pid, so the activation
// package sees them. Call Start before anything else consumes the environment.
package detach
