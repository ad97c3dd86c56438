// Package pidfile writes the daemon's pid file the way qemu-pr-helper does
// (qemu_write_pidfile in QEMU's util/oslib-posix.c, docs/pr-helper-protocol.md §4.2 step 7): the file
// is created 0600, locked with a whole-file fcntl(F_SETLK, F_WRLCK) write lock so a
// second instance fails at once, re-checked to still be the file the path names,
// truncated, and filled with "<pid>\n".
//
// The lock is a POSIX record lock: it belongs to the process and lives as long as
// the descriptor kept in [File] is open, so the caller keeps the *File until exit.
// Because such locks are per process, a second Create in the same process succeeds;
// only another process is refused. For the same reason the process must not open
// and close the pid file through any other descriptor while it runs: closing any
// descriptor of a file drops all of the process's POSIX locks on it (fcntl(2)).
package pidfile
