package main

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// visible renders control characters, other than newline and tab, and
// bytes that are not UTF-8 as \xNN escapes, so that text from a host
// (an error, a stderr tail) cannot move the cursor, retitle the window or
// otherwise drive the terminal when dsub shows it in a message or the
// progress display. Raw output streams (exec's lines, run's stdout) are
// never passed through it: they stay byte for byte.
func visible(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c >= 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t':
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0:
			fmt.Fprintf(&b, `\x%02x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}
