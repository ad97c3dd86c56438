package multipathd

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

func TestSizeLenIsSizeT(t *testing.T) {
	want := map[string]int{"amd64": 8, "arm64": 8, "ppc64le": 8, "s390x": 8, "riscv64": 8, "386": 4, "arm": 4}
	if w, ok := want[runtime.GOARCH]; ok && SizeLen != w {
		t.Fatalf("SizeLen = %d on %s, want %d (C size_t)", SizeLen, runtime.GOARCH, w)
	}
}

// TestEncodeCommandBytes checks the frame byte by byte: the length prefix
// counts the terminating NUL (libmpathcmd's mpath_send_cmd sends strlen+1).
func TestEncodeCommandBytes(t *testing.T) {
	got, err := EncodeCommand("show paths")
	if err != nil {
		t.Fatal(err)
	}
	want := append(sizeBytes(11), "show paths\x00"...)
	if !bytes.Equal(got, want) {
		t.Fatalf("frame\n got % x\nwant % x", got, want)
	}
	if runtime.GOARCH == "amd64" {
		amd64 := []byte{11, 0, 0, 0, 0, 0, 0, 0, 's', 'h', 'o', 'w', ' ', 'p', 'a', 't', 'h', 's', 0}
		if !bytes.Equal(got, amd64) {
			t.Fatalf("amd64 frame\n got % x\nwant % x", got, amd64)
		}
	}
}

func TestEncodeCommandLimits(t *testing.T) {
	tests := []struct {
		name string
		cmd  string
		ok   bool
	}{
		{"simple", "show maps", true},
		{"longest (511 bytes + NUL = 512, _MAX_CMD_LEN)", strings.Repeat("a", 511), true},
		{"one byte too long", strings.Repeat("a", 512), false},
		{"empty", "", false},
		{"blank", "  \t", false},
		{"NUL inside", "show\x00paths", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, err := EncodeCommand(tt.cmd)
			if tt.ok {
				if err != nil {
					t.Fatalf("EncodeCommand: %v", err)
				}
				if len(frame) != SizeLen+len(tt.cmd)+1 {
					t.Fatalf("frame length %d, want %d", len(frame), SizeLen+len(tt.cmd)+1)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCommand) {
				t.Fatalf("err = %v, want ErrInvalidCommand", err)
			}
		})
	}
}

func TestReadReply(t *testing.T) {
	frame := func(n uint64, body string) []byte { return append(sizeBytes(n), body...) }
	tests := []struct {
		name    string
		in      []byte
		max     int
		want    string
		wantErr error // nil: success
	}{
		{"ok", replyFrame("ok\n"), 0, "ok\n", nil},
		{"only the NUL", replyFrame(""), 0, "", nil},
		{"text after an inner NUL is dropped (C string)", frame(6, "ab\x00cd\x00"), 0, "ab", nil},
		{"bytes after the frame are not read", append(replyFrame("x"), "garbage"...), 0, "x", nil},
		{"length at the limit", frame(4, "abc\x00"), 4, "abc", nil},
		{"length over the limit", frame(5, "abcd\x00"), 4, "", ErrProtocol},
		{"huge length", frame(1<<40, "x"), 0, "", ErrProtocol},
		{"zero length", frame(0, ""), 0, "", ErrProtocol},
		{"no NUL", frame(3, "abc"), 0, "", ErrProtocol},
		{"empty stream", nil, 0, "", ErrProtocol},
		{"short length", sizeBytes(5)[:SizeLen-1], 0, "", ErrProtocol},
		{"short body", frame(100, "only ten.."), 0, "", ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadReply(bytes.NewReader(tt.in), tt.max)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ReadReply = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

// errReader fails every read with err.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestReadReplyPassesIOErrors(t *testing.T) {
	boom := errors.New("boom")
	_, err := ReadReply(errReader{boom}, 0)
	if !errors.Is(err, boom) || errors.Is(err, ErrProtocol) {
		t.Fatalf("header: err = %v, want boom and not ErrProtocol", err)
	}
	r := io.MultiReader(bytes.NewReader(sizeBytes(10)), errReader{boom})
	_, err = ReadReply(r, 0)
	if !errors.Is(err, boom) || errors.Is(err, ErrProtocol) {
		t.Fatalf("body: err = %v, want boom and not ErrProtocol", err)
	}
}
