// Package man holds the manual pages of prhelper, written here and installed
// by scripts/package.sh: prhelper(8), prpersist(8), prhelperctl(8) and
// prhelper.conf(5). It has no code; its test renders each page with man -l and
// checks that the pages of the programs name every option their --help names,
// so that the two cannot drift apart.
package man
