package remote

import (
	"strings"
	"testing"
)

// TestCappedBuffer: what is written past the limit is dropped, writes
// never fail, and the truncation is reported.
func TestCappedBuffer(t *testing.T) {
	c := NewCappedBuffer(10)
	for _, w := range []string{"hello", " world", strings.Repeat("x", 1<<20)} {
		if n, err := c.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", len(w), n, err)
		}
	}
	if c.String() != "hello worl" || !c.Truncated() {
		t.Errorf("kept %q, truncated %v", c.String(), c.Truncated())
	}
	if d := NewCappedBuffer(10); func() bool { d.Write([]byte("short")); return d.Truncated() }() {
		t.Error("a short write reported truncation")
	}
}
