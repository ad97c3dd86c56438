package multipathd

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

func TestParsePaths(t *testing.T) {
	tests := []struct {
		name  string
		reply string
		want  []Path
		bad   bool
	}{
		{name: "no paths: multipathd's generic ok", reply: "ok\n", want: []Path{}},
		{name: "empty", reply: "", want: []Path{}},
		{
			name: "two paths of one map and an orphan",
			reply: "sda|8:0|active|ready|running|mpatha\n" +
				"sdb|8:16|failed|faulty|offline|mpatha\n" +
				"sdc|8:32|undef|undef|unknown|[orphan]\n",
			want: []Path{
				{Dev: "sda", DevT: "8:0", Map: "mpatha", DMState: "active", CheckerState: "ready", DevState: "running", Online: true},
				{Dev: "sdb", DevT: "8:16", Map: "mpatha", DMState: "failed", CheckerState: "faulty", DevState: "offline"},
				{Dev: "sdc", DevT: "8:32", Map: "", DMState: "undef", CheckerState: "undef", DevState: "unknown"},
			},
		},
		{
			name:  "checker state with a blank, alias with a bar",
			reply: "sdd|8:48|active|i/o pending|running|odd|name\n",
			want:  []Path{{Dev: "sdd", DevT: "8:48", Map: "odd|name", DMState: "active", CheckerState: "i/o pending", DevState: "running", Online: true}},
		},
		{
			name:  "nvme, no trailing newline, CRLF tolerated",
			reply: "nvme0n1|259:0|active|ghost|running|36001405aaaa\r\nsde|8:64|active|ready|running|m2",
			want: []Path{
				{Dev: "nvme0n1", DevT: "259:0", Map: "36001405aaaa", DMState: "active", CheckerState: "ghost", DevState: "running", Online: true},
				{Dev: "sde", DevT: "8:64", Map: "m2", DMState: "active", CheckerState: "ready", DevState: "running", Online: true},
			},
		},
		{name: "too few fields", reply: "sda|8:0|active|ready|running\n", bad: true},
		{name: "padded columns (not raw)", reply: "sda  8:0 active ready running mpatha\n", bad: true},
		{name: "bad dev_t", reply: "sda|8-0|active|ready|running|m\n", bad: true},
		{name: "empty dev", reply: "|8:0|active|ready|running|m\n", bad: true},
		{name: "command reference", reply: "multipath-tools v0.9.4 (12/19, 2022)\nCLI commands reference:\n", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePaths(tt.reply)
			if tt.bad {
				if !errors.Is(err, ErrUnexpectedReply) {
					t.Fatalf("err = %v, want ErrUnexpectedReply", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestPathUsable(t *testing.T) {
	tests := []struct {
		p    Path
		want bool
	}{
		{Path{DMState: "active", CheckerState: "ready"}, true},
		{Path{DMState: "active", CheckerState: "ghost"}, true},
		{Path{DMState: "failed", CheckerState: "ready"}, false},
		{Path{DMState: "active", CheckerState: "i/o pending"}, false},
		{Path{DMState: "active", CheckerState: "faulty"}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Usable(); got != tt.want {
			t.Errorf("%+v.Usable() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestParseMaps(t *testing.T) {
	got, err := ParseMaps("dm-0|active|36001405aaaa|mpatha\ndm-1|suspend|36001405bbbb|36001405bbbb\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []Map{
		{Name: "mpatha", WWID: "36001405aaaa", Sysfs: "dm-0", DMState: "active"},
		{Name: "36001405bbbb", WWID: "36001405bbbb", Sysfs: "dm-1", DMState: "suspend"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if got, err := ParseMaps("ok\n"); err != nil || len(got) != 0 {
		t.Fatalf("ParseMaps(ok) = %v, %v", got, err)
	}
	for _, bad := range []string{"dm-0|active|wwid\n", "dm-0|active|wwid|\n"} {
		if _, err := ParseMaps(bad); !errors.Is(err, ErrUnexpectedReply) {
			t.Errorf("ParseMaps(%q) err = %v, want ErrUnexpectedReply", bad, err)
		}
	}
}

func TestPathsAndMapsCommands(t *testing.T) {
	addr := pathSocket(t)
	d := startCanned(t, addr, map[string]string{
		"show paths raw format %d|%D|%t|%T|%o|%m": "sda|8:0|active|ready|running|mpatha\nsdb|8:16|active|ready|running|mpathb\nsdc|8:32|failed|faulty|running|mpatha\n",
		"show maps raw format %d|%t|%w|%n":        "dm-0|active|3600a|mpatha\n",
	})
	c := New(Options{Addresses: []string{addr}})
	ctx := context.Background()
	paths, err := c.Paths(ctx)
	if err != nil || len(paths) != 3 {
		t.Fatalf("Paths = %+v, %v", paths, err)
	}
	mp, err := c.MapPaths(ctx, "mpatha")
	if err != nil || len(mp) != 2 || mp[0].Dev != "sda" || mp[1].Dev != "sdc" {
		t.Fatalf("MapPaths(mpatha) = %+v, %v", mp, err)
	}
	maps, err := c.Maps(ctx)
	if err != nil || len(maps) != 1 || maps[0].Name != "mpatha" {
		t.Fatalf("Maps = %+v, %v", maps, err)
	}
	cmds, _ := d.received()
	wantCmds := []string{
		"show paths raw format %d|%D|%t|%T|%o|%m",
		"show paths raw format %d|%D|%t|%T|%o|%m",
		"show maps raw format %d|%t|%w|%n",
	}
	if !reflect.DeepEqual(cmds, wantCmds) {
		t.Fatalf("commands %q, want %q", cmds, wantCmds)
	}
	// The format must reach multipathd as one word: no blank in it.
	for _, f := range []string{pathsFormat, mapsFormat} {
		for i := 0; i < len(f); i++ {
			if f[i] <= ' ' || f[i] == '"' || f[i] == '#' || f[i] == '!' {
				t.Errorf("format %q has %q, which multipathd's tokenizer would split at", f, f[i])
			}
		}
	}
}

func TestPathsErrors(t *testing.T) {
	addr := pathSocket(t)
	startCanned(t, addr, map[string]string{
		"show paths raw format %d|%D|%t|%T|%o|%m": "garbage\n",
	})
	c := New(Options{Addresses: []string{addr}})
	if _, err := c.Paths(context.Background()); !errors.Is(err, ErrUnexpectedReply) {
		t.Errorf("Paths(garbage) = %v, want ErrUnexpectedReply", err)
	}
	if _, err := c.Maps(context.Background()); !errors.Is(err, ErrFailed) {
		t.Errorf("Maps(fail) = %v, want ErrFailed", err)
	}
}
