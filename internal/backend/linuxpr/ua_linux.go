package linuxpr

import "github.com/prhelper/prhelper/internal/kernel/blkpr"

// uaRetries is how often a PR OUT ioctl that came back CHECK CONDITION is
// issued again. The kernel does not return the sense, so a unit attention
// cannot be told from another CHECK CONDITION; but a command answered with
// CHECK CONDITION was not executed (SPC-4 §5.13.1), so issuing it again is
// safe, and a unit attention is reported once per condition: LIO queues one per
// event on the nexus (a PREEMPT, a RELEASE), and the guest, whose SCSI layer
// would retry after a unit attention, never gets to see it here because the
// sense is lost. Without this the guest gets 0B/00/06 for a command the device
// would have executed on the retry (doc.go, "Unit attentions"). Linux 6.10 and
// later retry unit attentions to PR commands in sd themselves; this covers the
// older kernels (the lab's 6.1). Three is the number of conditions LIO can
// queue for one nexus from the PR commands of the others between two of its
// own (registrations preempted, reservations released, reservation preempted),
// and what package mpath uses for its paths.
const uaRetries = 3

// checkConditionResult reports whether a PR ioctl's positive return value says
// the device answered CHECK CONDITION: PR_STS_IOERR from Linux 6.4, the raw
// SCSI result with status 02h and no host byte before.
func checkConditionResult(ret int) bool {
	return byte(ret) == blkpr.PR_STS_IOERR && (ret>>16)&0xff == 0
}

// outIoctl issues a PR OUT ioctl, again (uaRetries) while the device answers
// CHECK CONDITION, which is how a unit attention comes back.
func (b *Backend) outIoctl(fd int, call outCall) (int, error) {
	ret, err := b.ioctl(fd, call.Req, call.arg())
	for try := 0; try < uaRetries && err == nil && checkConditionResult(ret); try++ {
		b.log.Debug("linuxpr: CHECK CONDITION (a unit attention, maybe: the kernel does not pass the sense); issuing again",
			"op", call.Name, "fd", fd, "result", ret, "try", try+1)
		ret, err = b.ioctl(fd, call.Req, call.arg())
	}
	return ret, err
}
