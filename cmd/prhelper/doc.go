// Command prhelper is a persistent-reservation helper for QEMU: a drop-in for
// qemu-pr-helper that speaks the same socket protocol, takes the same flags and
// gives the same replies, byte for byte.
//
// QEMU's pr-manager-helper object sends each PERSISTENT RESERVE IN/OUT command of a
// guest, with the descriptor of the host device, over a Unix socket; prhelper runs
// it against the device (SG_IO passthrough) and answers with the SCSI status, sense
// and data. Installed or linked as qemu-pr-helper it behaves the same, so libvirt
// (<reservations managed='yes'/>) and KubeVirt can start it unchanged.
package main
