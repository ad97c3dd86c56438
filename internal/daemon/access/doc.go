// Package access decides who may connect to the helper's sockets: an
// allow-list of peer uids and gids, checked with the credentials the kernel
// recorded when the peer connected (SO_PEERCRED and SO_PEERGROUPS, unix(7)),
// so that a peer cannot choose them. A refused peer's connection is closed
// without a reply; refusals are logged once per peer uid and interval, with a
// count, so that a flood of connections cannot flood the log
// (docs/security.md §2).
package access
