package identity

import (
	"fmt"
	"strings"
)

// PolicyKind selects how a connection's initiator is found.
type PolicyKind int

// The policies; see the package documentation.
const (
	PolicyHost PolicyKind = iota + 1
	PolicyPeer
	PolicyFixed
)

// Policy is a parsed identity policy. Fixed holds the initiator of PolicyFixed.
type Policy struct {
	Kind  PolicyKind
	Fixed Initiator
}

// ParsePolicy parses "host", "peer" or "name:NAME" (NAME as FixedInitiator
// takes it). Keywords are case-sensitive, as command-line flags are.
func ParsePolicy(s string) (Policy, error) {
	switch {
	case s == "host":
		return Policy{Kind: PolicyHost}, nil
	case s == "peer":
		return Policy{Kind: PolicyPeer}, nil
	case strings.HasPrefix(s, "name:"):
		in, err := FixedInitiator(strings.TrimPrefix(s, "name:"))
		if err != nil {
			return Policy{}, fmt.Errorf("identity policy %q: %w", s, err)
		}
		return Policy{Kind: PolicyFixed, Fixed: in}, nil
	}
	return Policy{}, fmt.Errorf("identity policy %q: want host, peer or name:NAME", s)
}

// String returns the policy in the form ParsePolicy reads (the fixed name as
// normalised).
func (p Policy) String() string {
	switch p.Kind {
	case PolicyHost:
		return "host"
	case PolicyPeer:
		return "peer"
	case PolicyFixed:
		return "name:" + p.Fixed.Name
	}
	return fmt.Sprintf("policy(%d)", int(p.Kind))
}
