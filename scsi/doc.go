// Package scsi holds the pure SCSI codecs prhelper needs: status bytes, fixed-format
// sense data, the errno and host-status tables qemu-pr-helper uses to turn kernel
// failures into SCSI answers, and the PERSISTENT RESERVE IN/OUT (SPC-4 §6.15, §6.16)
// CDB, parameter-list and payload layouts.
//
// Nothing here performs I/O: every function maps bytes and values to bytes and values.
//
// Use it wherever PR commands are built or read, whatever carries them (the
// helper socket, SG_IO, an iSCSI initiator or target): PRInCDB and PROutCDB
// with PROutParams build commands, the Decode functions read PR IN data and
// parameter lists, Sense encodes and parses sense data, and FromErrno and
// FromHostStatus give QEMU's answer for a failed SG_IO.
package scsi
