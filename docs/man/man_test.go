package man

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pages are the manual pages and the title line man prints for each.
var pages = map[string]string{
	"prhelper.8":      "PRHELPER(8)",
	"prpersist.8":     "PRPERSIST(8)",
	"prhelperctl.8":   "PRHELPERCTL(8)",
	"prhelper.conf.5": "PRHELPER.CONF(5)",
}

// needMan finds man(1). Without it the rendering cannot be checked: a skip,
// except under CI=true (scripts/test.sh installs man-db and groff-base there).
func needMan(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("man")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("man is not installed (apt-get install man-db groff-base): %v", err)
		}
		t.Skipf("man is not installed: %v", err)
	}
	return p
}

// TestRender renders every page as a user would read it (man -l, 80 columns,
// groff warnings on): no warning, and the sections a manual page must have.
func TestRender(t *testing.T) {
	man := needMan(t)
	for page, title := range pages {
		t.Run(page, func(t *testing.T) {
			cmd := exec.Command(man, "--warnings", "-E", "UTF-8", "-l", page)
			cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Run(); err != nil {
				t.Fatalf("man -l %s: %v\n%s", page, err, errb.String())
			}
			if errb.Len() != 0 {
				t.Errorf("man -l %s warns:\n%s", page, errb.String())
			}
			text := out.String()
			if !strings.HasPrefix(strings.TrimSpace(text), title) {
				t.Errorf("%s renders without its title %s:\n%.200s", page, title, text)
			}
			for _, sec := range []string{"\nNAME\n", "\nSYNOPSIS\n", "\nDESCRIPTION\n", "\nSEE ALSO\n"} {
				if !strings.Contains(text, sec) {
					t.Errorf("%s has no %s section", page, strings.TrimSpace(sec))
				}
			}
			t.Logf("%s: %d lines rendered", page, strings.Count(text, "\n"))
		})
	}
}

var longFlag = regexp.MustCompile(`--[a-z][a-z0-9-]*`)

// roffText is a page's source with roff's escapes for hyphens and fonts taken
// out, so that "\-\-db" and "\fB\-\-db\fR" read as --db.
func roffText(t *testing.T, page string) string {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), `\-`, "-")
	return regexp.MustCompile(`\\f[BIRP]|\\c`).ReplaceAllString(s, "")
}

// helpOf builds cmd/NAME and returns what it prints for each of args (usage
// output on stdout or stderr, whatever the exit status).
func helpOf(t *testing.T, name string, args ...[]string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", bin, "./cmd/"+name)
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	var all strings.Builder
	for _, a := range args {
		out, _ := exec.Command(bin, a...).CombinedOutput()
		all.Write(out)
	}
	if all.Len() == 0 {
		t.Fatalf("%s %v printed nothing", name, args)
	}
	return all.String()
}

// TestPagesNameEveryFlag: every long option that a program's --help names is
// in its manual page.
func TestPagesNameEveryFlag(t *testing.T) {
	for _, tc := range []struct {
		name, page string
		args       [][]string
	}{
		{"prhelper", "prhelper.8", [][]string{{"--help"}}},
		{"prpersist", "prpersist.8", [][]string{{"-h"}, {"-hh"}}},
		{"prhelperctl", "prhelperctl.8", [][]string{{"--help"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat("../../cmd/" + tc.name); err != nil {
				t.Skipf("no cmd/%s in this tree: its page is checked once it exists", tc.name)
			}
			help := helpOf(t, tc.name, tc.args...)
			page := roffText(t, tc.page)
			flags := map[string]bool{}
			for _, f := range longFlag.FindAllString(help, -1) {
				flags[f] = true
			}
			if len(flags) < 3 {
				t.Fatalf("%s's help names only %d options:\n%s", tc.name, len(flags), help)
			}
			for f := range flags {
				if !strings.Contains(page, f) {
					t.Errorf("%s --help names %s, %s does not", tc.name, f, tc.page)
				}
			}
			t.Logf("%s: %d options of --help, each in %s", tc.name, len(flags), tc.page)
		})
	}
}
