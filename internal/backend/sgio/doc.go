// Package sgio is the SG_IO pass-through backend, qemu-pr-helper's default: it
// sends the guest's PERSISTENT RESERVE IN/OUT CDB unchanged to the device it was
// given and answers with what the device (or the kernel, for a command that
// did not reach it) said. The SG_IO framing, the timeout and the errno,
// host-status and driver-status tables are internal/kernel/sgio's; this package
// only fits them to the backend contract.
//
// It needs CAP_SYS_RAWIO: the kernel lets unprivileged openers send only the
// commands on its allow-list, and PERSISTENT RESERVE IN/OUT are not on it.
package sgio
