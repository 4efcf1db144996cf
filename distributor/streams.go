package distributor

import (
	"errors"
	"sync"

	"github.com/dsub-dev/dsub/records"
)

// streamSet is a run's output streams, one per host, opened on a host's
// first execution. Executions append to them from their goroutines; the
// dispatcher syncs them before each journal commit, so that a committed
// result never locates output that is not on disk.
type streamSet struct {
	dir RunDir
	mu  sync.Mutex
	w   map[string]*records.StreamWriter
}

// get is host's stream, opened (a resumed run's repaired, then appended
// to) if this is its first use.
func (s *streamSet) get(host string) (*records.StreamWriter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.w[host]; w != nil {
		return w, nil
	}
	w, err := records.CreateStream(s.dir.OutputStream(host))
	if err != nil {
		return nil, err
	}
	if s.w == nil {
		s.w = map[string]*records.StreamWriter{}
	}
	s.w[host] = w
	return w, nil
}

func (s *streamSet) all() []*records.StreamWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*records.StreamWriter, 0, len(s.w))
	for _, w := range s.w {
		out = append(out, w)
	}
	return out
}

// Sync makes every record written so far durable.
func (s *streamSet) Sync() error {
	var err error
	for _, w := range s.all() {
		err = errors.Join(err, w.Sync())
	}
	return err
}

// Close syncs and closes every stream.
func (s *streamSet) Close() error {
	var err error
	for _, w := range s.all() {
		err = errors.Join(err, w.Close())
	}
	return err
}
