package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"github.com/dsub-dev/dsub/testenv"
)

// The README's MapReduce: examples/wordcount maps over files on the hosts
// and the keyed `--reduce sum` adds the counts per word on the master.
// The total is checked against counts computed here, another way.
func TestWordCountMapReduce(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := []string{"the", "cat", "Hat", "sat", "on", "a", "mat", "façade", "42", "x"}
	want := map[string]int64{}
	var names []string
	args := []string{"run", "--hosts", cluster.HostsFile, "--logs", filepath.Join(dir, "logs"), "--build", "../../examples/wordcount"}
	for i := 1; i <= 12; i++ {
		var b strings.Builder
		for w := 0; w < 200+rng.IntN(300); w++ {
			b.WriteString(vocab[rng.IntN(len(vocab))])
			b.WriteString([]string{" ", "\n", ", ", ". ", "-"}[rng.IntN(5)])
		}
		name := fmt.Sprintf("part%02d.txt", i)
		os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o600)
		names = append(names, name)
		args = append(args, "--file", filepath.Join(dir, name))
		// Counted another way: split on anything not a letter or digit.
		for _, w := range strings.FieldsFunc(b.String(), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			want[strings.ToLower(w)]++
		}
	}
	cmd := exec.Command(bin, append(args, "--args-file", "-", "--reduce", "sum", "--", "{}")...)
	cmd.Stdin = strings.NewReader(strings.Join(names, "\n") + "\n")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dsub run: %v\n%s", err, errb.String())
	}
	var got map[string]int64
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("result %q: %v", out, err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("word counts\n got %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(string(out), `{"42":`) {
		t.Errorf("result %q: want one object, keys sorted", out)
	}
}
