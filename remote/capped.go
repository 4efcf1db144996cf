package remote

import "sync"

// CappedBuffer keeps at most its limit of what is written to it and
// drops the rest, so that a hostile or broken host cannot exhaust the
// master's memory through a helper's output. Writes always succeed (the
// session is not torn down); Truncated tells that output was dropped.
type CappedBuffer struct {
	mu        sync.Mutex
	b         []byte
	limit     int
	truncated bool
}

// NewCappedBuffer keeps up to limit bytes.
func NewCappedBuffer(limit int) *CappedBuffer { return &CappedBuffer{limit: limit} }

func (c *CappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - len(c.b)
	if room < len(p) {
		c.truncated = true
		if room > 0 {
			c.b = append(c.b, p[:room]...)
		}
		return len(p), nil
	}
	c.b = append(c.b, p...)
	return len(p), nil
}

// String is what was kept.
func (c *CappedBuffer) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.b)
}

// Truncated reports whether output beyond the limit was dropped.
func (c *CappedBuffer) Truncated() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.truncated
}
