package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/records"
)

func newLogCmd(stdout, stderr io.Writer) *cobra.Command {
	var f logFlags
	c := &cobra.Command{
		Use:   "log RUN_DIR [JOB] [--stderr] [--attempt N] [--all [--json]]",
		Short: "Print a job's output from a run's records",
		Long: `Print the output of job JOB of the run recorded in RUN_DIR, byte for byte:
its stdout, or with --stderr its stderr. A run keeps every job's output
in a few stream files (RUN_DIR/output/), not a file per job; this is how
to read it.

The job's output is that of its recorded execution (the one whose result
counts, or that failed for good); --attempt N prints attempt N's instead
(a retried failure's, say). --all prints every recorded job's output, in
job order, each line prefixed with "host:job: "; with --json, one JSON
object per job instead: {"job", "host", "attempt", "stdout", "stderr"}.` + exitHelp,
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("attempt") && f.attempt < 1 {
				return usagef("--attempt %d: want an attempt number (from 1)", f.attempt)
			}
			if f.all && len(args) != 1 || !f.all && len(args) != 2 {
				return usagef("log takes RUN_DIR and JOB, or RUN_DIR with --all (see dsub log --help)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			f.dir = records.RunDir(args[0])
			if f.all {
				return f.printAll(stdout)
			}
			job, err := strconv.Atoi(args[1])
			if err != nil || job < 1 {
				return usagef("log: job %q: want a job number (from 1)", args[1])
			}
			return f.printJob(stdout, job)
		},
	}
	fl := c.Flags()
	fl.BoolVar(&f.stderr, "stderr", false, "print the job's stderr, not its stdout")
	fl.IntVar(&f.attempt, "attempt", 0, "print attempt `N`'s output, not the recorded execution's")
	fl.BoolVar(&f.all, "all", false, "print every recorded job's output, lines prefixed with host:job:")
	fl.BoolVar(&f.json, "json", false, "with --all, one JSON object per job")
	return c
}

type logFlags struct {
	dir     records.RunDir
	stderr  bool
	attempt int
	all     bool
	json    bool
}

func (f *logFlags) stream() records.Stream {
	if f.stderr {
		return records.Stderr
	}
	return records.Stdout
}

// load reads the run's manifest and journal, refusing a directory that
// is no run's.
func (f *logFlags) load() (map[int]records.JournalRecord, *records.Manifest, error) {
	m, err := records.ReadManifest(f.dir)
	if err != nil {
		return nil, nil, usagef("log: %s is not a run directory: %v", f.dir, err)
	}
	jr, err := records.ReadJournal(f.dir.Journal())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("log: %w", err)
	}
	return jr, m, nil
}

func (f *logFlags) printJob(w io.Writer, job int) error {
	jr, m, err := f.load()
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	if m.Schema < records.SchemaStreams {
		if f.attempt > 0 {
			return usagef("log: %s was recorded before output streams (schema 1): only the recorded execution's output is kept, in jobs/", f.dir)
		}
		err = f.copyOld(bw, job)
	} else {
		loc, lerr := f.locate(jr, job)
		if lerr != nil {
			return lerr
		}
		_, err = f.dir.ReadOutput(loc, f.stream(), bw)
	}
	if err != nil {
		return fmt.Errorf("log: job %d: %w", job, err)
	}
	return bw.Flush()
}

// locate finds the output of job's recorded execution, or of --attempt.
func (f *logFlags) locate(jr map[int]records.JournalRecord, job int) (records.Locator, error) {
	rec, ok := jr[job]
	if ok && !rec.Output.IsZero() && (f.attempt == 0 || f.attempt == rec.Attempt) {
		return rec.Output, nil
	}
	// Not recorded (still running, or the run stopped first), or another
	// attempt: the streams' end records tell.
	var found records.Locator
	var foundAttempt int
	err := f.scanEnds(func(file string, e records.End) {
		if e.Job == job && (f.attempt == 0 && e.Attempt >= foundAttempt || e.Attempt == f.attempt) {
			found, foundAttempt = records.Locator{File: file, Off: e.Off}, e.Attempt
		}
	})
	if err != nil {
		return records.Locator{}, fmt.Errorf("log: %w", err)
	}
	if found.IsZero() {
		what := "no output"
		if f.attempt > 0 {
			what = fmt.Sprintf("no attempt %d", f.attempt)
		}
		return records.Locator{}, usagef("log: job %d has %s in %s", job, what, f.dir)
	}
	return found, nil
}

// scanEnds calls fn with every execution's end record in the run's
// streams.
func (f *logFlags) scanEnds(fn func(file string, e records.End)) error {
	files, err := filepath.Glob(filepath.Join(f.dir.Output(), "*.dso"))
	if err != nil {
		return err
	}
	for _, p := range files {
		name := filepath.Base(p)
		if err := records.ScanEnds(p, func(e records.End) error { fn(name, e); return nil }); err != nil {
			return err
		}
	}
	return nil
}

func (f *logFlags) copyOld(w io.Writer, job int) error {
	out, er := f.dir.OldJobLogs(job)
	p := out
	if f.stderr {
		p = er
	}
	fh, err := os.Open(p)
	if err != nil {
		return err
	}
	defer fh.Close()
	_, err = io.Copy(w, fh)
	return err
}

// logLine is one job's output as --all --json prints it.
type logLine struct {
	Job     int    `json:"job"`
	Host    string `json:"host"`
	Attempt int    `json:"attempt"`
	Stdout  string `json:"stdout"`
	Stderr  string `json:"stderr"`
}

func (f *logFlags) printAll(w io.Writer) error {
	jr, m, err := f.load()
	if err != nil {
		return err
	}
	if m.Schema < records.SchemaStreams {
		return usagef("log --all: %s was recorded before output streams (schema 1): its output is in jobs/<job>.out and .err", f.dir)
	}
	jobs := make([]int, 0, len(jr))
	for j := range jr {
		jobs = append(jobs, j)
	}
	slices.Sort(jobs)
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	var out, er bytes.Buffer
	for _, j := range jobs {
		rec := jr[j]
		if rec.Output.IsZero() {
			continue
		}
		// Only the streams printed are read.
		out.Reset()
		er.Reset()
		read := func(s records.Stream, b *bytes.Buffer) error {
			if _, err := f.dir.ReadOutput(rec.Output, s, b); err != nil {
				return fmt.Errorf("log: job %d: %w", j, err)
			}
			return nil
		}
		if f.json {
			if err := errors.Join(read(records.Stdout, &out), read(records.Stderr, &er)); err != nil {
				return err
			}
			if err := enc.Encode(logLine{Job: j, Host: rec.Host, Attempt: rec.Attempt, Stdout: out.String(), Stderr: er.String()}); err != nil {
				return err
			}
			continue
		}
		if err := read(f.stream(), &out); err != nil {
			return err
		}
		prefix := visible(rec.Host) + ":" + strconv.Itoa(j) + ": "
		for rest := out.Bytes(); len(rest) > 0; {
			var line []byte
			line, rest, _ = bytes.Cut(rest, []byte("\n"))
			bw.WriteString(prefix)
			bw.Write(line)
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}
