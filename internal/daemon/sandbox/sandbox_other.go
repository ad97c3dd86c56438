//go:build !(amd64 || arm64)

package sandbox

import (
	"fmt"
	"runtime"
)

// Config says what the configured backends need (docs/security.md §4).
type Config struct {
	Devices, Connect, Exec        bool
	DBDir                         string
	ReadFiles, ReadDirs, RemoveIn []string
}

// Report says what Apply did.
type Report struct{ Seccomp, Landlock string }

// Sandbox is a prepared confinement.
type Sandbox struct{}

// Prepare fails: the filter knows the system calls of amd64 and arm64 only.
func Prepare(c Config) (*Sandbox, error) {
	_, err := Apply(c)
	return nil, err
}

// Apply does nothing.
func (*Sandbox) Apply() (Report, error) { return Report{}, nil }

// Close does nothing.
func (*Sandbox) Close() {}

// Apply fails: the filter knows the system calls of amd64 and arm64 only.
func Apply(Config) (Report, error) {
	return Report{}, fmt.Errorf("sandbox: not built for %s (amd64 and arm64 only); use --sandbox=off", runtime.GOARCH)
}
