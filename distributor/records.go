package distributor

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

func floatBits(f float64) uint64 { return math.Float64bits(f) }
func bitsFloat(b uint64) float64 { return math.Float64frombits(b) }

// JournalRecord is one line of results.jsonl: a job's recorded result.
type JournalRecord struct {
	Job      int             `json:"job"`
	ID       string          `json:"id"` // identity of the job: binary hash + arguments
	Host     string          `json:"host"`
	Attempt  int             `json:"attempt"`
	Result   json.RawMessage `json:"result,omitempty"`
	Duration float64         `json:"duration_s"`
	Failed   bool            `json:"failed,omitempty"` // failed for good: Error says why
	Error    string          `json:"error,omitempty"`
	// Resource usage of the recorded execution, where the launcher
	// measures it (agent mode, from wait4).
	CPU    float64 `json:"cpu_s,omitempty"`
	MaxRSS int64   `json:"max_rss_kb,omitempty"`
	// Output locates the execution's output in the run's output
	// streams (absent in a run recorded before them).
	Output records.Locator `json:"output,omitzero"`
}

// ReadJournal loads results.jsonl: the last record of each job wins (a
// success recorded after a failure, on --resume-failed). A torn last line,
// from a crash mid-write before its fsync, is ignored.
func ReadJournal(path string) (map[int]JournalRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs := map[int]JournalRecord{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 2*MaxResultLine+4096)
	line := 0
	for sc.Scan() {
		line++
		var r JournalRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil || r.Job < 1 {
			continue
		}
		recs[r.Job] = r
	}
	return recs, sc.Err()
}

// journal appends records to results.jsonl with group commit: Append
// buffers, Commit writes and fsyncs. A result counts only after the Commit
// that covers it, so a crash loses at most uncounted work.
type journal struct {
	f   *os.File
	w   *bufio.Writer
	err error
	n   int // records appended since the last commit
}

func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if err := trimTornTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return &journal{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// trimTornTail cuts a partial last line (a write cut short by a crash or
// a full disk) off f, so that records appended by a resumed run start on a
// line of their own and are not lost with it.
func trimTornTail(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	buf := make([]byte, 32<<10)
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		i := bytes.LastIndexByte(buf[:n], '\n')
		if pos+n == end && i == int(n)-1 {
			return nil // ends with a newline: whole
		}
		if i >= 0 {
			return f.Truncate(pos + int64(i) + 1)
		}
	}
	return f.Truncate(0) // one partial line and nothing else
}

func (j *journal) Append(r *JournalRecord) {
	if j.err != nil {
		return
	}
	b, err := json.Marshal(r)
	if err != nil {
		j.err = err
		return
	}
	_, j.err = j.w.Write(append(b, '\n'))
	j.n++
}

// poison stops the journal: nothing appended since the last commit, or
// after, is ever written (their output could not be kept).
func (j *journal) poison(err error) {
	if j.err == nil {
		j.err = err
	}
}

func (j *journal) Commit() error {
	if j.err != nil {
		return j.err
	}
	if j.n == 0 {
		return nil
	}
	if j.err = j.w.Flush(); j.err == nil {
		j.err = j.f.Sync()
	}
	j.n = 0
	return j.err
}

func (j *journal) Close() error {
	err := j.Commit()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// joblog writes joblog.tsv with GNU parallel's --joblog columns, one row
// per execution that started but those that will run again (see
// started: a retried failure, a lost host's, as in parallel's), plus an
// Outcome column: recorded (the job's result), gave-up (failed for good),
// discarded (a late or duplicate result), superseded (killed: another
// execution of the job won) or dropped (the run stopped first); and
// executions.tsv, the same for every execution that started, with
// requeued, lost and returned too. Signal is the number of the signal
// that ended it (15 for a time limit's TERM), Exitval -1 then.
type joblog struct {
	mu sync.Mutex
	// parallel is joblog.tsv, all executions.tsv (every execution that
	// started: the retried failures too); extra, if any, the user's
	// --joblog FILE, with parallel's rows.
	parallel, all, extra *tsvFile
	line                 []byte // the row being written, reused
}

type tsvFile struct {
	w *bufio.Writer
	f *os.File
}

func openTSV(path string, flag int) (*tsvFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|flag, 0o600)
	if err != nil {
		return nil, err
	}
	t := &tsvFile{f: f, w: bufio.NewWriter(f)}
	if fi, err := f.Stat(); err == nil && fi.Size() == 0 { // a resumed run appends
		fmt.Fprintln(t.w, JoblogHeader)
	}
	return t, nil
}

// openJoblog opens d's joblogs, and extra (if not "") for a copy of
// joblog.tsv's rows: appended to when resumed, else truncated.
func openJoblog(d RunDir, extra string, resumed bool) (*joblog, error) {
	l := &joblog{}
	var err error
	if l.parallel, err = openTSV(d.Joblog(), os.O_APPEND); err != nil {
		return nil, err
	}
	if l.all, err = openTSV(d.Executions(), os.O_APPEND); err != nil {
		l.parallel.f.Close()
		return nil, err
	}
	if extra != "" {
		flag := os.O_TRUNC
		if resumed {
			flag = os.O_APPEND
		}
		if l.extra, err = openTSV(extra, flag); err != nil {
			l.parallel.f.Close()
			l.all.f.Close()
			return nil, fmt.Errorf("joblog copy: %w", err)
		}
	}
	return l, nil
}

func (l *joblog) files() []*tsvFile {
	if l.extra == nil {
		return []*tsvFile{l.parallel, l.all}
	}
	return []*tsvFile{l.parallel, l.all, l.extra}
}

// JoblogRow is one execution.
type JoblogRow struct {
	Job     int
	Host    string
	Start   time.Time
	Runtime time.Duration
	Send    int64
	Receive int64
	Exit    int
	Signal  string
	Command string
	Outcome string
}

// Write writes r to executions.tsv and, with parallel, to joblog.tsv.
func (l *joblog) Write(r JoblogRow, parallel bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line = r.Append(l.line[:0]) // formatted once, for every file
	_, err := l.all.w.Write(l.line)
	if parallel {
		_, perr := l.parallel.w.Write(l.line)
		err = errors.Join(err, perr)
		if l.extra != nil {
			_, eerr := l.extra.w.Write(l.line)
			err = errors.Join(err, eerr)
		}
	}
	return err
}

// JoblogHeader is joblog.tsv's first line.
const JoblogHeader = "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\tOutcome"

// Write writes r as a joblog.tsv line, as ReadJoblog reads it.
func (r JoblogRow) Write(w io.Writer) error {
	_, err := w.Write(r.Append(nil))
	return err
}

// tsvCleaner keeps a field on its line and in its column.
var tsvCleaner = strings.NewReplacer("\t", " ", "\n", " ")

// Append appends r's joblog.tsv line to b: Seq, Host, Starttime,
// JobRuntime, Send, Receive, Exitval, Signal, Command, Outcome.
func (r JoblogRow) Append(b []byte) []byte {
	// The signal's number, as GNU parallel writes it (a row read back
	// holds one already).
	sig := "0"
	if n, ok := remote.SignalNumber(r.Signal); ok {
		sig = strconv.Itoa(n)
	} else if _, err := strconv.Atoi(r.Signal); err == nil {
		sig = r.Signal
	}
	b = strconv.AppendInt(b, int64(r.Job), 10)
	b = append(append(b, '\t'), r.Host...)
	b = strconv.AppendFloat(append(b, '\t'), float64(r.Start.UnixMilli())/1000, 'f', 3, 64)
	b = strconv.AppendFloat(append(b, '\t'), r.Runtime.Seconds(), 'f', 3, 64)
	b = strconv.AppendInt(append(b, '\t'), r.Send, 10)
	b = strconv.AppendInt(append(b, '\t'), r.Receive, 10)
	b = strconv.AppendInt(append(b, '\t'), int64(r.Exit), 10)
	b = append(append(b, '\t'), sig...)
	b = append(append(b, '\t'), tsvCleaner.Replace(r.Command)...)
	b = append(append(b, '\t'), r.Outcome...)
	return append(b, '\n')
}

func (l *joblog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for _, t := range l.files() {
		err = errors.Join(err, t.w.Flush())
	}
	return err
}

func (l *joblog) Close() error {
	err := l.Flush()
	for _, t := range l.files() {
		err = errors.Join(err, t.f.Close())
	}
	return err
}

// writeJSONFile writes v to path atomically.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// HostStats are one host's figures for the final table.
type HostStats struct {
	Name    string  `json:"name"`
	Jobs    int     `json:"jobs"`       // results recorded from this host
	JobTime float64 `json:"job_time_s"` // sum of those jobs' run times
	Failed  int     `json:"failed"`     // failed executions
	Lost    int     `json:"lost"`       // executions lost to transport failures
	Slots   int     `json:"slots"`
	State   string  `json:"state"`
	// CPU is the CPU seconds of its executions, where measured (agent
	// mode); Launcher is how its jobs were started.
	CPU      float64 `json:"cpu_s,omitempty"`
	Launcher string  `json:"launcher,omitempty"`
	// Load1, MemAvailKB and MemTotalKB are the host's last health
	// report (an agent's heartbeats), for the report; absent where none
	// came.
	Load1      *float64 `json:"load1,omitempty"`
	MemAvailKB int64    `json:"mem_avail_kb,omitempty"`
	MemTotalKB int64    `json:"mem_total_kb,omitempty"`
}

// UnusedHost is a host that took no part in a run, and its state then.
type UnusedHost struct {
	Name  string `json:"name"`
	State string `json:"state"` // preparing, down, failed
}

// Stats summarise a run.
type Stats struct {
	Jobs      int         `json:"jobs"`      // jobs submitted
	Succeeded int         `json:"succeeded"` // jobs with a recorded result
	Failed    int         `json:"failed"`    // jobs that failed for good
	Resumed   int         `json:"resumed"`   // jobs taken over from the run being resumed
	Wall      float64     `json:"wall_s"`
	Hosts     []HostStats `json:"hosts"`
	// Unused are the hosts that gave the run no slot and ran no job:
	// still being prepared when the jobs ran out, unreachable, or failed
	// (the run's warnings say why), with that state.
	Unused []UnusedHost `json:"unused,omitempty"`
	// Backups counts speculative executions started (--speculate), and
	// BackupsWon those that finished first.
	Backups    int `json:"backups,omitempty"`
	BackupsWon int `json:"backups_won,omitempty"`
}

// JobTime is the sum of recorded jobs' run times.
func (s *Stats) JobTime() float64 {
	t := 0.0
	for _, h := range s.Hosts {
		t += h.JobTime
	}
	return t
}

// Speedup is total job time over wall time.
func (s *Stats) Speedup() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return s.JobTime() / s.Wall
}

// Slots is the total slots of hosts that took part.
func (s *Stats) Slots() int {
	n := 0
	for _, h := range s.Hosts {
		n += h.Slots
	}
	return n
}

// WriteTable prints the per-host table (as Parallel Python's print_stats
// and dispy's print_status do), then wall time, speedup and efficiency.
func (s *Stats) WriteTable(w io.Writer) {
	nw := len("total")
	total := 0
	for _, h := range s.Hosts {
		nw = max(nw, len(h.Name))
		total += h.Jobs
	}
	cpu := false // CPU columns only where measured
	for _, h := range s.Hosts {
		cpu = cpu || h.CPU > 0
	}
	head := fmt.Sprintf("%-*s %6s %7s %10s %9s %6s %5s %5s", nw, "HOST", "JOBS", "% JOBS", "JOB TIME", "TIME/JOB", "FAILED", "LOST", "SLOTS")
	if cpu {
		head += fmt.Sprintf(" %9s %7s %s", "CPU TIME", "CPU EFF", "LAUNCH")
	}
	fmt.Fprintln(w, head)
	row := func(name string, jobs int, t float64, failed, lost, slots int, cpuS float64, launcher string) {
		pct, per := 0.0, 0.0
		if total > 0 {
			pct = 100 * float64(jobs) / float64(total)
		}
		if jobs > 0 {
			per = t / float64(jobs)
		}
		fmt.Fprintf(w, "%-*s %6d %6.1f%% %9.2fs %8.3fs %6d %5d %5d", nw, name, jobs, pct, t, per, failed, lost, slots)
		if cpu {
			// CPU efficiency: CPU seconds over the slots' capacity for the
			// run's wall time.
			eff := 0.0
			if s.Wall > 0 && slots > 0 {
				eff = 100 * cpuS / (s.Wall * float64(slots))
			}
			fmt.Fprintf(w, " %8.2fs %6.1f%%", cpuS, eff)
			if launcher != "" {
				fmt.Fprintf(w, " %s", launcher)
			}
		}
		fmt.Fprintln(w)
	}
	var failed, lost int
	cpuTotal := 0.0
	for _, h := range s.Hosts {
		row(h.Name, h.Jobs, h.JobTime, h.Failed, h.Lost, h.Slots, h.CPU, h.Launcher)
		failed += h.Failed
		lost += h.Lost
		cpuTotal += h.CPU
	}
	row("total", total, s.JobTime(), failed, lost, s.Slots(), cpuTotal, "")
	eff := 0.0
	if n := s.Slots(); n > 0 {
		eff = 100 * s.Speedup() / float64(n)
	}
	resumed := ""
	if s.Resumed > 0 {
		resumed = fmt.Sprintf(" (%d recorded before the resume)", s.Resumed)
	}
	backups := ""
	if s.Backups > 0 {
		backups = fmt.Sprintf("; %d backups, %d won", s.Backups, s.BackupsWon)
	}
	if len(s.Unused) > 0 {
		// Not rows: they would read as hosts that were given no work.
		names := make([]string, len(s.Unused))
		for i, h := range s.Unused {
			names[i] = h.Name + " (" + h.State + ")"
		}
		fmt.Fprintf(w, "not used: %s\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(w, "jobs %d: %d succeeded, %d failed%s%s; wall %.2fs", s.Jobs, s.Succeeded, s.Failed, resumed, backups, s.Wall)
	if n := s.Slots(); n > 0 {
		// Nothing ran (a resume with every job recorded): no speedup to tell.
		fmt.Fprintf(w, "; speedup %.2fx; efficiency %.1f%% of %d slots", s.Speedup(), eff, n)
	}
	fmt.Fprintln(w)
}

// runIDPattern is the only form a run id takes. A run id names the
// remote run directory <workdir>/runs/<id> that the end of a run kills
// processes in and removes: anything else ("..", ".", a path) is refused.
var runIDPattern = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$`)

// ValidRunID reports whether id has the form newRunID makes.
func ValidRunID(id string) bool { return runIDPattern.MatchString(id) }

// newRunID names a run directory: sortable by time, unique enough.
func newRunID(now time.Time) string {
	return now.Format("20060102-150405") + fmt.Sprintf("-%04x", now.Nanosecond()>>10&0xffff)
}

// createPrivate creates (or truncates) a record file readable by its owner
// only: records hold job output and full command lines.
func createPrivate(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
}

// ReadJoblog reads joblog.tsv's rows. A torn last line (the run is still
// going, or crashed mid-write) is left out, as are lines that do not
// parse; bad counts them.
func ReadJoblog(path string) (rows []JoblogRow, bad int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	for first := true; ; first = false {
		line, err := br.ReadString('\n')
		if err != nil {
			if err == io.EOF {
				return rows, bad, nil // a line without its newline is torn
			}
			return rows, bad, err
		}
		if first {
			continue // the header
		}
		r, ok := parseJoblogRow(strings.TrimSuffix(line, "\n"))
		if !ok {
			bad++
			continue
		}
		rows = append(rows, r)
	}
}

// parseJoblogRow parses a line that joblog.Write wrote.
func parseJoblogRow(line string) (JoblogRow, bool) {
	f := strings.Split(line, "\t")
	if len(f) != 10 {
		return JoblogRow{}, false
	}
	var r JoblogRow
	var start, rt float64
	var err [6]error
	r.Job, err[0] = strconv.Atoi(f[0])
	start, err[1] = strconv.ParseFloat(f[2], 64)
	rt, err[2] = strconv.ParseFloat(f[3], 64)
	r.Send, err[3] = strconv.ParseInt(f[4], 10, 64)
	r.Receive, err[4] = strconv.ParseInt(f[5], 10, 64)
	r.Exit, err[5] = strconv.Atoi(f[6])
	if errors.Join(err[:]...) != nil {
		return JoblogRow{}, false
	}
	r.Host, r.Command, r.Outcome = f[1], f[8], f[9]
	r.Start = time.UnixMilli(int64(math.Round(start * 1000)))
	r.Runtime = time.Duration(rt * float64(time.Second))
	if f[7] != "0" {
		r.Signal = f[7]
	}
	return r, true
}
