package main

import (
	"maps"
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	tests := []struct {
		in   string
		want map[string]int64
	}{
		{"", map[string]int64{}},
		{"The cat; the HAT.\nthe-end 42", map[string]int64{"the": 3, "cat": 1, "hat": 1, "end": 1, "42": 1}},
		{"Ünïcode ünïcode, façade", map[string]int64{"ünïcode": 2, "façade": 1}},
		{"  \t\n  ", map[string]int64{}},
	}
	for _, tt := range tests {
		got := map[string]int64{}
		if err := count(strings.NewReader(tt.in), got); err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(got, tt.want) {
			t.Errorf("count(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
