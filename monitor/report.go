package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/records"
)

// maxStragglers is how many of the longest jobs a report lists, and
// maxReportFailures how many failures it shows with their stderr tails.
const (
	maxStragglers     = 10
	maxReportFailures = 100
)

// FromRecords is the state of the run recorded in dir: finished,
// interrupted, or still going (then what its records hold so far).
func FromRecords(dir string) (State, error) {
	rd := records.RunDir(dir)
	man, err := records.ReadManifest(rd)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return State{}, fmt.Errorf("%s is not a run directory: no %s", dir, "run.json")
		}
		return State{}, err
	}
	rows, bad, err := records.ReadJoblog(rd.Timeline())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return State{}, err
	}
	journal, err := records.ReadJournal(rd.Journal())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return State{}, err
	}
	b := &reportBuilder{st: State{ID: man.ID, Dir: dir, Started: rfc3339(man.Started), Done: !man.Finished.IsZero(), Error: man.Error,
		Command: commandOf(man), Speedup: man.Speedup, EtaS: -1}, rd: rd, man: man, journal: journal}
	if bad > 0 {
		b.st.Notes = append(b.st.Notes, fmt.Sprintf("%d lines of %s could not be read", bad, rd.Timeline()))
	}
	if !b.st.Done {
		b.st.Notes = append(b.st.Notes, "the run had not finished when this report was made: it shows what its records held then")
	}
	b.build(rows)
	return b.st, nil
}

type reportBuilder struct {
	st      State
	rd      records.RunDir
	man     *records.Manifest
	journal map[int]records.JournalRecord
	hosts   map[string]*hostAcc
	order   []*hostAcc // the manifest's hosts, then others as met
}

// hostAcc is a host's row as the joblog's rows add to it.
type hostAcc struct {
	row          HostRow
	jobTime, cpu float64 // of its succeeded executions; cpu where measured
}

// rfc3339 is t as the page shows a time, "" for none.
func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// build fills the state from the joblog's rows.
func (b *reportBuilder) build(rows []records.JoblogRow) {
	t0 := b.man.Started
	if t0.IsZero() && len(rows) > 0 {
		t0 = rows[0].Start
	}
	// Rows are written as executions end: draw them in that order, on
	// lanes packed by start time per host.
	slices.SortStableFunc(rows, func(a, c records.JoblogRow) int {
		return a.Start.Add(a.Runtime).Compare(c.Start.Add(c.Runtime))
	})
	b.addHosts()
	tl := newTimeline()
	for _, h := range b.man.Hosts {
		tl.reserve(h.Name, h.Slots)
		if h.ReadyS > 0 { // its preparing span, as the live page drew it
			tl.prepared(h.Name, int64(h.ReadyS*1000))
		}
	}
	// An execution taken back from a host's window never ran there.
	rows = slices.DeleteFunc(rows, func(r records.JoblogRow) bool { return r.Outcome == "returned" })
	lanes := packLanes(rows)
	var durs []float64
	var last time.Time
	for i, r := range rows {
		s := Segment{Start: ms(r.Start.Sub(t0)), End: ms(r.Start.Add(r.Runtime).Sub(t0)), Job: r.Job, Kind: kindOf(r.Outcome),
			Exit: r.Exit, Cmd: r.Command, Host: r.Host}
		if strings.HasPrefix(r.Outcome, "gave-up") && len(b.st.Failures) < maxReportFailures {
			// The job's own log is its last execution's: an earlier,
			// retried one's stderr is not at hand.
			s.Log, s.Tail = b.stderrTail(r)
		}
		s.Lane = tl.laneOf(r.Host, lanes[i])
		tl.add(s)
		b.count(r, s)
		if s.Kind == "ok" {
			durs = append(durs, r.Runtime.Seconds())
			b.straggler(s)
		}
		if end := r.Start.Add(r.Runtime); end.After(last) {
			last = end
		}
	}
	b.st.Timeline = tl.view(-1, -1, 0, 0)
	b.st.Histogram = histogram(durs)
	b.finish(t0, last)
}

// addHosts starts a row for each host the manifest lists, in its order.
func (b *reportBuilder) addHosts() {
	b.hosts = map[string]*hostAcc{}
	for _, h := range b.man.Hosts {
		state := records.HostUp
		if h.Error != "" {
			state = records.HostFailed
		}
		r := newHostRow(h.Name, state)
		r.Launcher, r.Slots, r.Error = h.Launcher, h.Slots, h.Error
		b.host(h.Name).row = r
	}
	if b.man.Stats != nil {
		for _, h := range b.man.Stats.Hosts {
			if a := b.hosts[h.Name]; a != nil {
				a.row.State = h.State
				if h.Load1 != nil { // its agent's last heartbeat
					a.row.Load, a.row.MemFree, a.row.MemTotal = *h.Load1, h.MemAvailKB<<10, h.MemTotalKB<<10
				}
			}
		}
	}
}

// host is name's row, started if new.
func (b *reportBuilder) host(name string) *hostAcc {
	a := b.hosts[name]
	if a == nil {
		a = &hostAcc{row: newHostRow(name, records.HostUp)}
		b.hosts[name] = a
		b.order = append(b.order, a)
	}
	return a
}

// count adds an execution to its host's row and the run's counts.
func (b *reportBuilder) count(r records.JoblogRow, s Segment) {
	h := b.host(r.Host)
	switch {
	case s.Kind == "ok":
		h.row.Done++
		h.jobTime += r.Runtime.Seconds()
		b.st.Succeeded++
		if j, ok := b.journal[r.Job]; ok {
			h.cpu += j.CPU
		}
	case s.Kind == "fail":
		h.row.Failed++
		if strings.HasPrefix(r.Outcome, "gave-up") {
			b.st.Failed++
			if len(b.st.Failures) < maxReportFailures {
				b.st.Failures = append(b.st.Failures, s)
			}
		}
	case s.Kind == "lost":
		h.row.Lost++
	}
}

// straggler keeps s if it is among the longest jobs.
func (b *reportBuilder) straggler(s Segment) {
	l := &b.st.Stragglers
	if len(*l) == maxStragglers && s.End-s.Start <= (*l)[len(*l)-1].End-(*l)[len(*l)-1].Start {
		return
	}
	*l = append(*l, s)
	slices.SortStableFunc(*l, func(a, c Segment) int { return int((c.End - c.Start) - (a.End - a.Start)) })
	if len(*l) > maxStragglers {
		*l = (*l)[:maxStragglers]
	}
}

// finish completes the host rows and the run's figures.
func (b *reportBuilder) finish(t0, last time.Time) {
	for _, h := range b.order {
		if h.row.Done > 0 {
			h.row.SecPerJob = h.jobTime / float64(h.row.Done)
			if h.cpu > 0 {
				h.row.CPUEff = h.cpu / h.jobTime
			}
		}
		b.st.Hosts = append(b.st.Hosts, h.row)
	}
	b.st.Jobs = b.st.Succeeded + b.st.Failed
	if s := b.man.Stats; s != nil {
		b.st.Jobs = s.Jobs
		b.st.ElapsedS = s.Wall
		b.st.AllKnown = true
	} else if !last.IsZero() {
		b.st.ElapsedS = last.Sub(t0).Seconds()
	}
	b.st.Result = b.man.Result
	if b.st.ElapsedS > 0 {
		b.st.Rate = float64(b.st.Succeeded+b.st.Failed) / b.st.ElapsedS // jobs/s over the run
	}
}

// stderrTail is the tail of a failed job's stderr (its recorded
// execution's), and the command that prints its output.
func (b *reportBuilder) stderrTail(r records.JoblogRow) (log, tail string) {
	t := &tailWriter{max: maxTail}
	if b.man.Schema < records.SchemaStreams { // per-job log files
		_, path := b.rd.OldJobLogs(r.Job)
		f, err := os.Open(path)
		if err != nil {
			return "", ""
		}
		defer f.Close()
		_, _ = io.Copy(t, f)
		return path, strings.ToValidUTF8(string(t.tail()), "")
	}
	rec, ok := b.journal[r.Job]
	if !ok || rec.Output.IsZero() {
		return "", ""
	}
	if _, err := records.ReadTail(b.rd.Output(), rec.Output, records.Stderr, maxTail, t); err != nil {
		return "", ""
	}
	return LogCommand(string(b.rd), r.Job), strings.ToValidUTF8(string(t.tail()), "")
}

// LogCommand is the command that prints job's output from the run in
// dir.
func LogCommand(dir string, job int) string { return fmt.Sprintf("dsub log %s %d", dir, job) }

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	b   []byte
	max int
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	if len(w.b) > 2*w.max {
		w.b = append(w.b[:0], w.b[len(w.b)-w.max:]...)
	}
	return len(p), nil
}

func (w *tailWriter) tail() []byte { return w.b[max(0, len(w.b)-w.max):] }

// packLanes gives each execution a lane number within its host (0-based):
// the lowest lane free at its start, as the live page assigns them.
func packLanes(rows []records.JoblogRow) []int {
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, c int) int { return rows[a].Start.Compare(rows[c].Start) })
	free := map[string][]time.Time{} // host -> each lane's end
	lanes := make([]int, len(rows))
	for _, i := range idx {
		r := rows[i]
		ends := free[r.Host]
		l := slices.IndexFunc(ends, func(end time.Time) bool { return !end.After(r.Start) })
		if l < 0 {
			l = len(ends)
			ends = append(ends, time.Time{})
		}
		ends[l] = r.Start.Add(r.Runtime)
		free[r.Host] = ends
		lanes[i] = l
	}
	return lanes
}

// histogram bins durations: in 20 equal bins when they span less than a
// power of ten, else on a log scale, 5 bins per power of ten.
func histogram(durs []float64) []Bin {
	if len(durs) == 0 {
		return nil
	}
	lo, hi := math.Inf(1), 0.0
	for _, d := range durs {
		d = max(d, 0.001)
		lo, hi = min(lo, d), max(hi, d)
	}
	if hi < 10*lo {
		const n = 20
		w := (hi - lo) / n
		if w == 0 {
			return []Bin{{Lo: lo, Hi: hi, N: len(durs)}}
		}
		bins := make([]Bin, n)
		for i := range bins {
			bins[i] = Bin{Lo: lo + float64(i)*w, Hi: lo + float64(i+1)*w}
		}
		for _, d := range durs {
			bins[min(int((max(d, 0.001)-lo)/w), n-1)].N++
		}
		return bins
	}
	const perDecade = 5
	first := math.Floor(math.Log10(lo) * perDecade)
	last := math.Floor(math.Log10(hi) * perDecade)
	bins := make([]Bin, int(last-first)+1)
	for i := range bins {
		bins[i] = Bin{Lo: math.Pow(10, (first+float64(i))/perDecade), Hi: math.Pow(10, (first+float64(i)+1)/perDecade)}
	}
	for _, d := range durs {
		i := int(math.Floor(math.Log10(max(d, 0.001))*perDecade) - first)
		bins[min(max(i, 0), len(bins)-1)].N++
	}
	return bins
}

// commandOf is the command line that started the run, as recorded.
func commandOf(m *records.Manifest) string {
	if len(m.Command) == 0 {
		return ""
	}
	var rec struct {
		Args []string `json:"args"`
	}
	if err := json.Unmarshal(m.Command, &rec); err == nil && len(rec.Args) > 0 {
		return "dsub run " + strings.Join(rec.Args, " ")
	}
	return string(m.Command)
}
