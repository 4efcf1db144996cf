package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/monitor"
	"github.com/dsub-dev/dsub/records"
)

// runRun runs the jobs that f describes on the hosts of hf. record is
// what run.json keeps of the command line (for a resume, the original's).
func runRun(ctx context.Context, hf *hostFlags, f *runFlags, args []string, record runRecord, stdin io.Reader, stdout, stderr io.Writer) error {
	haltAfter, haltNow, err := parseHalt(f.halt)
	if err != nil {
		return usageError{err}
	}
	reducer, printEach, err := f.reducer(stderr)
	if err != nil {
		return err
	}
	tmpl := distributor.NewTemplate(f.template)
	src, err := openJobs(f, tmpl, stdin)
	if err != nil {
		return err
	}
	defer src.close()
	if f.dryRun {
		return dryRun(src, f, stdout)
	}

	// One sink for every warning, the cluster's included: the progress
	// display shows what is written to se above its bars.
	se := &lockedWriter{w: stderr}
	hf.slots = f.slots
	cl, err := hf.cluster(se)
	if err != nil {
		return err
	}
	defer cl.Close()

	out := newRunOutput(stdout, se, printEach, f.keepOrder)
	out.resultsDir = f.results
	ctx, ui, err := startUI(ctx, f, record, se)
	if err != nil {
		return err
	}
	defer ui.close(ctx)
	run, err := cl.Start(ctx, distributor.RunOptions{
		Binary: f.binary, Build: f.build, Files: f.files, Retries: f.retries, Timeout: f.timeout,
		KeepRemote: f.keepRemote, LogsDir: f.logs, JoblogCopy: f.joblog, Total: src.total, Reducer: reducer, OnResult: out.add,
		Warn:    ui.warn(func(msg string) { fmt.Fprintln(se, "dsub: warning:", visible(msg)) }),
		OnEvent: ui.onEvent(),
		Record:  record, ResumeDir: f.resume, ResumeFailed: f.resumeFailed,
		HaltAfter: haltAfter, HaltNow: haltNow, Speculate: f.speculate, SpeculateAfter: f.speculateAfter,
		Launch: f.launch, Agent: agentBinary(), AgentFor: agentFor(agentBinary()),
		SlotNumbers: tmpl.UsesSlot(), Setup: f.setup, Teardown: f.teardown, TeardownTimeout: f.teardownTimeout,
		JobDirs: f.transfer || len(f.returns) > 0, Cleanup: f.cleanup, ReturnDir: f.returnDir,
	})
	if err != nil {
		return usageError{err}
	}
	ui.attach(run)
	out.attach(run)
	if err := src.save.start(run.Dir()); err != nil {
		run.Close()
		run.Wait()
		return err
	}
	if f.resume != "" {
		if err := verifyResume(run, f, tmpl, stdin); err != nil {
			run.Close()
			run.Wait()
			return err
		}
	}
	var feedErr error
	go func() {
		defer run.Close()
		for {
			spec, ok, err := src.next()
			if err != nil {
				feedErr = err
				return
			}
			if !ok {
				return
			}
			if err := run.Submit(ctx, spec); err != nil {
				return
			}
		}
	}()
	stop := showProgress(run, se, terminal(stderr), f.progressEvery)
	stats, result, runErr := run.Wait()
	stop()
	ui.finish(stats, result, runErr)
	out.close()
	return finishRun(ctx, f, run, out, reducer != nil, stats, result, runErr, feedErr, stdout, se)
}

// reducer makes the reducer the flags ask for; printEach is --reduce none
// without --json: each job's whole stdout is printed.
func (f *runFlags) reducer(stderr io.Writer) (red distributor.Reducer, printEach bool, err error) {
	switch {
	case f.reduceCmd != "":
		return distributor.NewCmdReducer(f.reduceCmd, stderr), false, nil
	case f.reduce == "" || f.reduce == "none":
		if !f.asJSON {
			return nil, true, nil
		}
		// --json lists every job's result (null for a job without one).
		red, _ := distributor.NewReducer("list")
		return distributor.Optional(red), false, nil
	}
	red, err = distributor.NewReducer(f.reduce)
	if err != nil {
		return nil, false, usagef("run: --reduce: %v", err)
	}
	return red, false, nil
}

// verifyResume checks every job of re-readable input against the run's
// journal before any is submitted, so that a changed input is refused
// before anything runs.
func verifyResume(run *distributor.Run, f *runFlags, tmpl *distributor.Template, stdin io.Reader) error {
	vs, err := openJobs(f, tmpl, stdin)
	if err != nil {
		return err
	}
	defer vs.close()
	for n := 1; ; n++ {
		spec, ok, err := vs.next()
		if err != nil || !ok {
			return nil
		}
		if err := run.Verify(n, spec); err != nil {
			return err
		}
	}
}

// finishRun prints the result (or the JSON summary) and the statistics,
// and returns the run's error.
func finishRun(ctx context.Context, f *runFlags, run *distributor.Run, out *runOutput, reduced bool,
	stats *records.Stats, result string, runErr, feedErr error, stdout io.Writer, se *lockedWriter) error {
	complete := runErr == nil && feedErr == nil && stats.Failed == 0
	switch {
	case f.asJSON:
		writeSummary(stdout, run, stats, result, complete, out.failures, runErr)
	case reduced && complete:
		fmt.Fprintln(stdout, result)
	case reduced && runErr == nil && stats.Failed > 0:
		// A reduce over some of the jobs would be silently wrong.
		fmt.Fprintf(se, "dsub: no reduced result: %s failed; the other results are kept in %s\n",
			plural(stats.Failed, "job"), records.RunDir(run.Dir()).Journal())
	}
	stats.WriteTable(se)
	fmt.Fprintf(se, "records: %s\n", run.Dir())
	for _, err := range out.errs {
		fmt.Fprintln(se, "dsub:", err)
	}
	if feedErr != nil {
		return usageError{feedErr}
	}
	if runErr != nil {
		if ctx.Err() != nil || errors.Is(runErr, distributor.ErrHalted) || errors.Is(runErr, distributor.ErrNoHosts) || errors.Is(runErr, distributor.ErrRecords) {
			fmt.Fprintf(se, "dsub: %d of %s recorded in %s; resume with: dsub run --resume %s\n",
				stats.Succeeded, plural(stats.Jobs, "job"), records.RunDir(run.Dir()).Journal(), run.Dir())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return runErr
	}
	if stats.Failed > 0 {
		var ids []string
		for _, r := range out.failures {
			ids = append(ids, fmt.Sprint(r.Job))
		}
		fmt.Fprintf(se, "dsub run: %d of %s failed: %s\n", stats.Failed, plural(stats.Jobs, "job"), strings.Join(ids, ","))
		return errReported
	}
	if len(out.errs) > 0 {
		return errReported
	}
	return nil
}

// runSummary is what --json prints: one object for the run.
type runSummary struct {
	// Result is the reduced result; null when there is none (a job
	// failed, or the run stopped early).
	Result    json.RawMessage `json:"result"`
	Jobs      int             `json:"jobs"`
	Succeeded int             `json:"succeeded"`
	Failed    int             `json:"failed"`
	WallS     float64         `json:"wall_s"`
	Speedup   float64         `json:"speedup"`
	RunDir    string          `json:"run_dir"`
	Error     string          `json:"error,omitempty"`
	Hosts     []hostSummary   `json:"hosts"`
	// Unused are the hosts that ran nothing, with their state then.
	Unused   []records.UnusedHost `json:"unused,omitempty"`
	Failures []jobFailure         `json:"failures"`
}

type hostSummary struct {
	Name    string  `json:"name"`
	Jobs    int     `json:"jobs"`
	JobTime float64 `json:"job_time_s"`
}

// jobFailure is one job that failed for good, and why.
type jobFailure struct {
	Job        int    `json:"job"`
	Host       string `json:"host"`
	Exit       int    `json:"exit"`
	Error      string `json:"error"`
	StderrTail string `json:"stderr_tail,omitempty"`
	// Log is the command that prints the job's output (dsub log).
	Log string `json:"log,omitempty"`
}

func writeSummary(w io.Writer, run *distributor.Run, stats *records.Stats, result string, complete bool, failures []distributor.Result, runErr error) {
	s := runSummary{Jobs: stats.Jobs, Succeeded: stats.Succeeded, Failed: stats.Failed, WallS: stats.Wall,
		Speedup: stats.Speedup(), RunDir: run.Dir(), Hosts: []hostSummary{}, Unused: stats.Unused, Failures: []jobFailure{}}
	if complete {
		s.Result = distributor.ResultValue(result)
	}
	if runErr != nil {
		s.Error = runErr.Error()
	}
	for _, h := range stats.Hosts {
		s.Hosts = append(s.Hosts, hostSummary{Name: h.Name, Jobs: h.Jobs, JobTime: h.JobTime})
	}
	for _, r := range failures {
		s.Failures = append(s.Failures, jobFailure{Job: r.Job, Host: r.Host, Exit: r.Exit, Error: fmt.Sprint(r.Err),
			StderrTail: r.StderrTail, Log: monitor.LogCommand(run.Dir(), r.Job)})
	}
	_ = json.NewEncoder(w).Encode(s)
}

// runOutput receives each job's final outcome from the dispatcher and,
// off its goroutine, reports failures and, with --reduce none, copies each
// job's whole stdout from the run's output streams to stdout, kept together per job (in
// job order with --keep-order).
type runOutput struct {
	stdout    io.Writer
	se        *lockedWriter
	printEach bool
	seq       *sequencer
	dir       atomic.Pointer[records.RunDir] // the run's, once started
	// resultsDir, if set, gets GNU parallel's per-job files (--results):
	// <dir>/<job>/stdout and stderr.
	resultsDir string

	mu       sync.Mutex
	queue    []distributor.Result
	more     *sync.Cond
	closed   bool
	done     chan struct{}
	failures []distributor.Result // in job order once closed
	errs     []error
}

// attach gives o the run whose outputs it prints; results come only
// after it started.
func (o *runOutput) attach(run *distributor.Run) {
	d := records.RunDir(run.Dir())
	o.dir.Store(&d)
}

// logCommand is the command that prints job's output, or "".
func (o *runOutput) logCommand(job int) string {
	if d := o.dir.Load(); d != nil {
		return monitor.LogCommand(string(*d), job)
	}
	return ""
}

func newRunOutput(stdout io.Writer, se *lockedWriter, printEach, keepOrder bool) *runOutput {
	o := &runOutput{stdout: stdout, se: se, printEach: printEach, done: make(chan struct{})}
	o.more = sync.NewCond(&o.mu)
	if keepOrder {
		o.seq = newSequencer(o.print)
	}
	go o.loop()
	return o
}

// add queues r; it never blocks on output.
func (o *runOutput) add(r distributor.Result) {
	o.mu.Lock()
	o.queue = append(o.queue, r)
	if r.Err != nil {
		o.failures = append(o.failures, r)
	}
	o.mu.Unlock()
	o.more.Signal()
}

func (o *runOutput) loop() {
	defer close(o.done)
	for {
		o.mu.Lock()
		for len(o.queue) == 0 && !o.closed {
			o.more.Wait()
		}
		batch := o.queue
		o.queue = nil
		closed := o.closed
		o.mu.Unlock()
		for _, r := range batch {
			if r.Err != nil {
				fmt.Fprintln(o.se, "dsub:", failureReport(r, o.logCommand(r.Job)))
			}
			if o.seq != nil {
				o.seq.add(r)
			} else {
				o.print(r)
			}
			o.writeResults(r)
		}
		if closed && len(batch) == 0 {
			return
		}
	}
}

// print copies a job's whole stdout, as one block.
func (o *runOutput) print(r distributor.Result) {
	d := o.dir.Load()
	if !o.printEach || r.Output.IsZero() || d == nil {
		return
	}
	last := &lastByte{w: o.stdout}
	if _, err := d.ReadOutput(r.Output, records.Stdout, last); err != nil {
		o.errs = append(o.errs, fmt.Errorf("output of job %d: %w", r.Job, err))
	}
	if last.n > 0 && last.b != '\n' {
		io.WriteString(o.stdout, "\n")
	}
}

// writeResults writes r's output as GNU parallel's --results files:
// paid for only when asked.
func (o *runOutput) writeResults(r distributor.Result) {
	d := o.dir.Load()
	if o.resultsDir == "" || d == nil || r.Output.IsZero() {
		return
	}
	dir := filepath.Join(o.resultsDir, strconv.Itoa(r.Job))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		o.errs = append(o.errs, fmt.Errorf("--results: %w", err))
		return
	}
	for _, s := range []records.Stream{records.Stdout, records.Stderr} {
		if err := writeOutputFile(filepath.Join(dir, s.String()), *d, r.Output, s); err != nil {
			o.errs = append(o.errs, fmt.Errorf("--results: job %d: %w", r.Job, err))
		}
	}
}

func writeOutputFile(path string, d records.RunDir, loc records.Locator, s records.Stream) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 32<<10)
	_, err = d.ReadOutput(loc, s, bw)
	return errors.Join(err, bw.Flush(), f.Close())
}

// close waits until everything queued is printed.
func (o *runOutput) close() {
	o.mu.Lock()
	o.closed = true
	o.mu.Unlock()
	o.more.Signal()
	<-o.done
	sort.Slice(o.failures, func(i, j int) bool { return o.failures[i].Job < o.failures[j].Job })
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}
