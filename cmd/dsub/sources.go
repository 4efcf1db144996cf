package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/dsub-dev/dsub/distributor"
)

// inputSource is one of GNU parallel's input sources on the command
// line: the values after :::, or the lines of a file after ::::.
type inputSource struct {
	name   string // for errors: "::: (source 2)", or the file's name
	values []string
	linked bool // :::+ or ::::+: paired with the source before it
}

// Source markers, as GNU parallel spells them.
const (
	mValues       = ":::"
	mFiles        = "::::"
	mValuesLinked = ":::+"
	mFilesLinked  = "::::+"
)

func isMarker(a string) bool {
	return a == mValues || a == mFiles || a == mValuesLinked || a == mFilesLinked
}

// splitSources cuts args at the first source marker: what comes before is
// the command template, what follows are the input sources. Each file
// after :::: is a source of its own, as in GNU parallel. Nothing is read
// yet: readSources reads the files.
func splitSources(args []string) (template []string, srcs []inputSource, err error) {
	i := 0
	for i < len(args) && !isMarker(args[i]) {
		i++
	}
	template = args[:i]
	for i < len(args) {
		marker := args[i]
		j := i + 1
		for j < len(args) && !isMarker(args[j]) {
			j++
		}
		vals := args[i+1 : j]
		linked := strings.HasSuffix(marker, "+")
		if len(vals) == 0 {
			return nil, nil, usagef("run: %s (input source %d) has no values", marker, len(srcs)+1)
		}
		if linked && len(srcs) == 0 {
			return nil, nil, usagef("run: %s links to the input source before it, and there is none", marker)
		}
		if strings.HasPrefix(marker, mFiles) {
			for k, file := range vals {
				srcs = append(srcs, inputSource{name: file, values: nil, linked: linked && k == 0})
			}
		} else {
			srcs = append(srcs, inputSource{name: fmt.Sprintf("%s (input source %d)", marker, len(srcs)+1), values: vals, linked: linked})
		}
		i = j
	}
	return template, srcs, nil
}

// readSources reads the files of :::: sources, each line a value as GNU
// parallel reads them: blank and comment lines too (unlike --args-file,
// where they are not jobs).
func readSources(srcs []inputSource, stdin io.Reader) error {
	for i := range srcs {
		s := &srcs[i]
		if s.values != nil {
			continue
		}
		var r io.Reader = stdin
		if s.name != "-" {
			fh, err := os.Open(s.name)
			if err != nil {
				return usagef("run: %s: %v", mFiles, err)
			}
			defer fh.Close()
			r = fh
		} else if stdin == nil {
			return usagef("run: %s -: no stdin", mFiles)
		}
		lr := distributor.NewValueReader(r, s.name)
		for {
			line, _, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return usageError{err}
			}
			s.values = append(s.values, line)
		}
		if len(s.values) == 0 {
			return usagef("run: %s %s: no input lines", mFiles, s.name)
		}
	}
	return nil
}

// combinations are the jobs of several input sources, as GNU parallel
// makes them: every combination of the sources' values, the last source
// varying fastest; linked sources (:::+) advance together and stop at
// the shortest.
type combinations struct {
	groups [][]inputSource // linked sources share a group
	sizes  []int
	total  int
}

// maxCombined bounds the jobs that input sources combine into.
const maxCombined = 1 << 32

func newCombinations(srcs []inputSource) (*combinations, error) {
	c := &combinations{total: 1}
	for _, s := range srcs {
		if s.linked {
			g := len(c.groups) - 1
			c.groups[g] = append(c.groups[g], s)
			c.sizes[g] = min(c.sizes[g], len(s.values))
			continue
		}
		c.groups = append(c.groups, []inputSource{s})
		c.sizes = append(c.sizes, len(s.values))
	}
	for _, n := range c.sizes {
		if c.total > maxCombined/max(n, 1) {
			return nil, usagef("run: the input sources combine into more than %d jobs", maxCombined)
		}
		c.total *= n
	}
	return c, nil
}

// values are job n's values (0-based), one per source, in source order.
func (c *combinations) values(n int) []string {
	idx := make([]int, len(c.groups))
	for g := len(c.groups) - 1; g >= 0; g-- {
		idx[g] = n % c.sizes[g]
		n /= c.sizes[g]
	}
	var out []string
	for g, group := range c.groups {
		for _, s := range group {
			out = append(out, s.values[idx[g]])
		}
	}
	return out
}

// columns splits each value by colsep (nil: each value is one column).
func columns(values []string, colsep *regexp.Regexp) []string {
	if colsep == nil {
		return values
	}
	var out []string
	for _, v := range values {
		out = append(out, distributor.Columns(v, colsep)...)
	}
	return out
}

// absSourceFiles makes the relative file names after :::: and ::::+
// absolute against dir (a resumed run's original working directory).
func absSourceFiles(args []string, dir string) []string {
	out := append([]string(nil), args...)
	inFiles := false
	for i, a := range out {
		if isMarker(a) {
			inFiles = strings.HasPrefix(a, mFiles)
			continue
		}
		if inFiles && a != "-" && !filepath.IsAbs(a) && dir != "" {
			out[i] = filepath.Join(dir, a)
		}
	}
	return out
}
