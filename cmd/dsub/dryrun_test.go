package main

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// needParallel skips a test whose oracle, GNU parallel, is missing; in
// CI (CI=true) it fails it.
func needParallel(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("parallel"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: GNU parallel, the oracle, is missing (scripts/setup.sh installs it)")
		}
		t.Skip("GNU parallel, the oracle, is not installed")
	}
}

// shellWords parses each line of out as a shell would, one argv per
// line, by having sh read them.
func shellWords(t *testing.T, out string) [][]string {
	t.Helper()
	var script strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		script.WriteString("printf '%s\\0' " + l + "; printf '\\n'\n")
	}
	b, err := exec.Command("sh", "-c", script.String()).Output()
	if err != nil {
		t.Fatalf("sh reading the command lines: %v\n%s", err, out)
	}
	var argvs [][]string
	for _, rec := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\x00\n") {
		argvs = append(argvs, strings.Split(strings.TrimSuffix(rec, "\x00"), "\x00"))
	}
	return argvs
}

// --dry-run prints the jobs' command lines and runs nothing; read as
// shell words they are GNU parallel's --dry-run's, for the same template
// and input (parallel itself is the oracle).
func TestDryRunMatchesGNUParallel(t *testing.T) {
	needParallel(t)
	rng := rand.New(rand.NewPCG(3, 5))
	parts := []string{"a", "b c", ".", "-x", "é", "f.txt", "g.tar.gz", ".h", "$HOME", "it's", `q"uote`, "`id`", "*", "dir.d", "x;y", "\\"}
	var lines []string
	for len(lines) < 100 {
		var b strings.Builder
		for n := 1 + rng.IntN(4); n > 0; n-- {
			b.WriteString(parts[rng.IntN(len(parts))])
			if n > 1 {
				b.WriteString("/")
			}
		}
		if l := b.String(); strings.TrimSpace(l) == l && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	in := filepath.Join(t.TempDir(), "in")
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
	tests := []struct {
		name     string
		binary   string   // "" for shell mode
		template []string // parallel's command is binary then template
	}{
		{"replacement strings", "/bin/echo", []string{"{}", "{.}", "{/}", "{//}", "{/.}", "n{#}", "--"}},
		// No replacement string: parallel appends the line.
		{"implicit input, program", "/bin/echo", []string{"-n"}},
		{"implicit input, shell", "", []string{"wc", "-l"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			// No hosts file exists: a dry run contacts no host.
			args := []string{"run", "--dry-run", "--hosts", filepath.Join(t.TempDir(), "none.toml"), "--args-file", in}
			pcmd := tt.template
			if tt.binary != "" {
				args = append(args, "--binary", tt.binary)
				pcmd = append([]string{tt.binary}, pcmd...)
			}
			if err := run(context.Background(), append(append(args, "--"), tt.template...), strings.NewReader(""), &out, &errb); err != nil {
				t.Fatalf("dsub run --dry-run: %v\n%s", err, errb.String())
			}
			want, err := exec.Command("parallel", append([]string{"--will-cite", "--dry-run", "-k", "-a", in}, pcmd...)...).Output()
			if err != nil {
				t.Fatalf("parallel --dry-run: %v", err)
			}
			ours, theirs := shellWords(t, out.String()), shellWords(t, string(want))
			if len(ours) != len(lines) || len(theirs) != len(lines) {
				t.Fatalf("%d and %d command lines for %d inputs", len(ours), len(theirs), len(lines))
			}
			for i := range lines {
				if !slices.Equal(ours[i], theirs[i]) {
					t.Errorf("input %q: dsub %q, GNU parallel %q", lines[i], ours[i], theirs[i])
				}
			}
			if errb.Len() != 0 {
				t.Errorf("a dry run wrote to stderr: %s", errb.String())
			}
		})
	}
}

// randomValue is an input value with spaces, dots, slashes, leading
// dashes, quotes, unicode and shell metacharacters, never empty.
func randomValue(rng *rand.Rand) string {
	parts := []string{"a", "b c", ".", "-x", "é", "f.txt", "g.tar.gz", ".h", "$HOME", "it's", `q"uote`, "`id`", "*", "dir.d", "x;y", "ü n", "--"}
	var b strings.Builder
	for n := 1 + rng.IntN(3); n > 0; n-- {
		b.WriteString(parts[rng.IntN(len(parts))])
		if n > 1 {
			b.WriteString([]string{"/", "", "_"}[rng.IntN(3)])
		}
	}
	return b.String()
}

// Input sources on the command line (::: and ::::, linked with :::+),
// --colsep and the replacement strings, in shell mode (a command line) and
// with a program: read as shell words, every job's command line is GNU
// parallel --dry-run's, in the same order (parallel itself is the oracle).
func TestInputSourcesMatchGNUParallel(t *testing.T) {
	needParallel(t)
	rng := rand.New(rand.NewPCG(7, 9))
	values := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = randomValue(rng)
		}
		return out
	}
	dir := t.TempDir()
	file := func(name string, lines []string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		return p
	}
	// Lines of comma-separated columns, for --colsep; no column is empty.
	var csv []string
	for range 6 {
		csv = append(csv, strings.Join(values(1+rng.IntN(3)), ","))
	}
	seq := func(args ...any) []string {
		var out []string
		for _, a := range args {
			switch a := a.(type) {
			case string:
				out = append(out, a)
			case []string:
				out = append(out, a...)
			}
		}
		return out
	}
	tests := []struct {
		name  string
		flags []string // dsub's and parallel's (both spell them alike)
		args  []string // the template and the sources
	}{
		{"one source", nil, seq("echo", "{}", "{1}", "{.}", "{/}", "{//}", "{/.}", "n{#}", "{foo}", "{1x}", ":::", values(8))},
		{"combinations", nil, seq("printf", "%s|", "{2}", "{1/.}", "{3.}", "{}", ":::", values(3), ":::", values(2), ":::", values(3))},
		{"linked", nil, seq("echo", "{1}", "{2}", "{3}", "x{}y", ":::", values(4), ":::+", values(3), ":::", values(2))},
		{"file and colsep", []string{"--colsep", ","}, seq("echo", "{1}", "{2//}", "{}", "::::", file("csv", csv), ":::", values(2))},
		{"two files", nil, seq("echo", "{2}", "{1}", "::::", file("f1", values(3)), file("f2", values(2)))},
		// A :::: file's lines are values as they are: blank, spaces only
		// or starting with # (not comments, unlike --args-file).
		{"file lines as they are", nil, seq("echo", "x{}y", "{1/}", "::::", file("f3", seq(values(2), "", "# "+values(1)[0], "  ", "#", "crlf\r", values(1))))},
		{"program", []string{"--binary", "/bin/echo"}, seq("{1}", "--", "{2/}", "{#}", ":::", values(5), ":::+", values(5))},
		// No replacement string: the input is appended, as quoted words
		// ({} of every column), unless {#} or {%} is there; {foo} is
		// not a replacement string.
		{"implicit input", nil, seq("echo", ":::", values(5))},
		{"implicit combinations", nil, seq("printf", "%s|", ":::", values(3), ":::+", values(3), ":::", values(2))},
		{"implicit colsep", []string{"--colsep", ","}, seq("echo", "{foo}", "::::", file("csv2", csv))},
		{"job number only", nil, seq("echo", "n{#}", ":::", values(3))},
		{"implicit program", []string{"--binary", "/bin/echo"}, seq("-n", ":::", values(4))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			args := append(append([]string{"run", "--dry-run", "-w", "nohost"}, tt.flags...), "--")
			if err := run(context.Background(), append(args, tt.args...), strings.NewReader(""), &out, &errb); err != nil {
				t.Fatalf("dsub run --dry-run: %v\n%s", err, errb.String())
			}
			pflags, pargs := tt.flags, tt.args
			if len(pflags) > 0 && pflags[0] == "--binary" {
				pflags, pargs = nil, append([]string{tt.flags[1]}, tt.args...)
			}
			want, err := exec.Command("parallel", append(append([]string{"--will-cite", "--dry-run", "-k"}, pflags...), pargs...)...).Output()
			if err != nil {
				t.Fatalf("parallel --dry-run: %v", err)
			}
			ours, theirs := shellWords(t, out.String()), shellWords(t, string(want))
			if len(ours) != len(theirs) || len(ours) == 0 {
				t.Fatalf("%d jobs, GNU parallel %d:\n%s\n---\n%s", len(ours), len(theirs), out.String(), want)
			}
			for i := range ours {
				if !slices.Equal(ours[i], theirs[i]) {
					t.Errorf("job %d: dsub %q\n       GNU parallel %q", i+1, ours[i], theirs[i])
				}
			}
		})
	}
}
