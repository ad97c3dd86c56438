package identity

import "fmt"

// DefaultProcRoot is where procfs is mounted.
const DefaultProcRoot = "/proc"

// maxCmdline bounds how much of a peer's command line is read. Linux caps
// argv+envp at a quarter of the stack limit (2 MiB by default); libvirt's QEMU
// lines are tens of KiB.
const maxCmdline = 4 << 20

// Resolver finds the initiator of a connection under a Policy.
type Resolver struct {
	Policy Policy
	// Host names the host for PolicyHost; nil means DefaultHost().
	Host HostSource
	// Proc is the procfs root for PolicyPeer; "" means DefaultProcRoot.
	Proc string
	// Exe, under PolicyPeer, is the executables a peer must run for its
	// command line to name it; nil accepts any peer (docs/security.md §3).
	Exe *ExeList
}

func (r Resolver) proc() string {
	if r.Proc == "" {
		return DefaultProcRoot
	}
	return r.Proc
}

// resolve applies the policy; peer is called only under PolicyPeer and returns
// the peer's command line and a description of the peer for errors.
func (r Resolver) resolve(peer func() ([]byte, string, error)) (Initiator, error) {
	switch r.Policy.Kind {
	case PolicyHost:
		src := r.Host
		if src == nil {
			src = DefaultHost()
		}
		h, err := src()
		if err != nil {
			return Initiator{}, fmt.Errorf("identity policy host: %w", err)
		}
		return HostInitiator(h)
	case PolicyFixed:
		if r.Policy.Fixed.Name == "" {
			return Initiator{}, fmt.Errorf("identity policy name: empty name")
		}
		return r.Policy.Fixed, nil
	case PolicyPeer:
		cmdline, who, err := peer()
		if err != nil {
			return Initiator{}, fmt.Errorf("identity policy peer: %w", err)
		}
		in, err := FromCmdline(cmdline)
		if err != nil {
			return Initiator{}, fmt.Errorf("identity policy peer: %s: %w", who, err)
		}
		return in, nil
	}
	return Initiator{}, fmt.Errorf("identity policy %v: not set", r.Policy)
}
