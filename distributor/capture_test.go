package distributor

import (
	"strings"
	"sync/atomic"
	"testing"
)

func TestResultWriter(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
		ok     bool
		long   bool
	}{
		{"last non-empty", []string{"log 1\nlog 2\n42\n\n  \n"}, "42", true, false},
		{"split writes", []string{"a\n4", "2", "\n"}, "42", true, false},
		{"no newline at end", []string{"x\n17"}, "17", true, false},
		{"empty", []string{"\n\n"}, "", false, false},
		{"crlf", []string{"7\r\n"}, "7", true, false},
		{"too long", []string{strings.Repeat("x", MaxResultLine+1) + "\n"}, "", false, true},
		{"long then short", []string{strings.Repeat("x", MaxResultLine+1) + "\nok\n"}, "ok", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w resultWriter
			for _, s := range tt.writes {
				w.Write([]byte(s))
			}
			got, ok, long := w.Result()
			if got != tt.want || ok != tt.ok || long != tt.long {
				t.Errorf("Result() = %q %v %v, want %q %v %v", got, ok, long, tt.want, tt.ok, tt.long)
			}
		})
	}
}

func TestResultValue(t *testing.T) {
	for in, want := range map[string]string{
		"42": "42", `{"a":1}`: `{"a":1}`, "hello": `"hello"`, `"q"`: `"q"`, "1 2": `"1 2"`, " 3 ": "3",
	} {
		if got := string(ResultValue(in)); got != want {
			t.Errorf("ResultValue(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStderrWriter(t *testing.T) {
	var p atomic.Uint64
	w := stderrWriter{progress: &p}
	w.Write([]byte("warn 1\ndsub:progress 0.25\nwarn 2\ndsub:prog"))
	w.Write([]byte("ress 0.5\ndsub:progress 7\n"))
	if got := bitsFloat(p.Load()); got != 0.5 {
		t.Errorf("progress = %v, want 0.5", got)
	}
	if got := w.Tail(); got != "warn 1\nwarn 2" {
		t.Errorf("tail = %q", got)
	}
}
