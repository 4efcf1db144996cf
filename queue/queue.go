package queue

import (
	"errors"
	"fmt"
	mathbits "math/bits"
	"slices"
)

// Job is one unit of work. Payload is opaque to the queue.
type Job struct {
	ID      int    // 1-based job number, unique in the queue
	Pin     string // the only host that may run it; "" = any host
	Payload any
}

// Exec is one execution of a job on a host. A job may be executed more than
// once: after a failure, a lost host, or speculatively.
type Exec struct {
	Seq     int // execution number, unique in the queue, from 1
	Job     *Job
	Host    string
	Attempt int // this is the job's Attempt-th execution, from 1 (one taken back before it started does not count)
}

// Outcome is how an execution ended.
type Outcome int

const (
	Succeeded Outcome = iota // ran and produced a result
	Failed                   // the command failed: consumes a retry
	Lost                     // host or connection failed: requeued for free
	Canceled                 // the run is stopping: not requeued
	Returned                 // taken back before it started (from a host's window): requeued for free, elsewhere
)

// Disposition is what the queue did with a finished execution.
type Disposition int

const (
	Recorded  Disposition = iota // the job's first success: count it
	Requeued                     // the job will run again
	GaveUp                       // the job failed for good
	Discarded                    // the job was already finished: ignore this result
	Dropped                      // canceled: the job stays unfinished
)

func (d Disposition) String() string {
	return [...]string{"recorded", "requeued", "gave-up", "discarded", "dropped"}[d]
}

// HostState says whether a host takes jobs.
type HostState int

const (
	Up          HostState = iota
	Down                  // unreachable for now; may come back
	Quarantined           // failed too many jobs in a row: out for the run
)

func (s HostState) String() string { return [...]string{"up", "down", "quarantined"}[s] }

// Options tune the queue's policies.
type Options struct {
	// Retries is how many command failures a job may have and still be
	// retried: a job runs at most Retries+1 times for failures.
	Retries int
	// QuarantineAfter quarantines a host after this many consecutive
	// command failures on it (0: never).
	QuarantineAfter int
	// MaxLost bounds free requeues: a job lost this many times counts
	// its next loss as a failure (0: 10), so a job that kills every host
	// it touches cannot circle forever.
	MaxLost int
}

// HostStats count what happened on a host.
type HostStats struct {
	Execs, Succeeded, Failed, Lost, Discarded int
}

type host struct {
	name       string
	idx        int // its place in Queue.hosts
	slots      int
	running    int
	state      HostState
	consecFail int
	stats      HostStats
}

type jobState struct {
	job      *Job
	lost     int
	failures int
	execs    int
	running  int
	done     bool
	canceled bool            // Cancel: it ends as given up once no execution runs
	avoid    map[string]bool // hosts where it failed
	on       map[string]int  // hosts running it, with how many executions
}

// Queue is the scheduler. It is not safe for concurrent use: one goroutine
// (the dispatcher) owns it.
type Queue struct {
	opts    Options
	hosts   []*host
	byName  map[string]*host
	pending []*jobState            // FIFO of unpinned jobs; requeues go to the front
	pinned  map[string][]*jobState // per-host FIFO of pinned jobs
	jobs    map[int]*jobState      // every unfinished job
	rr      int                    // where the next Assign round starts
	seq     int
	closed  bool

	succeeded, gaveUp int
	upSlots           int      // the slots of the hosts that are Up
	running           int      // executions in flight, on all hosts
	free              []uint64 // bit i: hosts[i] is Up with a free slot
}

// New returns an empty queue.
func New(opts Options) *Queue {
	return &Queue{opts: opts, byName: map[string]*host{}, pinned: map[string][]*jobState{}, jobs: map[int]*jobState{}}
}

// AddHost adds a host with slots concurrent executions, in state Up.
func (q *Queue) AddHost(name string, slots int) error {
	if _, dup := q.byName[name]; dup {
		return fmt.Errorf("queue: host %q added twice", name)
	}
	if slots < 1 {
		return fmt.Errorf("queue: host %q: slots must be at least 1, got %d", name, slots)
	}
	h := &host{name: name, idx: len(q.hosts), slots: slots}
	if h.idx%64 == 0 {
		q.free = append(q.free, 0)
	}
	q.hosts = append(q.hosts, h)
	q.byName[name] = h
	q.upSlots += slots
	q.updateFree(h)
	return nil
}

// SetSlots changes a host's number of slots (at least 1).
func (q *Queue) SetSlots(name string, slots int) error {
	h, ok := q.byName[name]
	if !ok {
		return fmt.Errorf("queue: no host %q", name)
	}
	if h.state == Up {
		q.upSlots += max(slots, 1) - h.slots
	}
	h.slots = max(slots, 1)
	q.updateFree(h)
	return nil
}

// FailPinned finishes, as given up, every waiting job pinned to a host
// that will not run them, and returns those jobs.
func (q *Queue) FailPinned(name string) []*Job {
	var out []*Job
	for _, js := range q.pinned[name] {
		js.done = true
		delete(q.jobs, js.job.ID)
		q.gaveUp++
		out = append(out, js.job)
	}
	delete(q.pinned, name)
	return out
}

// Cancel gives up job id at the user's request. A job waiting in the
// queue is given up now (running false); one running is given up once
// its executions have ended, which the caller kills (running true): a
// success that ends one first still counts. ok is false for a job that
// is not waiting or running.
func (q *Queue) Cancel(id int) (running, ok bool) {
	js, live := q.jobs[id]
	if !live || js.done {
		return false, false
	}
	js.canceled = true
	if js.running > 0 {
		return true, true
	}
	if p := js.job.Pin; p != "" {
		q.pinned[p] = slices.DeleteFunc(q.pinned[p], func(o *jobState) bool { return o == js })
	} else {
		q.pending = slices.DeleteFunc(q.pending, func(o *jobState) bool { return o == js })
	}
	js.done = true
	delete(q.jobs, id)
	q.gaveUp++
	return false, true
}

// SetHostState changes a host's state. Executions already running there
// are not affected: the caller finishes them (typically as Lost).
func (q *Queue) SetHostState(name string, s HostState) error {
	h, ok := q.byName[name]
	if !ok {
		return fmt.Errorf("queue: no host %q", name)
	}
	if h.state == Quarantined {
		return nil // quarantine lasts for the run
	}
	q.setState(h, s)
	if s == Up {
		h.consecFail = 0
	}
	return nil
}

// setState is the one place a host's state changes, so that UpSlots
// stays the sum it names.
func (q *Queue) setState(h *host, s HostState) {
	if h.state == Up {
		q.upSlots -= h.slots
	}
	h.state = s
	if s == Up {
		q.upSlots += h.slots
	}
	q.updateFree(h)
}

// updateFree keeps h in q.free exactly when it is Up with a free slot:
// called wherever its state, slots or running count change, so that
// Assign looks only at hosts that can take a job.
func (q *Queue) updateFree(h *host) {
	if h.state == Up && h.running < h.slots {
		q.free[h.idx/64] |= 1 << (h.idx % 64)
	} else {
		q.free[h.idx/64] &^= 1 << (h.idx % 64)
	}
}

// eachFree calls fn with the hosts that had a free slot when it began, in
// the order a scan of every host from index from (wrapping around) meets
// them, until fn returns false.
func (q *Queue) eachFree(from int, fn func(h *host) bool) {
	scan := func(lo, hi int) bool { // indices in [lo, hi)
		for w := lo / 64; w*64 < hi; w++ {
			bits := q.free[w]
			if w == lo/64 {
				bits &^= 1<<(lo%64) - 1
			}
			for bits != 0 {
				i := w*64 + mathbits.TrailingZeros64(bits)
				if i >= hi {
					return true
				}
				if !fn(q.hosts[i]) {
					return false
				}
				bits &= bits - 1
			}
		}
		return true
	}
	if scan(from, len(q.hosts)) {
		scan(0, from)
	}
}

// anyFree reports whether some host has a free slot.
func (q *Queue) anyFree() bool {
	for _, w := range q.free {
		if w != 0 {
			return true
		}
	}
	return false
}

// UpSlots is the total slots of the hosts that are Up, kept as states
// and slots change (it costs nothing to ask).
func (q *Queue) UpSlots() int { return q.upSlots }

// HostState reports a host's state.
func (q *Queue) HostState(name string) HostState { return q.byName[name].state }

// Add queues a job. Its ID must be unique; a pinned job's host must exist.
func (q *Queue) Add(j *Job) error {
	if q.closed {
		return errors.New("queue: Add after Close")
	}
	if _, dup := q.jobs[j.ID]; dup {
		return fmt.Errorf("queue: job %d added twice", j.ID)
	}
	js := &jobState{job: j}
	if j.Pin != "" {
		if _, ok := q.byName[j.Pin]; !ok {
			return fmt.Errorf("queue: job %d pinned to unknown host %q", j.ID, j.Pin)
		}
		q.pinned[j.Pin] = append(q.pinned[j.Pin], js)
	} else {
		q.pending = append(q.pending, js)
	}
	q.jobs[j.ID] = js
	return nil
}

// Close declares that no more jobs will be added.
func (q *Queue) Close() { q.closed = true }

// Pending is the number of jobs waiting to run (unpinned and pinned).
func (q *Queue) Pending() int {
	n := len(q.pending)
	for _, p := range q.pinned {
		n += len(p)
	}
	return n
}

// Running is the number of executions in flight.
func (q *Queue) Running() int { return q.running }

// RunningOn is the number of executions in flight on host name.
func (q *Queue) RunningOn(name string) int {
	if h, ok := q.byName[name]; ok {
		return h.running
	}
	return 0
}

// FreeSlots is the number of free slots on hosts that are Up.
func (q *Queue) FreeSlots() int {
	n := 0
	for _, h := range q.hosts {
		if h.state == Up {
			n += max(0, h.slots-h.running)
		}
	}
	return n
}

// Succeeded and GaveUp count finished jobs.
func (q *Queue) Succeeded() int { return q.succeeded }
func (q *Queue) GaveUp() int    { return q.gaveUp }

// Stats returns a host's counters.
func (q *Queue) Stats(name string) HostStats { return q.byName[name].stats }

// Done reports that the queue is closed and every job is finished.
func (q *Queue) Done() bool { return q.closed && len(q.jobs) == 0 }

// Stuck reports that jobs are waiting but no host can ever run them:
// nothing is running and no host that could take them is Up or Down
// (Down hosts may come back; Quarantined ones will not).
func (q *Queue) Stuck() bool {
	if q.Pending() == 0 || q.Running() > 0 {
		return false
	}
	if len(q.pending) > 0 {
		for _, h := range q.hosts {
			if h.state != Quarantined {
				return false
			}
		}
		return true
	}
	for name, p := range q.pinned {
		if len(p) > 0 && q.byName[name].state != Quarantined {
			return false
		}
	}
	return true
}

// Usable reports whether any host is Up.
func (q *Queue) Usable() bool {
	for _, h := range q.hosts {
		if h.state == Up {
			return true
		}
	}
	return false
}

// Assign hands out jobs to free slots on Up hosts, one slot per host per
// round, rounds starting at successive hosts, until jobs or slots run out.
//
// It looks only at the hosts with a free slot (q.free), in the order a
// scan of every host from q.rr would meet them: an event that frees one
// slot costs a look at one host, not at all of them.
func (q *Queue) Assign() []Exec {
	var out []Exec
	n := len(q.hosts)
	if len(q.pending) == 0 && len(q.pinned) == 0 || !q.anyFree() {
		q.rr = (q.rr + 1) % max(n, 1) // as a round that found nothing
		return nil
	}
	for {
		progress := false
		q.eachFree(q.rr, func(h *host) bool {
			if len(q.pending) == 0 && len(q.pinned) == 0 {
				return false // nothing left for the rest of the round
			}
			if h.state != Up || h.running >= h.slots {
				return true
			}
			if js := q.take(h); js != nil {
				out = append(out, q.start(js, h))
				progress = true
			}
			return true
		})
		q.rr = (q.rr + 1) % max(n, 1)
		if !progress {
			return out
		}
	}
}

// Backup starts a second, speculative execution of a running job on
// another host, for stragglers: the first execution to succeed is
// Recorded and the other one's is Discarded, so the caller should cancel
// the loser once one is Recorded. It declines (ok false) when jobs are
// waiting (they come first), when the job is not running exactly once,
// when it is pinned, or when no Up host other than the one running it, and
// not one it failed on, has a free slot. Of those, the host with the most
// free slots is chosen.
func (q *Queue) Backup(jobID int) (e Exec, ok bool) {
	js, live := q.jobs[jobID]
	if !live || js.done || js.running != 1 || js.job.Pin != "" || q.Pending() > 0 {
		return Exec{}, false
	}
	var best *host
	for _, h := range q.hosts {
		if h.state != Up || h.running >= h.slots || js.on[h.name] > 0 || js.avoid[h.name] {
			continue
		}
		if best == nil || h.slots-h.running > best.slots-best.running {
			best = h
		}
	}
	if best == nil {
		return Exec{}, false
	}
	return q.start(js, best), true
}

// take removes and returns the next job for h: its pinned jobs first, then
// the first unpinned job that has not failed on h, unless h is the only
// Up host left that could run it.
func (q *Queue) take(h *host) *jobState {
	if p := q.pinned[h.name]; len(p) > 0 {
		if len(p) == 1 {
			delete(q.pinned, h.name) // so that no entry means no pinned job
		} else {
			q.pinned[h.name] = p[1:]
		}
		return p[0]
	}
	const window = 256 // bound the scan: a job that avoids h waits its turn
	for i, js := range q.pending {
		if i >= window {
			break
		}
		if js.avoid[h.name] && q.otherHostFor(js, h) {
			continue
		}
		q.pending = append(q.pending[:i], q.pending[i+1:]...)
		return js
	}
	return nil
}

// otherHostFor reports whether a host other than h, Up and not avoided by
// js, exists.
func (q *Queue) otherHostFor(js *jobState, h *host) bool {
	for _, o := range q.hosts {
		if o != h && o.state == Up && !js.avoid[o.name] {
			return true
		}
	}
	return false
}

func (q *Queue) start(js *jobState, h *host) Exec {
	q.seq++
	js.execs++
	js.running++
	if js.on == nil {
		js.on = map[string]int{}
	}
	js.on[h.name]++
	h.running++
	q.running++
	q.updateFree(h)
	h.stats.Execs++
	return Exec{Seq: q.seq, Job: js.job, Host: h.name, Attempt: js.execs}
}

// Finish records how an execution ended and says what became of it.
func (q *Queue) Finish(e Exec, o Outcome) Disposition {
	h := q.byName[e.Host]
	h.running--
	q.running--
	q.updateFree(h)
	js, live := q.jobs[e.Job.ID]
	if live {
		js.running--
		if js.on[e.Host]--; js.on[e.Host] <= 0 {
			delete(js.on, e.Host)
		}
	}
	if !live || js.done {
		h.stats.Discarded++
		return Discarded
	}
	if js.canceled && o != Succeeded {
		// Cancelled by the user: whatever ended it, it is over.
		if o == Failed {
			h.stats.Failed++
		}
		return q.giveUp(js)
	}
	switch o {
	case Succeeded:
		h.stats.Succeeded++
		h.consecFail = 0
		js.done = true
		delete(q.jobs, e.Job.ID)
		q.succeeded++
		return Recorded
	case Failed:
		h.stats.Failed++
		h.consecFail++
		if q.opts.QuarantineAfter > 0 && h.consecFail >= q.opts.QuarantineAfter {
			q.setState(h, Quarantined)
		}
		js.failures++
		if js.failures > q.opts.Retries {
			return q.giveUp(js)
		}
		return q.again(js, e.Host)
	case Lost:
		h.stats.Lost++
		js.lost++
		if js.lost > q.maxLost() {
			return q.giveUp(js) // it has cost too many hosts: stop circling
		}
		if js.running == 0 {
			q.requeue(js)
		}
		return Requeued
	case Returned:
		// It never ran: no retry used, nothing against the host, and not
		// an attempt (the next execution has its number); it goes first
		// to another host.
		js.execs--
		return q.again(js, e.Host)
	}
	// Canceled: leave it unfinished and unqueued.
	delete(q.jobs, e.Job.ID)
	return Dropped
}

// giveUp finishes a job as failed, unless another execution of it is still
// running (which may yet succeed).
func (q *Queue) giveUp(js *jobState) Disposition {
	if js.running > 0 {
		return Discarded
	}
	js.done = true
	delete(q.jobs, js.job.ID)
	q.gaveUp++
	return GaveUp
}

func (q *Queue) maxLost() int {
	if q.opts.MaxLost > 0 {
		return q.opts.MaxLost
	}
	return 10
}

// again requeues js (unless another execution of it runs) to run next
// on a host other than avoid, if one can take it.
func (q *Queue) again(js *jobState, avoid string) Disposition {
	if js.avoid == nil {
		js.avoid = map[string]bool{}
	}
	js.avoid[avoid] = true
	if js.running == 0 {
		q.requeue(js)
	}
	return Requeued
}

func (q *Queue) requeue(js *jobState) {
	if p := js.job.Pin; p != "" {
		q.pinned[p] = append([]*jobState{js}, q.pinned[p]...)
		return
	}
	q.pending = append([]*jobState{js}, q.pending...)
}
