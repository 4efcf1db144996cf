package records

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Joblog writes joblog.tsv with GNU parallel's --joblog columns, one row
// per execution that started but those that will run again (see
// started: a retried failure, a lost host's, as in parallel's), plus an
// Outcome column: recorded (the job's result), gave-up (failed for good),
// discarded (a late or duplicate result), superseded (killed: another
// execution of the job won) or dropped (the run stopped first); and
// executions.tsv, the same for every execution that started, with
// requeued, lost and returned too. Signal is the number of the signal
// that ended it (15 for a time limit's TERM), Exitval -1 then.
type Joblog struct {
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

// OpenJoblog opens d's joblogs, and extra (if not "") for a copy of
// joblog.tsv's rows: appended to when resumed, else truncated.
func OpenJoblog(d RunDir, extra string, resumed bool) (*Joblog, error) {
	l := &Joblog{}
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

func (l *Joblog) files() []*tsvFile {
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
func (l *Joblog) Write(r JoblogRow, parallel bool) error {
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
	if n, ok := signalNumber(r.Signal); ok {
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

func (l *Joblog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	for _, t := range l.files() {
		err = errors.Join(err, t.w.Flush())
	}
	return err
}

func (l *Joblog) Close() error {
	err := l.Flush()
	for _, t := range l.files() {
		err = errors.Join(err, t.f.Close())
	}
	return err
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

// signalNumber is the number of a signal named without "SIG" ("TERM":
// 15), as GNU parallel's joblog writes it.
func signalNumber(name string) (int, bool) {
	n := unix.SignalNum("SIG" + name)
	return int(n), n != 0
}
