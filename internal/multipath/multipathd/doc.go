// Package multipathd is a client for multipathd's command socket, the
// interface behind `multipathd -k`, libmpathcmd and libmpathpersist. prhelper
// uses it to keep multipathd informed of persistent reservations on
// dm-multipath maps (the reservation key and the "registered" flag), so that
// multipathd registers the key on paths that appear or come back, as QEMU's
// qemu-pr-helper does through libmpathpersist.
//
// It is written from multipath-tools' documentation and observed behaviour,
// not from its (GPL) code. What was checked, and where:
//
// Sockets. multipathd listens on the abstract socket
// "@/org/kernel/linux/storage/multipathd" (libmpathcmd's DEFAULT_SOCKET; the
// only one in Debian 12's 0.9.4, per its binary and multipathd.socket unit)
// and, since 0.12.0 (2025/08, release notes; opensvc/multipath-tools#111),
// also on "/run/multipathd.socket". libmpathcmd's mpath_connect tries the
// pathname socket first and falls back to the abstract one on any connect
// error; DefaultAddresses does the same. The abstract socket belongs to a
// network namespace: a helper in another one (a container, systemd's
// PrivateNetwork=) reaches multipathd only through the pathname socket.
//
// Framing (libmpathcmd/mpath_cmd.c). Each message is a size_t in host byte
// order and width holding the byte count, then the bytes: the command string
// with its terminating NUL (mpath_send_cmd sends strlen+1), and the reply
// likewise (multipathd sends strlen+1). The daemon drops a client announcing a
// command longer than 512 bytes (_MAX_CMD_LEN); libmpathcmd refuses a reply
// length of 0 or of 32 MiB (MAX_REPLY_LEN) and more. One connection may carry
// several commands; this client opens one per command, as libmpathpersist does.
//
// Replies (multipathd/uxlsnr.c, strings in Debian 12's 0.9.4 binary). A
// handler that succeeds without output answers "ok\n"; a failing one "fail\n";
// one that could not take the daemon's lock within uxsock_timeout "timeout\n";
// a command whose words it does not know gets its command reference ("<cmd>:
// not found", "CLI commands reference:", ...), though 0.9.4 answered
// "setprhold map mpatha" with a plain "fail\n" in the lab. Timeouts: uxsock_timeout defaults to 4000
// ms (multipath.conf(5) of 0.9.4; libmpathcmd's DEFAULT_REPLY_TIMEOUT is also
// 4000), hence DefaultTimeout of 5 s.
//
// Root. multipathd reads the peer's SO_PEERCRED and runs only list/show
// commands for a uid other than 0; everything else, including getprkey and
// getprstatus, is answered "permission deny: need to be root\n" (newline
// since 0.9; multipathd(8): "Multipathd will accept list|show commands from
// any user. All other commands must be issued by root."). So prhelper must keep
// uid 0 (capabilities do not help) for the PR commands; Paths and Maps work
// unprivileged.
//
// Commands. The verb comes first, as libmpathpersist sends them ("%s map %s",
// "%s map %s key %s" in 0.9.4's library); multipathd's parser (cli.c) builds
// the command's fingerprint from the keywords in order:
//
//	setprkey map <name> key <0x16hex[:aptpl]>   SetPRKey    (reply "ok\n")
//	unsetprkey map <name>                       UnsetPRKey  (reply "ok\n")
//	getprkey map <name>                         GetPRKey    ("0x<hex>[:aptpl]\n" or "none\n")
//	setprstatus map <name>                      SetPRStatus (reply "ok\n")
//	unsetprstatus map <name>                    UnsetPRStatus
//	getprstatus map <name>                      GetPRStatus ("0"/"1" up to 0.9.4; "unset\n"/"set\n"/"unknown\n" from 0.9.5)
//	setprhold|unsetprhold|getprhold map <name>  SetPRHold... (0.13 PR rework only; 0.9.4: "fail")
//	show paths raw format <fmt>                 Paths
//	show maps raw format <fmt>                  Maps
//
// All of these but the hold commands exist in 0.9.4 (its command reference
// lists "setprkey map|multipath $map key $key" etc.; its multipathd(8) shows
// them in the "map $map setprkey key $key" order). TestLab (lab_test.go,
// testdata/lab.sh) checked every reply form above against 0.9.4 in the lab
// VM, the abstract-socket fallback and the non-root refusal included.
// setprkey takes effect for path registration only with "reservation_key
// file" in multipath.conf; with a fixed key there, multipathd answers "fail".
// The key is parsed by multipathd's parse_prkey_flags: optional "0x", at most
// 16 hex digits, optional ":aptpl".
//
// Names. multipathd splits commands at blanks and non-ASCII bytes, treats
// '"' as quoting, '{' '}' as words and an unquoted '!' or '#' as the start of
// a comment (libmultipath's alloc_strvec); ValidateName refuses map names
// with any of these rather than let a command reach another map.
package multipathd
