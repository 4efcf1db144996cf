package agent

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

// countingWriter counts the writes that reach the transport.
type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

// Frames written within the coalescing delay reach the transport in one
// write, whole and in order; without the delay, each is its own write.
func TestCoalescingWriter(t *testing.T) {
	for _, tt := range []struct {
		delay     time.Duration
		maxWrites int
	}{
		{0, 200},
		{50 * time.Millisecond, 1},
	} {
		cw := &countingWriter{}
		w := NewCoalescingWriter(cw, tt.delay)
		for i := 0; i < 200; i++ {
			if err := w.Write(Frame{Type: TStarted, Handle: uint32(i), Payload: []byte{0, 0, 0, 1}}); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			cw.mu.Lock()
			n := cw.buf.Len()
			cw.mu.Unlock()
			if n == 200*13 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		cw.mu.Lock()
		writes, data := cw.writes, append([]byte(nil), cw.buf.Bytes()...)
		cw.mu.Unlock()
		if tt.delay > 0 && writes > tt.maxWrites || tt.delay == 0 && writes != tt.maxWrites {
			t.Errorf("delay %v: 200 frames in %d writes, want %d", tt.delay, writes, tt.maxWrites)
		}
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 200; i++ {
			f, err := r.Read()
			if err != nil || f.Handle != uint32(i) || f.Type != TStarted {
				t.Fatalf("delay %v: frame %d read back as %+v, %v", tt.delay, i, f, err)
			}
		}
	}
}
