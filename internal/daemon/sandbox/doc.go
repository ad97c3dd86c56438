// Package sandbox confines the running helper (docs/security.md §4):
// no_new_privs, a Landlock ruleset limiting file access to what the configured
// backends need (where the kernel has Landlock), and a seccomp filter of the
// system calls they use, built here as a classic BPF program (no libseccomp).
// A call the filter forbids fails with EPERM and is logged by the kernel's
// audit (SECCOMP_FILTER_FLAG_LOG) instead of killing the helper.
package sandbox
