// Package docscheck holds no code, only a test that keeps the repository's
// citations true: every "docs/X.md §N" written in a comment, a test file, a
// scenario file or a document must name a file under docs/ that has a section
// numbered N, and nothing may cite the background notes the docs were written
// from instead (they are not in the repository, so a reader cannot open them).
//
// Two places use bare section numbers: inside package pr (and its scenario
// files) "§N" means docs/spc4-pr.md §N, as pr's package comment says, and
// inside a document "§N" means that document's own section N. Numbers that
// follow a standard's name (SPC-4 §5.7.9, SAM-5 §4.7, RFC 3720 §3.2.6) are
// clauses of that standard and are not checked.
package docscheck
