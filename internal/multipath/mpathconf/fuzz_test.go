package mpathconf

import (
	"errors"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"", debianConf, labConf, clusterConf,
		"defaults {\n reservation_key 0x1:aptpl\n}\n",
		"multipaths {\n multipath {\n  wwid \"a\"\"b\"\n  reservation_key file\n }\n}\n",
		"overrides {\n protocol {\n  type scsi:fcp\n }\n}\nfoo {\n bar {\n }\n}\n",
		"defaults {\r\n reservation_key 12\r\n}\r\n",
		"multipaths {\n multipath { wwid x }\n}\n",
		"defaults {\n alias_prefix \"unterminated\n}\n",
		"}\n", "{\n", "a {\n", "defaults\n", "\"\"\n", "!#\"{}\n",
		"defaults\n{\n reservation_key \"0x68\n}\n}\n",
		"foo {\n defaults {\n  reservation_key 0x61\n }\n}\n",
		"defaults {\n foo {\n }\n reservation_key 0x77\n}\n",
		"multipaths {\n multipath {\n  wwid a\n  reservation_key 0x63\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Parse(strings.NewReader(in), "f.conf")
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if se.Line < 1 || !strings.HasPrefix(err.Error(), "f.conf:") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("bad error %q", err)
			}
			return
		}
		check := func(k Key) {
			switch k.Source {
			case None:
				if k != (Key{}) {
					t.Fatalf("None key with content: %+v", k)
				}
			case Fixed, File:
				if !strings.HasPrefix(k.Where, "f.conf:") {
					t.Fatalf("key %+v without a place", k)
				}
				// Every key the parser accepts is one ParseKey accepts
				// back in its printed form.
				back, err := ParseKey(k.String())
				if err != nil || back.Value != k.Value || back.APTPL != k.APTPL || back.Source != k.Source {
					t.Fatalf("key %+v prints as %q which reads back as %+v, %v", k, k.String(), back, err)
				}
			default:
				t.Fatalf("bad source in %+v", k)
			}
		}
		check(c.ReservationKey(""))
		for w, k := range c.multipaths {
			if got := c.ReservationKey(w); got != k {
				t.Fatalf("ReservationKey(%q) = %+v, want the multipath entry %+v", w, got, k)
			}
			check(k)
		}
		for _, w := range c.Warnings {
			if !strings.HasPrefix(w, "f.conf:") {
				t.Fatalf("warning without a place: %q", w)
			}
		}
	})
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{
		"file", "0x1", "0X1", "1", "x1", "01", "0", "0x", "00", ":aptpl", "0x1:aptpl",
		"0xffffffffffffffff", "0x10000000000000000", "0x1:APTPL", "file:aptpl", "0x-1", "+1",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		k, err := ParseKey(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "invalid reservation_key ") {
				t.Fatalf("error %q has no context", err)
			}
			return
		}
		if k.Source != Fixed && k.Source != File {
			t.Fatalf("ParseKey(%q) = %+v: no source", in, k)
		}
		back, err := ParseKey(k.String())
		if err != nil || back != k {
			t.Fatalf("ParseKey(%q) = %+v prints as %q, reads back as %+v, %v", in, k, k.String(), back, err)
		}
		if strings.HasSuffix(in, ":aptpl") != k.APTPL {
			t.Fatalf("ParseKey(%q) APTPL = %v", in, k.APTPL)
		}
	})
}

func FuzzParsePRKeys(f *testing.F) {
	for _, s := range []string{
		"", prkeysHeader,
		prkeysHeader + "0x00000000001a2b3c " + wwidA + "\n0X0000000000abcdef " + wwidB + "\n",
		"#x00000000001a2b3c a\n0x0000000000000001 a\n",
		"0x1 a\n", "0x0000000000000001  a\n", "0x000000000000000g a\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		keys, err := ParsePRKeys(strings.NewReader(in), "prkeys")
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Line < 1 {
				t.Fatalf("error %v is not a SyntaxError with a line", err)
			}
			return
		}
		for w, k := range keys {
			if w == "" || w[0] == ' ' || k.Source != File || !strings.HasPrefix(k.Where, "prkeys:") {
				t.Fatalf("bad entry %q: %+v", w, k)
			}
		}
	})
}
