package main

import (
	"net"

	"github.com/prhelper/prhelper/internal/daemon/identity"
)

// identifier returns the function that names the initiator of a connection
// under policy: host, peer or name:NAME (package identity).
// Under peer, exe is the QEMU binaries a peer must run (nil: any).
func identifier(policy string, exe *identity.ExeList) (func(*net.UnixConn) (string, error), error) {
	p, err := identity.ParsePolicy(policy)
	if err != nil {
		return nil, err
	}
	r := identity.Resolver{Policy: p, Host: identity.DefaultHost(), Exe: exe}
	if p.Kind == identity.PolicyHost {
		// The host's name does not change while the helper runs: find it once,
		// and fail at start-up rather than on every connection.
		in, err := r.Resolve(nil)
		if err != nil {
			return nil, err
		}
		return func(*net.UnixConn) (string, error) { return in.Name, nil }, nil
	}
	return func(c *net.UnixConn) (string, error) {
		in, err := r.Resolve(c)
		return in.Name, err
	}, nil
}
