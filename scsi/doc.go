// Package scsi holds the pure SCSI codecs prhelper needs: status bytes, fixed-format
// sense data, the errno and host-status tables qemu-pr-helper uses to turn kernel
// failures into SCSI answers, and the PERSISTENT RESERVE IN/OUT (SPC-4 §6.15, §6.16)
// CDB, parameter-list and payload layouts.
//
// Nothing here performs I/O: every function maps bytes and values to bytes and values.
package scsi
