package distributor

import (
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestTemplateExpand(t *testing.T) {
	tests := []struct {
		args       []string
		job, count int
		cols       []string
		want       string
	}{
		{[]string{"--shard", "{shard}", "--of", "{shards}"}, 3, 16, nil, "--shard|2|--of|16"},
		{[]string{"n={#}", "{}"}, 7, 0, []string{"a b  c"}, "n=7|a b  c"},
		{[]string{"{2}-{1}", "{3}", "{9}"}, 1, 0, []string{"x", "y", "z"}, "y-x|z|"},
		{[]string{"{unknown}", "{ }", "awk '{print}'"}, 1, 0, []string{"l"}, "{unknown}|{ }|awk '{print}'"},
		{[]string{"{#}{#}"}, 12, 0, nil, "1212"},
		// {} of several columns is several words; text around it sticks
		// to the first and the last, as a shell would split it.
		{[]string{"x{}y", "{}"}, 1, 0, []string{"a b", "c", "d"}, "xa b|c|dy|a b|c|d"},
		{[]string{"{/}"}, 1, 0, []string{"p/a.x", "q/b.y"}, "a.x|b.y"},
		// GNU parallel's path forms, on the line and on a column.
		{[]string{"{.}", "{/}", "{//}", "{/.}"}, 1, 0, []string{"dir.d/sub/file.tar.gz"}, "dir.d/sub/file.tar|file.tar.gz|dir.d/sub|file.tar"},
		{[]string{"{.}", "{/}", "{//}", "{/.}"}, 1, 0, []string{"noext"}, "noext|noext|.|noext"},
		{[]string{"{.}", "{/}", "{//}", "{/.}"}, 1, 0, []string{"/abs"}, "/abs|abs|/|abs"},
		{[]string{"{.}", "{/}", "{//}", "{/.}"}, 1, 0, []string{"a.d/"}, "a.d/||.|"},
		{[]string{"{.}", "{/}", "{//}", "{/.}"}, 1, 0, []string{".hidden"}, "|.hidden|.|"},
		{[]string{"{2.}", "{2/}", "{2//}", "{2/.}", "{12}"}, 1, 0, []string{"x", "a/b.c"}, "a/b|b.c|a|b|"},
		{[]string{"{10}"}, 1, 0, strings.Fields("1 2 3 4 5 6 7 8 9 ten"), "ten"},
		{[]string{"{0}", "{.x}", "{1..}"}, 1, 0, []string{"l"}, "{0}|{.x}|{1..}"},
	}
	for _, tt := range tests {
		got := strings.Join(NewTemplate(tt.args).Expand(tt.job, tt.count, tt.cols), "|")
		if got != tt.want {
			t.Errorf("Expand(%q, %d, %d, %q) = %q, want %q", tt.args, tt.job, tt.count, tt.cols, got, tt.want)
		}
	}
	if tp := NewTemplate([]string{"{1}"}); !tp.UsesInput() || tp.UsesCount() {
		t.Error("UsesInput/UsesCount wrong for {1}")
	}
	if tp := NewTemplate([]string{"{shards}"}); tp.UsesInput() || !tp.UsesCount() {
		t.Error("UsesInput/UsesCount wrong for {shards}")
	}
}

// WithInput appends {} to a template with no placeholder at all, as GNU
// parallel does; any placeholder, {#} and {%} included, keeps it as it is.
func TestTemplateWithInput(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "a|b c"},
		{[]string{"gzip"}, "gzip|a|b c"},
		{[]string{"echo", "{foo}"}, "echo|{foo}|a|b c"},
		{[]string{"echo", "n{#}"}, "echo|n3"},
		{[]string{"echo", "{%}"}, "echo|" + SlotMark},
		{[]string{"echo", "{shards}"}, "echo|9"},
		{[]string{"echo", "{2}"}, "echo|b c"},
	}
	for _, tt := range tests {
		got := strings.Join(NewTemplate(tt.args).WithInput().Expand(3, 9, []string{"a", "b c"}), "|")
		if got != tt.want {
			t.Errorf("WithInput(%q) expands to %q, want %q", tt.args, got, tt.want)
		}
	}
}

// ExpandShell joins the arguments as a command line and quotes each value.
func TestTemplateExpandShell(t *testing.T) {
	tp := NewTemplate([]string{"gzip -9 <{1}", ">", "{1.}.gz;", "echo", "{#}", "{2}", "{3}", "{}"})
	got := tp.ExpandShell(4, 0, []string{"it's a.txt", "b"})
	want := `gzip -9 <'it'\''s a.txt' > 'it'\''s a'.gz; echo 4 b  'it'\''s a.txt' b`
	if got != want {
		t.Errorf("ExpandShell = %q, want %q", got, want)
	}
	if c := Columns("a\tb\t\tc", regexp.MustCompile(`\t+`)); !slices.Equal(c, []string{"a", "b", "c"}) {
		t.Errorf("Columns = %q", c)
	}
}

func TestLineReader(t *testing.T) {
	long := strings.Repeat("x", 200<<10)
	lr := NewLineReader(strings.NewReader("a\r\n\n b \n"+long+"\nlast"), "in")
	var got []string
	var nums []int
	for {
		l, n, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l)
		nums = append(nums, n)
	}
	if len(got) != 4 || got[0] != "a" || got[1] != " b " || got[2] != long || got[3] != "last" {
		t.Errorf("lines = %q", got)
	}
	if nums[3] != 5 {
		t.Errorf("line numbers = %v", nums)
	}
	if n, _ := CountLines(strings.NewReader("1\n\n2\n3"), "x"); n != 3 {
		t.Errorf("CountLines = %d", n)
	}
}

// The path forms match GNU parallel itself, run as the oracle on random
// paths: spaces, dots, leading dashes, unicode, slashes at either end.
func TestTemplateMatchesGNUParallel(t *testing.T) {
	if _, err := exec.LookPath("parallel"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: GNU parallel, the oracle, is missing (scripts/setup.sh installs it)")
		}
		t.Skip("GNU parallel, the oracle, is not installed")
	}
	rng := rand.New(rand.NewPCG(7, 11))
	parts := []string{"a", "b c", ".", "..", "-x", "é", "f.txt", "g.tar.gz", ".h", "i.", "dir.d", " ", "j k.l"}
	var lines []string
	for len(lines) < 150 {
		var b strings.Builder
		if rng.IntN(4) == 0 {
			b.WriteString("/")
		}
		for n := 1 + rng.IntN(4); n > 0; n-- {
			b.WriteString(parts[rng.IntN(len(parts))])
			if n > 1 || rng.IntN(5) == 0 {
				b.WriteString([]string{"/", "/", "//"}[rng.IntN(3)])
			}
		}
		l := b.String()
		if strings.TrimSpace(l) == "" || strings.HasPrefix(strings.TrimSpace(l), "#") || l != strings.TrimSpace(l) {
			continue // not a job line for dsub, or trimmed by it
		}
		lines = append(lines, l)
	}
	in := filepath.Join(t.TempDir(), "in")
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	forms := []string{"{}", "{.}", "{/}", "{//}", "{/.}"}
	// Each job prints its arguments NUL-terminated, then a record end.
	cmd := exec.Command("parallel", append([]string{"--will-cite", "-k", "-a", in, "printf", `%s\\0`}, append(forms, "--")...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("parallel: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "--\x00"), "--\x00")
	if len(got) != len(lines) {
		t.Fatalf("parallel ran %d jobs for %d lines", len(got), len(lines))
	}
	tp := NewTemplate(forms)
	for i, l := range lines {
		want := strings.Split(strings.TrimSuffix(got[i], "\x00"), "\x00")
		if ours := tp.Expand(i+1, 0, []string{l}); !slices.Equal(ours, want) {
			t.Errorf("%q: dsub %q, GNU parallel %q", l, ours, want)
		}
	}
}
