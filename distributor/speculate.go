package distributor

import (
	"fmt"
	"slices"
	"time"

	"github.com/dsub-dev/dsub/queue"
)

// speculator decides which stragglers get a backup execution
// (RunOptions.Speculate). It belongs to the dispatcher goroutine.
type speculator struct {
	on    bool
	after time.Duration   // floor: never back up a job younger than this
	durs  []time.Duration // run times of the jobs recorded so far
	dirty bool            // durs not sorted since the last append

	started, won int
}

// backup is a speculative execution to launch.
type backup struct {
	e           queue.Exec
	host        string // where the original runs
	ran, median time.Duration
}

// done notes a recorded job's run time, and whether a backup won it.
func (s *speculator) done(d time.Duration, wasBackup bool) {
	if !s.on {
		return
	}
	s.durs = append(s.durs, d)
	s.dirty = true
	if wasBackup {
		s.won++
	}
}

func (s *speculator) median() time.Duration {
	if len(s.durs) == 0 {
		return 0
	}
	if s.dirty {
		slices.Sort(s.durs)
		s.dirty = false
	}
	return s.durs[len(s.durs)/2]
}

// pick starts, in q, backups of the oldest stragglers while slots are
// idle and no job waits: jobs running once, for longer than both the floor
// and twice the median run time. With no job done yet and no floor there
// is no basis to call a job slow, and nothing is picked.
func (s *speculator) pick(q *queue.Queue, running map[int]*execState, now time.Time) []backup {
	if !s.on || q.Pending() > 0 || q.FreeSlots() == 0 {
		return nil
	}
	med := s.median()
	limit := max(s.after, 2*med)
	if limit <= 0 {
		return nil
	}
	count := map[int]int{}
	for _, es := range running {
		count[es.job]++
	}
	var cands []*execState
	for _, es := range running {
		if count[es.job] == 1 && now.Sub(es.start) > limit {
			cands = append(cands, es)
		}
	}
	slices.SortFunc(cands, func(a, b *execState) int {
		if c := a.start.Compare(b.start); c != 0 {
			return c
		}
		return a.job - b.job
	})
	var out []backup
	for _, es := range cands {
		if q.FreeSlots() == 0 {
			break
		}
		if e, ok := q.Backup(es.job); ok {
			s.started++
			out = append(out, backup{e: e, host: es.host, ran: now.Sub(es.start), median: med})
		}
	}
	return out
}

func (b backup) String() string {
	typical := "no job done yet"
	if b.median > 0 {
		typical = "median " + b.median.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("job %d has run %s on %s (%s): backup on %s",
		b.e.Job.ID, b.ran.Round(time.Millisecond), b.host, typical, b.e.Host)
}
