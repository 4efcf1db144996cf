package records

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// maxJournalLine bounds a journal line as ReadJournal reads it: a result
// line (at most 1 MiB, distributor.MaxResultLine) JSON-escaped, and the
// rest of its record.
const maxJournalLine = 2<<20 + 4096

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
	Output Locator `json:"output,omitzero"`
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
	sc.Buffer(make([]byte, 64<<10), maxJournalLine)
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

// Journal appends records to results.jsonl with group commit: Append
// buffers, Commit writes and fsyncs. A result counts only after the Commit
// that covers it, so a crash loses at most uncounted work.
type Journal struct {
	f   *os.File
	w   *bufio.Writer
	err error
	n   int // records appended since the last commit
}

func OpenJournal(path string) (*Journal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	if err := trimTornTail(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return &Journal{f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
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

func (j *Journal) Append(r *JournalRecord) {
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

// Poison stops the journal: nothing appended since the last commit, or
// after, is ever written (their output could not be kept).
func (j *Journal) Poison(err error) {
	if j.err == nil {
		j.err = err
	}
}

func (j *Journal) Commit() error {
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

func (j *Journal) Close() error {
	err := j.Commit()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	return err
}
