package docscheck

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	// heading matches a Markdown heading that starts with a section number:
	// "## 7. PR OUT", "### 7.1.1 Unregistering".
	heading = regexp.MustCompile(`^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s`)
	// docRef matches a cited document.
	docRef = regexp.MustCompile(`docs/([A-Za-z0-9_.-]+\.md)`)
	// section matches a section number.
	section = regexp.MustCompile(`§(\d+(?:\.\d+)*)`)
	// standard matches the end of a standard's name just before a §: such a
	// number is a clause of the standard, not of a document here.
	standard = regexp.MustCompile(`(?:SPC|SAM|SBC|SSC|SPC|FCP|SAS|RFC|NVMe|T10)[-\s]?\d*(?:\s+\d+)?[\s(]*$`)
	// cut ends a citation's list of sections.
	cut = regexp.MustCompile(`[);]|docs/`)
)

// forbidden matches the names of notes outside the repository that code once
// cited (two background notes, their "reference, section" form, and the
// workspace folder they lived in). The names are put together from fragments,
// so that this file does not itself cite what a reader cannot open.
var forbidden = regexp.MustCompile(strings.Join([]string{
	join("spc-pr", ".", "md"),
	join("qemu-pr-helper", ".", "md"),
	join("referenc", "e §"),
	join("/", "work", "/", "shar", "ed"),
	join("..", "/", "shar", "ed", "/"),
}, "|"))

// join quotes the concatenation of parts for a regular expression.
func join(parts ...string) string { return regexp.QuoteMeta(strings.Join(parts, "")) }

// scanned says which files are read for citations.
func scanned(rel string) bool {
	switch filepath.Ext(rel) {
	case ".go", ".md", ".sh", ".txt", ".conf":
		return !strings.HasPrefix(rel, "test/lab/transcripts/")
	}
	return false
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// sections reads the numbered headings of every docs/*.md file.
func sections(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no docs/*.md under %s: %v", root, err)
	}
	out := map[string]map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		secs := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if m := heading.FindStringSubmatch(line); m != nil {
				secs[m[1]] = true
			}
		}
		out[filepath.Base(f)] = secs
	}
	return out
}

// citation is one "§N" found in a file, with the document it refers to.
type citation struct {
	line    int
	doc     string // "spc4-pr.md"
	section string // "7.1"
}

// citations finds the cited sections in the lines of one file. implicit is
// the document a bare §N refers to there ("" when bare numbers are not checked).
func citations(lines []string, implicit string) []citation {
	var out []citation
	carried := -1 // offset of a § on this line that the previous line's citation took
	for i, line := range lines {
		taken := map[int]bool{} // byte offsets of § that belong to an explicit citation
		if carried >= 0 {
			taken[carried] = true
			carried = -1
		}
		for _, m := range docRef.FindAllStringSubmatchIndex(line, -1) {
			doc := line[m[2]:m[3]]
			rest := line[m[1]:]
			if e := cut.FindStringIndex(rest); e != nil {
				rest = rest[:e[0]]
			}
			for _, s := range section.FindAllStringSubmatchIndex(rest, -1) {
				taken[m[1]+s[0]] = true
				out = append(out, citation{i + 1, doc, rest[s[2]:s[3]]})
			}
			// "docs/X.md" ends the line and its § starts the next one.
			if strings.TrimSpace(rest) == "" && i+1 < len(lines) {
				next := lines[i+1]
				at := len(next) - len(strings.TrimLeft(next, " \t/#*"))
				if s := section.FindStringSubmatchIndex(next[at:]); s != nil && s[0] == 0 {
					out = append(out, citation{i + 2, doc, next[at+s[2] : at+s[3]]})
					carried = at
				}
			}
		}
		if implicit == "" {
			continue
		}
		prevEnd, prevStandard := -1, false
		for _, s := range section.FindAllStringSubmatchIndex(line, -1) {
			before := line[:s[0]]
			if strings.TrimLeft(before, " \t/#*") == "" && i > 0 {
				before = lines[i-1] // "(SPC-4" ends the previous line
			}
			isStandard := standard.MatchString(before)
			// "SPC-4 §6.15.1, §6.16.1": a § right after a standard's § is the standard's too.
			if prevEnd >= 0 && prevStandard {
				between := line[prevEnd:s[0]]
				if len(between) <= 24 && !strings.ContainsAny(between, ";()") && !strings.Contains(between, "docs/") {
					isStandard = true
				}
			}
			prevEnd, prevStandard = s[1], isStandard
			if taken[s[0]] || isStandard {
				continue
			}
			out = append(out, citation{i + 1, implicit, line[s[2]:s[3]]})
		}
	}
	return out
}

// implicitDoc is the document bare §N refers to in file rel.
func implicitDoc(rel string) string {
	switch {
	case strings.HasPrefix(rel, "docs/") && strings.HasSuffix(rel, ".md"):
		return filepath.Base(rel)
	case strings.HasPrefix(rel, "pr/"):
		return "spc4-pr.md"
	}
	return ""
}

// TestCitations fails for every cited document or section that does not
// exist, and for every citation of a note outside the repository.
func TestCitations(t *testing.T) {
	root := repoRoot(t)
	secs := sections(t, root)
	checked := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if d.Name() == ".git" || rel == "test/lab/build" {
				return filepath.SkipDir
			}
			return nil
		}
		if !scanned(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		lines := strings.Split(string(b), "\n")
		for i, line := range lines {
			for _, f := range forbidden.FindAllString(line, -1) {
				t.Errorf("%s:%d cites %q, which is not in the repository: cite docs/… instead", rel, i+1, f)
			}
		}
		for _, c := range citations(lines, implicitDoc(rel)) {
			checked++
			doc, ok := secs[c.doc]
			switch {
			case !ok:
				t.Errorf("%s:%d cites docs/%s, which does not exist", rel, c.line, c.doc)
			case !doc[c.section]:
				t.Errorf("%s:%d cites docs/%s §%s, which has no such section", rel, c.line, c.doc, c.section)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Code cites the docs dozens of times; finding none means the scan is broken.
	if checked < 50 {
		t.Errorf("found %d citations; the scan misses them", checked)
	}
}

// TestCitationParsing pins what counts as a citation.
func TestCitationParsing(t *testing.T) {
	lines := []string{
		"// prIn answers PR IN (SPC-4 §6.15; docs/spc4-pr.md §4). PR IN never",
		"// (docs/pr-helper-protocol.md §4.8-§4.10, §4.13 item 7), so for",
		"// the values docs/linux-pr.md",
		"// §1 lists for x86/arm64, and RFC 3720 §3.2.6.1 says",
		"// clearAll implements CLEAR (SPC-4",
		"// §5.7.11.6; docs/spc4-pr.md §7.4): any registrant",
		"// rule 1 of §10 and SAM-5 §5.14 (SPC-4 §6.15.1, §6.16.1)",
	}
	got := citations(lines, "spc4-pr.md")
	var s []string
	for _, c := range got {
		s = append(s, fmt.Sprintf("%d %s §%s", c.line, c.doc, c.section))
	}
	want := []string{
		"1 spc4-pr.md §4",
		"2 pr-helper-protocol.md §4.8", "2 pr-helper-protocol.md §4.10", "2 pr-helper-protocol.md §4.13",
		"4 linux-pr.md §1",
		"6 spc4-pr.md §7.4",
		"7 spc4-pr.md §10",
	}
	if !slices.Equal(s, want) {
		t.Errorf("citations:\n got %q\nwant %q", s, want)
	}
	if got := citations([]string{"// see docs/spc4-pr.md §1"}, ""); len(got) != 1 {
		t.Errorf("explicit citation outside pr: %v", got)
	}
	if got := citations([]string{"// SPC-4 §6.15 and §6.16"}, ""); len(got) != 0 {
		t.Errorf("bare numbers outside pr and docs are not checked: %v", got)
	}
}

// TestHeadings pins the heading forms that define a section.
func TestHeadings(t *testing.T) {
	for line, want := range map[string]string{
		"## 7. PR OUT service actions":   "7",
		"### 7.1.1 Unregistering":        "7.1.1",
		"### 4.13 Quirks":                "4.13",
		"### A. PR IN basics":            "",
		"#### 2.3 Request and framing":   "2.3",
		"Not a heading: ## 2. something": "",
	} {
		got := ""
		if m := heading.FindStringSubmatch(line); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%q: section %q, want %q", line, got, want)
		}
	}
}

// TestForbiddenBites: each of the five names is caught in a line of code, and
// a citation of the repository's own docs is not.
func TestForbiddenBites(t *testing.T) {
	for _, name := range []string{
		"spc-pr" + ".md §3", "qemu-pr-helper" + ".md §4", "referenc" + "e §2.1",
		"/wo" + "rk/sh" + "ared/x", ".." + "/sh" + "ared/x",
	} {
		if !forbidden.MatchString("// see " + name) {
			t.Errorf("%q not caught", name)
		}
	}
	if forbidden.MatchString("// see docs/spc4-pr.md §3") {
		t.Error("a docs/ citation was caught")
	}
}
