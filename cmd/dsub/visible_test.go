package main

import "testing"

func TestVisible(t *testing.T) {
	for in, want := range map[string]string{
		"plain text, é ünïcode\n\tok": "plain text, é ünïcode\n\tok",
		"\x1b[2J\x1b]0;t\x07":         `\x1b[2J\x1b]0;t\x07`,
		"cr\rback\bspace\x7f":         `cr\x0dback\x08space\x7f`,
		"c1 \u009b31m":                `c1 \x9b31m`,
		"bad \xff utf8":               `bad \xff utf8`,
	} {
		if got := visible(in); got != want {
			t.Errorf("visible(%q) = %q, want %q", in, got, want)
		}
	}
}
