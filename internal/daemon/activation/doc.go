// Package activation receives listening sockets from systemd socket activation
// (the sd_listen_fds protocol, sd_listen_fds(3)): when LISTEN_PID names this process,
// LISTEN_FDS sockets start at descriptor 3. It follows qemu-pr-helper's
// check_socket_activation (docs/pr-helper-protocol.md §4.2 step 4): the variables LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES are removed so children do not see them, and the
// descriptors are made close-on-exec so they do not leak into children.
//
// Unlike QEMU, each descriptor is checked to be a listening AF_UNIX SOCK_STREAM
// socket (the only kind the QEMU client can connect to), and a malformed LISTEN_FDS
// addressed to this process is an error rather than silently ignored.
package activation
