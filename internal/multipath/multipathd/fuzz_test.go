package multipathd

import (
	"bytes"
	"strings"
	"testing"
)

func FuzzReadReply(f *testing.F) {
	f.Add(replyFrame("ok\n"))
	f.Add(replyFrame(""))
	f.Add(append(sizeBytes(6), "ab\x00cd\x00"...))
	f.Add(append(sizeBytes(100), "short"...))
	f.Add(sizeBytes(1 << 40))
	f.Add(sizeBytes(0))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ReadReply(bytes.NewReader(in), 1<<16)
		if err != nil {
			return
		}
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("reply %q contains a NUL", got)
		}
		if len(in) < SizeLen+len(got)+1 {
			t.Fatalf("reply of %d bytes from %d input bytes", len(got), len(in))
		}
		// The frame it accepted re-encodes to a prefix of the input when
		// the reply had no inner NUL.
		n := getSize(in)
		if n == uint64(len(got)+1) && !bytes.Equal(replyFrame(got), in[:SizeLen+len(got)+1]) {
			t.Fatalf("accepted frame does not re-encode: % x", in)
		}
	})
}

func FuzzParsePaths(f *testing.F) {
	f.Add("ok\n")
	f.Add("sda|8:0|active|ready|running|mpatha\nsdb|8:16|failed|faulty|offline|[orphan]\n")
	f.Add("sdd|8:48|active|i/o pending|running|odd|name")
	f.Add("sda|8-0|active|ready|running|m\n")
	f.Add("\n\n|||||\n")
	f.Fuzz(func(t *testing.T, reply string) {
		paths, err := ParsePaths(reply)
		if err != nil {
			return
		}
		for _, p := range paths {
			if p.Dev == "" || !isDevT(p.DevT) || p.Map == orphanMap {
				t.Fatalf("accepted path %+v", p)
			}
			if p.Online != (p.DevState == "running") {
				t.Fatalf("Online inconsistent: %+v", p)
			}
		}
	})
}

func FuzzParseMaps(f *testing.F) {
	f.Add("ok\n")
	f.Add("dm-0|active|3600a|mpatha\n")
	f.Add("dm-0|active|wwid|\n")
	f.Fuzz(func(t *testing.T, reply string) {
		maps, err := ParseMaps(reply)
		if err != nil {
			return
		}
		for _, m := range maps {
			if m.Name == "" {
				t.Fatalf("accepted map %+v", m)
			}
		}
	})
}

func FuzzParsePRKey(f *testing.F) {
	for _, s := range []string{"none\n", "0x123abc\n", "0x123abc:aptpl\n", "0xffffffffffffffff", "0x0", "0x1:foo", "12", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		key, aptpl, set, err := ParsePRKey(reply)
		if err != nil {
			return
		}
		if !set {
			if key != 0 || aptpl {
				t.Fatalf("unset key %#x aptpl %v", key, aptpl)
			}
			return
		}
		// What we would send back parses to the same key and flag.
		k2, a2, s2, err := ParsePRKey(FormatPRKey(key, aptpl) + "\n")
		if err != nil || k2 != key || a2 != aptpl || !s2 {
			t.Fatalf("round trip of %#x/%v: %#x %v %v %v", key, aptpl, k2, a2, s2, err)
		}
	})
}

func FuzzParsePRStatus(f *testing.F) {
	for _, s := range []string{"0", "1", "set\n", "unset\n", "unknown\n", "2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, reply string) {
		st, err := ParsePRStatus(reply)
		if err == nil && st != PRStatusSet && st != PRStatusUnset && st != PRStatusUnknown {
			t.Fatalf("status %v", st)
		}
	})
}

// FuzzValidateName checks that an accepted name stays one word in
// multipathd's tokenizer (a model of alloc_strvec's word rules).
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"mpatha", "a b", "a#b", `a"b`, "dm-0", "ä", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		words := modelTokenize("getprkey map " + name)
		if len(words) != 3 || words[2] != name {
			t.Fatalf("accepted %q, tokenized as %q", name, words)
		}
	})
}

// modelTokenize splits like multipathd outside quotes: blanks and non-ASCII
// bytes separate words, '{' and '}' are words, '!' and '#' end the line.
func modelTokenize(s string) []string {
	var words []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			words = append(words, cur.String())
			cur.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b == '!' || b == '#':
			flush()
			return words
		case b == '{' || b == '}' || b == '"':
			flush()
			words = append(words, string(b))
		case b == ' ' || (b >= '\t' && b <= '\r') || b >= 0x80 || b == 0:
			flush()
		default:
			cur.WriteByte(b)
		}
	}
	flush()
	return words
}
