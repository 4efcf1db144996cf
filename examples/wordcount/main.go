// Command wordcount is dsub's MapReduce example: it counts the words of
// the files it is given and prints one JSON object, word → count, as the
// last line of stdout. dsub's keyed reduce sums such objects per key:
//
//	ls corpus/*.txt | dsub run --build ./examples/wordcount --transfer \
//	    --args-file - --reduce sum -- '{}'
//
// --transfer puts each file in its job's directory on its host.
//
// A word is a maximal run of letters and digits, lowercased.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: wordcount FILE...")
		os.Exit(2)
	}
	counts := map[string]int64{}
	for _, name := range os.Args[1:] {
		if err := countFile(name, counts); err != nil {
			fmt.Fprintln(os.Stderr, "wordcount:", err)
			os.Exit(1)
		}
	}
	b, err := json.Marshal(counts) // keys sorted
	if err != nil {
		fmt.Fprintln(os.Stderr, "wordcount:", err)
		os.Exit(1)
	}
	fmt.Println(string(b))
}

func countFile(name string, counts map[string]int64) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return count(f, counts)
}

// count adds the words of r to counts.
func count(r io.Reader, counts map[string]int64) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	sc.Split(bufio.ScanWords)
	for sc.Scan() {
		for _, w := range strings.FieldsFunc(sc.Text(), func(c rune) bool { return !unicode.IsLetter(c) && !unicode.IsDigit(c) }) {
			counts[strings.ToLower(w)]++
		}
	}
	return sc.Err()
}
