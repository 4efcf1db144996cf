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

// The README's MapReduce, as it is written there:
//
//	ls corpus/*.txt | dsub run --build ./examples/wordcount --transfer --args-file - --reduce sum -- '{}'
//
// --transfer puts each file in its job's directory on its host,
// examples/wordcount maps over it there, and the keyed `--reduce sum` adds
// the counts per word on the master. The total is checked against counts
// computed here, another way.
func TestWordCountMapReduce(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	vocab := []string{"the", "cat", "Hat", "sat", "on", "a", "mat", "façade", "42", "x"}
	want := map[string]int64{}
	wordcount, _ := filepath.Abs("../../examples/wordcount")
	os.Mkdir(filepath.Join(dir, "corpus"), 0o700)
	for i := 1; i <= 12; i++ {
		var b strings.Builder
		for w := 0; w < 200+rng.IntN(300); w++ {
			b.WriteString(vocab[rng.IntN(len(vocab))])
			b.WriteString([]string{" ", "\n", ", ", ". ", "-"}[rng.IntN(5)])
		}
		name := fmt.Sprintf("corpus/part%02d.txt", i)
		os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o600)
		// Counted another way: split on anything not a letter or digit.
		for _, w := range strings.FieldsFunc(b.String(), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			want[strings.ToLower(w)]++
		}
	}
	cmd := exec.Command("sh", "-c", "ls corpus/*.txt | \"$DSUB\" run --hosts \"$HOSTS\" --build \"$WORDCOUNT\" --transfer --args-file - --reduce sum -- '{}'")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "DSUB="+bin, "HOSTS="+cluster.HostsFile, "WORDCOUNT="+wordcount)
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
