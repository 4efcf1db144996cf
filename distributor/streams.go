package distributor

import (
	"errors"
	"hash/fnv"
	"sync"

	"github.com/dsub-dev/dsub/records"
)

// streamFiles is how many output streams a run writes: a few, whatever
// the number of hosts, since each is fsynced before every journal commit
// (a stream per host cost 1,000 hosts' runs 40% of the master's CPU in
// fsync alone).
const streamFiles = 4

// streamSet is a run's output streams, output/0.dso to 3.dso, each opened
// on its first execution; a host's executions all go to one, chosen by
// its name. Executions append to them from their goroutines; the
// dispatcher syncs them before each journal commit, so that a committed
// result never locates output that is not on disk.
type streamSet struct {
	dir records.RunDir
	mu  sync.Mutex
	w   [streamFiles]*records.StreamWriter
}

// get is host's stream, opened (a resumed run's repaired, then appended
// to) if this is its first use.
func (s *streamSet) get(host string) (*records.StreamWriter, error) {
	h := fnv.New32a()
	h.Write([]byte(host))
	i := int(h.Sum32() % streamFiles)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.w[i]; w != nil {
		return w, nil
	}
	w, err := records.CreateStream(s.dir.OutputStream(i))
	if err != nil {
		return nil, err
	}
	s.w[i] = w
	return w, nil
}

func (s *streamSet) all() []*records.StreamWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*records.StreamWriter
	for _, w := range s.w {
		if w != nil {
			out = append(out, w)
		}
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
