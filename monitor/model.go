package monitor

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/records"
)

// State is what a page shows: one run, live or from its records.
type State struct {
	Live      bool   `json:"live"` // served by a running dsub (else a report)
	Done      bool   `json:"done"` // the run has ended
	ID        string `json:"id"`
	Dir       string `json:"dir"`
	Started   string `json:"started"` // RFC 3339
	Command   string `json:"command,omitempty"`
	Jobs      int    `json:"jobs"`
	AllKnown  bool   `json:"all_known"` // no more jobs will be submitted
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
	Running   int    `json:"running"`
	Queued    int    `json:"queued"` // sent to a host, waiting there for a slot
	// ElapsedS is the run's wall time so far; Rate the jobs finished per
	// second over the last ten; EtaS the seconds left at that rate (-1:
	// unknown).
	ElapsedS float64 `json:"elapsed_s"`
	Rate     float64 `json:"rate"`
	EtaS     float64 `json:"eta_s"`
	Reduced  string  `json:"reduced,omitempty"` // the reduce's running value
	Result   string  `json:"result,omitempty"`  // the final result
	Error    string  `json:"error,omitempty"`
	Speedup  float64 `json:"speedup,omitempty"`
	Control  bool    `json:"control"` // the page may stop the run

	Hosts      []HostRow   `json:"hosts"`
	Timeline   Timeline    `json:"timeline"`
	Failures   []Segment   `json:"failures,omitempty"`   // the latest, newest last
	Stragglers []Segment   `json:"stragglers,omitempty"` // report: the longest jobs
	Histogram  []Bin       `json:"histogram,omitempty"`  // report: job durations
	Warnings   []string    `json:"warnings,omitempty"`   // the latest
	Notes      []string    `json:"notes,omitempty"`      // about the records (a report)
	Summary    *HostTotals `json:"totals,omitempty"`
}

// HostRow is a host's line in the table.
type HostRow struct {
	Name      string            `json:"name"`
	State     records.HostState `json:"state"`
	Launcher  string            `json:"launcher,omitempty"`
	Slots     int               `json:"slots"`
	Running   int               `json:"running"`
	Queued    int               `json:"queued"` // waiting in its window for a slot
	Done      int               `json:"done"`
	Failed    int               `json:"failed"`
	Lost      int               `json:"lost"`
	SecPerJob float64           `json:"sec_per_job"`
	// CPUEff is CPU time over job time, where the host measures CPU
	// (agents do); -1 where it does not.
	CPUEff float64 `json:"cpu_eff"`
	// Load is the 1-minute load average and MemFree the bytes available,
	// where the host reports them (an agent does): -1 where it does not.
	Load     float64 `json:"load"`
	MemFree  int64   `json:"mem_free"`
	MemTotal int64   `json:"mem_total,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// HostTotals is the table's total line.
type HostTotals struct {
	Done    int     `json:"done"`
	JobTime float64 `json:"job_time_s"`
	Slots   int     `json:"slots"`
}

// Bin is one bar of the duration histogram: jobs that ran [Lo, Hi) s.
type Bin struct {
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
	N  int     `json:"n"`
}

// maxFailures and maxWarnings bound the lists a page is sent.
const (
	maxFailures = 50
	maxWarnings = 20
)

// Model is a live run's state, fed by its events (Event, as
// RunOptions.OnEvent) and read by pages (State, and their streams). Its
// cost to the run is one lock and a few field updates per event: a
// page's stream does the rest, once a second.
type Model struct {
	run   *distributor.Run
	start time.Time
	cmd   string

	mu       sync.Mutex
	pending  []distributor.Event // taken, not yet drawn
	tl       *timeline
	failures []Segment
	warnings []string
	samples  []sample // finished-job counts, for the rate
	done     bool
	result   string
	err      string
	speedup  float64
	control  bool
	polled   time.Time     // a page was last given the state
	gaveEnd  bool          // a page was given the final state
	nfails   int           // failures taken, ever (failures keeps the latest)
	nwarns   int           // warnings taken, ever
	ended    chan struct{} // closed by Finish
}

type sample struct {
	t    time.Time
	done int
}

// NewModel is the model of a run that starts now; command is how it was
// started, for the page's title.
func NewModel(command string) *Model {
	return &Model{start: time.Now(), cmd: command, tl: newTimeline(), ended: make(chan struct{})}
}

// Attach gives the model its run, once started: its snapshot gives the
// counts and hosts.
func (m *Model) Attach(r *distributor.Run) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.run = r
}

// Event records an execution's step, as RunOptions.OnEvent. It only
// queues it, under the lock, for the next state a page is given (or the
// next batch of maxPending): the run's goroutines, which call it, spend
// one short lock on it, and the timeline's work is done in batches. Sent
// is not drawn (the snapshot counts the jobs waiting in hosts' windows):
// it costs nothing.
func (m *Model) Event(e distributor.Event) {
	if e.Kind == distributor.Sent {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pending = append(m.pending, e)
	if len(m.pending) >= maxPending {
		m.apply()
	}
}

// maxPending bounds the events queued while no page is watching.
const maxPending = 1024

// apply draws the queued events. m.mu is held.
func (m *Model) apply() {
	for i := range m.pending {
		m.draw(&m.pending[i])
		m.pending[i] = distributor.Event{} // its strings are not kept
	}
	m.pending = m.pending[:0]
}

// draw draws e on the timeline, and keeps a failure. m.mu is held.
func (m *Model) draw(e *distributor.Event) {
	t := ms(e.Time.Sub(m.start))
	switch e.Kind {
	case distributor.Prepared:
		m.tl.prepared(e.Host, t)
	case distributor.Started:
		m.tl.start(e.Seq, e.Host, e.Job, t, e.Command)
	case distributor.Ended:
		if _, ran := m.tl.run[e.Seq]; !ran && kindOf(e.Outcome) == "killed" {
			return // taken back, or dropped, before it started: nothing ran
		}
		s := Segment{Start: ms(e.Time.Add(-e.Duration).Sub(m.start)), End: t, Job: e.Job, Kind: kindOf(e.Outcome),
			Exit: e.Exit, Cmd: e.Command, Tail: e.StderrTail, Host: e.Host}
		if m.run != nil && !e.Output.IsZero() && s.Kind == "fail" { // only a failure shows it
			s.Log = LogCommand(m.run.Dir(), e.Job)
		}
		s = m.tl.end(e.Seq, s)
		if s.Kind == "fail" {
			m.failures = append(m.failures, s)
			m.nfails++
			if len(m.failures) > maxFailures {
				m.failures = m.failures[len(m.failures)-maxFailures:]
			}
		}
	}
}

// Warn records a warning, as RunOptions.Warn.
func (m *Model) Warn(s string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.warnings = append(m.warnings, s)
	m.nwarns++
	if len(m.warnings) > maxWarnings {
		m.warnings = m.warnings[len(m.warnings)-maxWarnings:]
	}
}

// Finish records how the run ended.
func (m *Model) Finish(st *records.Stats, result string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.done {
		close(m.ended)
	}
	m.done, m.result = true, result
	if err != nil {
		m.err = err.Error()
	}
	if st != nil {
		m.speedup = st.Speedup()
	}
}

// kindOf is a joblog outcome's kind of bar.
func kindOf(outcome string) string {
	switch {
	case outcome == "recorded":
		return "ok"
	case strings.HasPrefix(outcome, "gave-up"), strings.HasPrefix(outcome, "requeued"):
		return "fail" // for good, or to be retried
	case outcome == "lost":
		return "lost"
	}
	return "killed" // superseded, discarded, dropped, returned
}

// State is the state for a page that holds the timeline's epoch up to
// bar after (after < 0: it holds none): all of it but those bars.
func (m *Model) State(epoch, after int) State {
	return m.state(&since{epoch: epoch, after: after, fails: -1, warns: -1})
}

// since is what a page holds (a stream's cursor): the timeline's epoch
// up to bar after, its first lanes, and the failures and warnings of
// when the model had taken fails and warns of them (-1: none).
type since struct {
	epoch, after, lanes int
	fails, warns        int
}

// state is the state for a page that holds have: the bars and lanes it
// lacks, and the failures and warnings only if they changed (else
// absent). It moves have on to what the state gives.
func (m *Model) state(have *since) State {
	now := time.Now()
	var snap distributor.Snapshot
	m.mu.Lock()
	run := m.run
	m.mu.Unlock()
	if run != nil {
		snap = run.Snapshot() // its own lock: not under ours
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range snap.Hosts {
		m.tl.reserve(h.Name, h.Slots) // before drawing: lanes are its slots
	}
	m.apply()
	m.polled = now
	st := State{Live: true, Done: m.done, Command: m.cmd, Started: m.start.Format(time.RFC3339),
		Jobs: snap.Jobs, AllKnown: snap.AllKnown, Succeeded: snap.Succeeded, Failed: snap.Failed,
		ElapsedS: now.Sub(m.start).Seconds(),
		Reduced:  snap.Reduced, Result: m.result, Error: m.err, Speedup: m.speedup, Control: m.control, EtaS: -1}
	if run != nil {
		st.ID, st.Dir = run.ID(), run.Dir()
	}
	if have.fails != m.nfails {
		st.Failures, have.fails = slices.Clone(m.failures), m.nfails
	}
	if have.warns != m.nwarns {
		st.Warnings, have.warns = slices.Clone(m.warnings), m.nwarns
	}
	st.Rate = m.rate(now, snap.Succeeded+snap.Failed)
	if st.Rate > 0 && snap.AllKnown {
		st.EtaS = float64(snap.Jobs-snap.Succeeded-snap.Failed) / st.Rate
	}
	st.Running, st.Queued = snap.Running, snap.Queued
	for _, h := range snap.Hosts {
		st.Hosts = append(st.Hosts, hostRow(h))
	}
	st.Timeline = m.tl.view(have.epoch, have.after, have.lanes, ms(now.Sub(m.start)))
	have.epoch, have.lanes = st.Timeline.Epoch, len(m.tl.lanes)
	if n := len(st.Timeline.Ended); n > 0 {
		have.after = st.Timeline.Ended[n-1].ID
	} else if st.Timeline.Full {
		have.after = 0
	}
	return st
}

// rate is jobs finished per second over the last ten seconds.
func (m *Model) rate(now time.Time, done int) float64 {
	m.samples = append(m.samples, sample{now, done})
	i := 0
	for i < len(m.samples)-1 && now.Sub(m.samples[i+1].t) >= 10*time.Second {
		i++
	}
	m.samples = m.samples[i:]
	first := m.samples[0]
	if dt := now.Sub(first.t).Seconds(); dt >= 0.5 {
		return float64(done-first.done) / dt
	}
	return 0
}

// newHostRow is a host's row with nothing measured yet: its CPU
// efficiency, load and memory unknown (-1).
func newHostRow(name string, state records.HostState) HostRow {
	return HostRow{Name: name, State: state, CPUEff: -1, Load: -1, MemFree: -1}
}

func hostRow(h distributor.HostSnapshot) HostRow {
	r := newHostRow(h.Name, h.State)
	r.Launcher, r.Slots, r.Running, r.Queued = h.Launcher, h.Slots, h.Running, h.Queued
	r.Done, r.Failed, r.Lost = h.Done, h.Failed, h.Lost
	if hh := h.Health; hh != nil {
		r.Load, r.MemFree, r.MemTotal = hh.Load1, hh.MemAvail, hh.MemTotal
	}
	if h.Done > 0 {
		r.SecPerJob = h.JobTime.Seconds() / float64(h.Done)
	}
	if h.CPU > 0 && h.JobTime > 0 {
		r.CPUEff = h.CPU / h.JobTime.Seconds()
	}
	return r
}

// delivered notes that st has reached a page (written and flushed). Only
// then does the final state count as given: Linger lets dsub exit on it,
// and an exit while the final message is still being written cuts it
// off, leaving the page on the state of a second before.
func (m *Model) delivered(st *State) {
	if !st.Done {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gaveEnd = true
}

// endGiven reports whether a page was given the run's final state.
func (m *Model) endGiven() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.gaveEnd
}

// lastPoll is when a page was last given the state.
func (m *Model) lastPoll() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.polled
}
