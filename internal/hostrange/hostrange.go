// Package hostrange expands and folds pdsh/clush-style host ranges:
// "node[01-03,7].lab" is node01.lab, node02.lab, node03.lab and node07.lab.
// Expand turns patterns into names; Fold turns names back into the shortest
// patterns, for grouped output.
package hostrange

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxHosts bounds one expansion, so that a typo such as node[1-1000000000]
// is an error rather than an allocation of gigabytes; MaxBytes bounds
// its names' bytes (a long name around a wide range).
const (
	MaxHosts = 100000
	MaxBytes = 8 << 20
)

// Expand expands one pattern. Brackets hold comma-separated numbers or
// lo-hi ranges; a zero-padded bound ("01") pads every number to its width.
// Several bracket groups give their cartesian product, in order. A
// bracket group holding ':' is an IPv6 literal and is kept as is.
func Expand(pattern string) ([]string, error) {
	if pattern == "" {
		return nil, fmt.Errorf("empty host pattern")
	}
	out := []string{""}
	rest := pattern
	for rest != "" {
		i := strings.IndexByte(rest, '[')
		if i < 0 {
			out = appendAll(out, []string{rest})
			break
		}
		j := strings.IndexByte(rest[i:], ']')
		if j < 0 {
			return nil, fmt.Errorf("host pattern %q: unclosed '['", pattern)
		}
		j += i
		body := rest[i+1 : j]
		if strings.IndexByte(rest[:i], ']') >= 0 {
			return nil, fmt.Errorf("host pattern %q: unexpected ']'", pattern)
		}
		out = appendAll(out, []string{rest[:i]})
		if strings.Contains(body, ":") { // IPv6 literal
			out = appendAll(out, []string{rest[i : j+1]})
			rest = rest[j+1:]
			continue
		}
		nums, err := expandBody(body)
		if err != nil {
			return nil, fmt.Errorf("host pattern %q: %w", pattern, err)
		}
		if len(out)*len(nums) > MaxHosts {
			return nil, fmt.Errorf("host pattern %q expands to more than %d hosts", pattern, MaxHosts)
		}
		// Each name is at most the pattern's length and a number's.
		if len(out)*len(nums)*(len(pattern)+20) > MaxBytes {
			return nil, fmt.Errorf("host pattern %q expands to more than %d MiB of names", clip(pattern), MaxBytes>>20)
		}
		out = appendAll(out, nums)
		rest = rest[j+1:]
	}
	for _, r := range pattern {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == utf8.RuneError {
			return nil, fmt.Errorf("host pattern %q: stray space, control character or invalid UTF-8", pattern)
		}
	}
	for _, s := range out {
		if strings.ContainsAny(s, "[],") && !strings.HasPrefix(s, "[") {
			return nil, fmt.Errorf("host pattern %q: stray bracket or comma", pattern)
		}
	}
	return out, nil
}

// ExpandList expands a comma-separated list of patterns, honouring commas
// inside brackets: "a[1-2],b" is a1, a2, b.
func ExpandList(list string) ([]string, error) {
	var out []string
	bytes := 0
	for _, p := range SplitList(list) {
		names, err := Expand(p)
		if err != nil {
			return nil, err
		}
		if len(out)+len(names) > MaxHosts {
			return nil, fmt.Errorf("host list expands to more than %d hosts", MaxHosts)
		}
		out = append(out, names...)
		if bytes += len(names) * (len(p) + 20); bytes > MaxBytes {
			return nil, fmt.Errorf("host list expands to more than %d MiB of names", MaxBytes>>20)
		}
	}
	return out, nil
}

// clip is a pattern for a message: at most 64 bytes of it.
func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// SplitList splits at commas outside brackets, dropping empty items.
func SplitList(list string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(list); i++ {
		if i == len(list) || list[i] == ',' && depth == 0 {
			if s := strings.TrimSpace(list[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
			continue
		}
		switch list[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		}
	}
	return out
}

func appendAll(prefixes, suffixes []string) []string {
	out := make([]string, 0, len(prefixes)*len(suffixes))
	for _, p := range prefixes {
		for _, s := range suffixes {
			out = append(out, p+s)
		}
	}
	return out
}

func expandBody(body string) ([]string, error) {
	if body == "" {
		return nil, fmt.Errorf("empty range []")
	}
	var out []string
	for _, part := range strings.Split(body, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		if !isRange {
			hi = lo
		}
		a, err := parseNum(lo)
		if err != nil {
			return nil, err
		}
		b, err := parseNum(hi)
		if err != nil {
			return nil, err
		}
		if b < a {
			return nil, fmt.Errorf("range %q runs backwards", part)
		}
		if b-a >= MaxHosts || len(out)+int(b-a) >= MaxHosts {
			return nil, fmt.Errorf("range %q has more than %d hosts", part, MaxHosts)
		}
		width := 0
		if len(lo) > 1 && lo[0] == '0' {
			width = len(lo)
		}
		for n := a; n <= b; n++ {
			out = append(out, fmt.Sprintf("%0*d", width, n))
		}
	}
	return out, nil
}

func parseNum(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("missing number in range")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("number %q too large", s)
	}
	return n, nil
}
