// Package identity decides who the client on a helper connection is: the
// SCSI initiator prhelper's software-emulated persistent reservations record
// for the commands that connection sends.
//
// With real storage every VM on a host shares the host's initiator port
// (docs/pr-helper-protocol.md §5.1): the target cannot tell two VMs apart. Emulation can
// do better, and a Policy says how far to go:
//
//   - "host": every connection from this host is one initiator, named after
//     the host (HostInitiator) — the behaviour of qemu-pr-helper on real LUNs.
//   - "peer": the QEMU process on the other end of the socket is the
//     initiator, named after its -uuid, else its -name (FromCmdline). Two VMs
//     on one host are two initiators, and a VM keeps its initiator across live
//     migration because libvirt and KubeVirt start the destination QEMU with
//     the same -uuid and -name (docs/pr-helper-protocol.md §5.2-§5.4).
//   - "name:NAME": one fixed initiator for the listener (FixedInitiator).
//
// Names are iSCSI names (RFC 3720 §3.2.6), because READ FULL STATUS reports
// initiators as iSCSI TransportIDs. The peer policy reads the peer's command
// line, which the peer chose; it takes it only from a peer that runs a QEMU
// binary of an ExeList, compared by file and re-checked after the read
// (docs/security.md §3). That stops scripts, not a real QEMU started with a
// chosen -uuid: socket permissions and the allow-list remain the access
// control.
package identity
