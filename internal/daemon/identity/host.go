package identity

import (
	"fmt"
	"os"
	"strings"
)

// DefaultMachineIDPath is systemd's machine-id file (machine-id(5)).
const DefaultMachineIDPath = "/etc/machine-id"

// HostSource returns the text the host policy names the host's initiator
// after. It is a function so that tests and deployments can choose it.
type HostSource func() (string, error)

// MachineID reads a machine-id file: 32 lower-case hex digits, unique per
// installation and stable across renames, which a host name is not (many
// hosts are "localhost"; a container's host name is its pod's). In a container
// /etc/machine-id belongs to the image, and may be the same on every node:
// there configure a name (name:NAME) or mount the host's file.
func MachineID(path string) HostSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read machine id: %w", err)
		}
		id := strings.TrimSpace(string(b))
		if id == "" || id == "uninitialized" {
			return "", fmt.Errorf("machine id %s is %q", path, id)
		}
		return id, nil
	}
}

// Hostname uses the kernel's host name (uname -n).
func Hostname() HostSource {
	return func() (string, error) {
		h, err := os.Hostname()
		if err != nil {
			return "", fmt.Errorf("host name: %w", err)
		}
		if h == "" {
			return "", fmt.Errorf("host name is empty")
		}
		return h, nil
	}
}

// DefaultHost is MachineID(DefaultMachineIDPath), falling back to Hostname
// where the file is missing or empty.
func DefaultHost() HostSource {
	return FirstOf(MachineID(DefaultMachineIDPath), Hostname())
}

// FirstOf returns the first source that succeeds, or all their errors.
func FirstOf(sources ...HostSource) HostSource {
	return func() (string, error) {
		var msgs []string
		for _, s := range sources {
			h, err := s()
			if err == nil {
				return h, nil
			}
			msgs = append(msgs, err.Error())
		}
		return "", fmt.Errorf("no host identity: %s", strings.Join(msgs, "; "))
	}
}
