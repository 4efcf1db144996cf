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
	if _, err := exec.LookPath("parallel"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: GNU parallel, the oracle, is missing (scripts/setup.sh installs it)")
		}
		t.Skip("GNU parallel, the oracle, is not installed")
	}
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
	template := []string{"{}", "{.}", "{/}", "{//}", "{/.}", "n{#}", "--"}

	var out, errb bytes.Buffer
	// No hosts file exists: a dry run contacts no host.
	args := append([]string{"run", "--dry-run", "--hosts", filepath.Join(t.TempDir(), "none.toml"), "--binary", "/bin/echo", "--args-file", in, "--"}, template...)
	if err := run(context.Background(), args, strings.NewReader(""), &out, &errb); err != nil {
		t.Fatalf("dsub run --dry-run: %v\n%s", err, errb.String())
	}
	want, err := exec.Command("parallel", append([]string{"--will-cite", "--dry-run", "-k", "-a", in, "/bin/echo"}, template...)...).Output()
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
}
