package main

import (
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
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dsub-dev/dsub/distributor"
)

type runFlags struct {
	binary, build, commands string
	shards                  int
	argsFile                string
	files                   []string
	reduce, reduceCmd       string
	keepOrder               bool
	logs                    string
	asJSON                  bool
	retries                 int
	timeout                 time.Duration
	keepRemote              bool
	progressEvery           time.Duration
	resume                  string
	resumeFailed            bool
	halt                    string
	speculate               bool
	speculateAfter          time.Duration
}

// parseHalt reads --halt: "never", or "now|soon,fail=N".
func parseHalt(s string) (n int, now bool, err error) {
	if s == "" || s == "never" {
		return 0, false, nil
	}
	when, cond, ok := strings.Cut(s, ",")
	v, found := strings.CutPrefix(cond, "fail=")
	if !ok || !found || (when != "now" && when != "soon") {
		return 0, false, fmt.Errorf("--halt %q: want now,fail=N or soon,fail=N", s)
	}
	if n, err = strconv.Atoi(v); err != nil || n < 1 {
		return 0, false, fmt.Errorf("--halt %q: fail=N needs a positive count", s)
	}
	return n, when == "now", nil
}

// runRecord is what run.json keeps of the command line, so that
// `dsub run --resume DIR` can replay it.
type runRecord struct {
	Args []string `json:"args"` // everything after "run"
	Cwd  string   `json:"cwd"`
}

func newRunCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var f runFlags
	c := &cobra.Command{
		Use:   "run (--binary PATH | --build PKG | --commands FILE) [flags] [-- ARG...]",
		Short: "Ship a program to every host, shard the work over them, and reduce the results",
		Long: `Ship a compute program to every selected host and run jobs across their
slots, balancing load dynamically: a free slot takes the next job.

What runs (one of):
  --binary PATH    any program; uploaded once per host to a content-addressed
                   cache (<workdir>/bin/<sha256>); a re-run uploads 0 bytes
  --build PKG      a Go package, built with CGO_ENABLED=0 for each distinct
                   remote GOOS/GOARCH
  --commands FILE  one shell command line per line, one job each; no binary

Jobs:
  --shards N       N jobs
  --args-file F    one job per line of F ("-" reads stdin, streaming)
  Placeholders in ARGs: {#} job number (1-based), {shard} and {shards}
  (0-based index, count), {} the input line, {1}..{9} its fields.
  Each job also gets DSUB_JOB, DSUB_SHARD, DSUB_SHARDS and DSUB_HOST.

Results: a job's result is the last non-empty line of its stdout (JSON when
valid, else a string). A job that exits non-zero or prints no result line
fails. A program may print "dsub:progress F" (0..1) lines on stderr.
  --reduce sum|min|max   exact over big integers and decimals
           count|concat|list|none   (none: one line per result)
  --reduce-cmd CMD       local reducer: {"job":N,"result":...} lines in job
                         order on stdin; its stdout is the result
Only the reduced result goes to stdout; progress, warnings and the final
per-host table go to stderr. --json prints a summary object instead.

Records in <logs>/<run-id>/: jobs/<#>.out and .err, joblog.tsv (GNU
parallel's columns), results.jsonl, run.json.` + exitHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.resume != "" {
				return resumeRun(cmd, &hf, &f, args, stdin, stdout, stderr)
			}
			return runRun(cmd.Context(), &hf, &f, args, rawRunArgs(cmd), stdin, stdout, stderr)
		},
	}
	hf.register(c)
	registerRunFlags(c, &f)
	return c
}

func registerRunFlags(c *cobra.Command, f *runFlags) {
	fl := c.Flags()
	fl.StringVar(&f.binary, "binary", "", "program to ship and run")
	fl.StringVar(&f.build, "build", "", "Go package to build (CGO_ENABLED=0) for each remote platform")
	fl.StringVar(&f.commands, "commands", "", "file of shell command lines, one job each")
	fl.IntVar(&f.shards, "shards", 0, "number of jobs")
	fl.StringVar(&f.argsFile, "args-file", "", "one job per line of this file (- = stdin)")
	fl.StringArrayVar(&f.files, "file", nil, "extra input file shipped into the run directory (repeatable)")
	fl.StringVar(&f.reduce, "reduce", "", "sum, min, max, count, concat, list or none (default none)")
	fl.StringVar(&f.reduceCmd, "reduce-cmd", "", "local command that reduces the results")
	fl.BoolVar(&f.keepOrder, "keep-order", false, "with --reduce none: print results in job order")
	fl.StringVar(&f.logs, "logs", "dsub-runs", "directory for run records")
	fl.BoolVar(&f.asJSON, "json", false, "print a JSON summary on stdout")
	fl.IntVar(&f.retries, "retries", 0, "retry a failed job up to N times, on another host where possible")
	fl.DurationVar(&f.timeout, "timeout", 0, "per-job time limit; the job's remote processes are killed")
	fl.BoolVar(&f.keepRemote, "keep-remote", false, "keep the remote run directory")
	fl.DurationVar(&f.progressEvery, "progress-interval", 5*time.Second, "when not on a terminal, print a progress line this often")
	fl.StringVar(&f.resume, "resume", "", "continue the run recorded in RUN_DIR: run only jobs without a recorded result")
	fl.BoolVar(&f.resumeFailed, "resume-failed", false, "with --resume: also re-run jobs recorded as failed")
	fl.StringVar(&f.halt, "halt", "never", "stop early: soon,fail=N (start no new jobs after N failed) or now,fail=N (also kill running ones)")
	fl.BoolVar(&f.speculate, "speculate", false, "when slots are idle and no job waits, run stragglers again on another host: the first result wins, the other is killed")
	fl.DurationVar(&f.speculateAfter, "speculate-after", time.Second, "with --speculate: a straggler has run at least this long and twice the median job time")
}

// rawRunArgs is the command line after "run", as typed.
func rawRunArgs(cmd *cobra.Command) []string {
	var out []string
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+fl.Name+"="+v)
			}
			return
		}
		out = append(out, "--"+fl.Name+"="+fl.Value.String())
	})
	out = append(out, "--")
	return append(out, cmd.Flags().Args()...)
}

// resumeRun replays the command line recorded in DIR/run.json with
// --resume DIR. Flags given now (--hosts, --on, --retries, ...) override
// the recorded ones; relative paths resolve against the recorded
// directory.
func resumeRun(cmd *cobra.Command, hf *hostFlags, f *runFlags, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("run --resume takes no ARGs: they are recorded in the run")
	}
	dir := f.resume
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return usagef("--resume %s: %v", dir, err)
	}
	var doc struct {
		Command runRecord `json:"command"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Command.Args) == 0 {
		return usagef("--resume %s: run.json holds no recorded command line", dir)
	}
	rec := doc.Command
	var rhf hostFlags
	var rf runFlags
	replay := &cobra.Command{Use: "run"} // fresh variables for the recorded flags
	rhf.register(replay)
	registerRunFlags(replay, &rf)
	if err := replay.Flags().Parse(rec.Args); err != nil {
		return usagef("--resume %s: recorded command line: %v", dir, err)
	}
	// Flags set now win.
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if fl.Name != "resume" && fl.Name != "resume-failed" {
			_ = replay.Flags().Set(fl.Name, fl.Value.String())
		}
	})
	rf.resume, rf.resumeFailed = dir, f.resumeFailed
	abs := func(p *string) {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) && rec.Cwd != "" {
			*p = filepath.Join(rec.Cwd, *p)
		}
	}
	abs(&rf.binary)
	abs(&rf.commands)
	abs(&rf.argsFile)
	if rf.build != "" && distributor.IsLocalPackage(rf.build) {
		abs(&rf.build)
	}
	for i := range rf.files {
		abs(&rf.files[i])
	}
	if !cmd.Flags().Changed("hosts") {
		abs(&rhf.hostsFile)
	}
	if cmd.Flags().Changed("on") {
		rhf.on = hf.on
	}
	return runRun(cmd.Context(), &rhf, &rf, replay.Flags().Args(), rec.Args, stdin, stdout, stderr)
}

func runRun(ctx context.Context, hf *hostFlags, f *runFlags, args, record []string, stdin io.Reader, stdout, stderr io.Writer) error {
	modes := 0
	for _, s := range []string{f.binary, f.build, f.commands} {
		if s != "" {
			modes++
		}
	}
	switch {
	case modes != 1:
		return usagef("run: give exactly one of --binary, --build and --commands")
	case f.shards != 0 && f.argsFile != "":
		return usagef("run: --shards and --args-file are alternatives")
	case f.shards < 0:
		return usagef("run: --shards must be positive")
	case f.commands != "" && (len(args) > 0 || f.shards != 0 || f.argsFile != ""):
		return usagef("run: --commands takes no ARGs, --shards or --args-file: each line is a job")
	case f.reduce != "" && f.reduceCmd != "":
		return usagef("run: --reduce and --reduce-cmd are alternatives")
	case f.keepOrder && f.reduce != "" && f.reduce != "none":
		return usagef("run: --keep-order applies to --reduce none")
	case f.retries < 0:
		return usagef("run: --retries must be 0 or more")
	}
	haltAfter, haltNow, err := parseHalt(f.halt)
	if err != nil {
		return usageError{err}
	}
	var reducer distributor.Reducer
	printEach := false
	switch {
	case f.reduceCmd != "":
		reducer = distributor.NewCmdReducer(f.reduceCmd, stderr)
	case f.reduce == "" || f.reduce == "none":
		printEach = !f.asJSON
		if f.asJSON {
			reducer, _ = distributor.NewReducer("list")
		}
	default:
		r, err := distributor.NewReducer(f.reduce)
		if err != nil {
			return usageError{err}
		}
		reducer = r
	}

	tmpl := distributor.NewTemplate(args)
	// The job source is opened before anything touches a host, so bad
	// input is a usage error with nothing run.
	next, closeSrc, err := jobSource(f, tmpl, stdin)
	if err != nil {
		return err
	}
	defer closeSrc()

	cl, err := hf.cluster(stderr)
	if err != nil {
		return err
	}
	defer cl.Close()

	se := &lockedWriter{w: stderr}
	warn := func(msg string) { fmt.Fprintln(se, "dsub: warning:", msg) }
	var outMu sync.Mutex
	var failures []distributor.Result
	seq := newSequencer(func(r distributor.Result) {
		if r.Err == nil && printEach {
			fmt.Fprintln(stdout, distributor.TextOf(r.Value))
		}
	})
	onResult := func(r distributor.Result) {
		outMu.Lock()
		defer outMu.Unlock()
		if r.Err != nil {
			failures = append(failures, r)
			fmt.Fprintln(se, "dsub:", failureReport(r))
		}
		if f.keepOrder {
			seq.add(r)
		} else if r.Err == nil && printEach {
			fmt.Fprintln(stdout, distributor.TextOf(r.Value))
		}
	}
	run, err := cl.Start(ctx, distributor.RunOptions{
		Binary: f.binary, Build: f.build, Files: f.files, Retries: f.retries, Timeout: f.timeout,
		KeepRemote: f.keepRemote, LogsDir: f.logs, Reducer: reducer, OnResult: onResult, Warn: warn,
		Record: runRecord{Args: record, Cwd: cwd()}, ResumeDir: f.resume, ResumeFailed: f.resumeFailed,
		HaltAfter: haltAfter, HaltNow: haltNow, Speculate: f.speculate, SpeculateAfter: f.speculateAfter,
	})
	if err != nil {
		return usageError{err}
	}
	if f.resume != "" && f.argsFile != "-" {
		vnext, vclose, err := jobSource(f, tmpl, stdin)
		if err != nil {
			return err
		}
		for n := 1; ; n++ {
			spec, ok, err := vnext()
			if err != nil || !ok {
				break
			}
			if err := run.Verify(n, spec); err != nil {
				vclose()
				run.Close()
				run.Wait()
				return err
			}
		}
		vclose()
	}
	var feedErr error
	go func() {
		defer run.Close()
		for {
			spec, ok, err := next()
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

	if f.asJSON {
		var hosts []map[string]any
		for _, h := range stats.Hosts {
			hosts = append(hosts, map[string]any{"name": h.Name, "jobs": h.Jobs, "job_time_s": h.JobTime})
		}
		var res any = result
		if json.Valid([]byte(result)) && result != "" {
			res = json.RawMessage(result)
		}
		enc := json.NewEncoder(stdout)
		_ = enc.Encode(map[string]any{
			"result": res, "jobs": stats.Jobs, "succeeded": stats.Succeeded, "failed": stats.Failed,
			"wall_s": stats.Wall, "speedup": stats.Speedup(), "run_dir": run.Dir(), "hosts": hosts,
		})
	} else if reducer != nil && runErr == nil && stats.Failed == 0 {
		fmt.Fprintln(stdout, result)
	} else if reducer != nil && runErr == nil {
		// A reduce over some of the jobs would be silently wrong.
		fmt.Fprintf(se, "dsub: no reduced result: %d jobs failed; the other results are kept in %s\n",
			stats.Failed, filepath.Join(run.Dir(), "results.jsonl"))
	}
	stats.WriteTable(se)
	fmt.Fprintf(se, "records: %s\n", run.Dir())
	if feedErr != nil {
		return usageError{feedErr}
	}
	if runErr != nil {
		if ctx.Err() != nil || errors.Is(runErr, distributor.ErrHalted) || errors.Is(runErr, distributor.ErrNoHosts) || errors.Is(runErr, distributor.ErrRecords) {
			fmt.Fprintf(se, "dsub: %d of %d jobs recorded in %s; resume with: dsub run --resume %s\n",
				stats.Succeeded, stats.Jobs, filepath.Join(run.Dir(), "results.jsonl"), run.Dir())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return runErr
	}
	if stats.Failed > 0 {
		sort.Slice(failures, func(i, j int) bool { return failures[i].Job < failures[j].Job })
		var ids []string
		for _, r := range failures {
			ids = append(ids, fmt.Sprint(r.Job))
		}
		fmt.Fprintf(se, "dsub run: %d of %d jobs failed: %s\n", stats.Failed, stats.Jobs, strings.Join(ids, ","))
		return errReported
	}
	return nil
}

// jobSource opens the jobs that f describes and returns an iterator.
func jobSource(f *runFlags, tmpl *distributor.Template, stdin io.Reader) (func() (distributor.JobSpec, bool, error), func(), error) {
	var next func() (distributor.JobSpec, bool, error)
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	switch {
	case f.commands != "":
		fh, err := os.Open(f.commands)
		if err != nil {
			return nil, nil, usageError{fmt.Errorf("--commands: %w", err)}
		}
		closers = append(closers, fh.Close)
		lr := distributor.NewLineReader(fh, f.commands)
		n := 0
		next = func() (distributor.JobSpec, bool, error) {
			line, _, err := lr.Next()
			if err == io.EOF {
				return distributor.JobSpec{}, false, nil
			}
			n++
			return distributor.JobSpec{Shell: line, Shard: n - 1, Input: line}, err == nil, err
		}
	case f.argsFile != "":
		var r io.Reader = stdin
		name := "stdin"
		count := 0
		if f.argsFile != "-" {
			fh, err := os.Open(f.argsFile)
			if err != nil {
				return nil, nil, usageError{fmt.Errorf("--args-file: %w", err)}
			}
			closers = append(closers, fh.Close)
			if count, err = distributor.CountLines(fh, f.argsFile); err != nil {
				closeAll()
				return nil, nil, usageError{err}
			}
			if _, err := fh.Seek(0, io.SeekStart); err != nil {
				closeAll()
				return nil, nil, err
			}
			r, name = fh, f.argsFile
		} else if tmpl.UsesCount() {
			return nil, nil, usagef("run: {shards} is unknown when jobs stream from stdin")
		}
		lr := distributor.NewLineReader(r, name)
		n := 0
		next = func() (distributor.JobSpec, bool, error) {
			line, _, err := lr.Next()
			if err == io.EOF {
				return distributor.JobSpec{}, false, nil
			}
			if err != nil {
				return distributor.JobSpec{}, false, err
			}
			n++
			return distributor.JobSpec{Args: tmpl.Expand(n, count, line), Shard: n - 1, Shards: count, Input: line}, true, nil
		}
	default:
		if tmpl.UsesInput() {
			return nil, nil, usagef("run: {} and {1}..{9} need --args-file")
		}
		total := max(f.shards, 1)
		n := 0
		next = func() (distributor.JobSpec, bool, error) {
			if n == total {
				return distributor.JobSpec{}, false, nil
			}
			n++
			return distributor.JobSpec{Args: tmpl.Expand(n, total, ""), Shard: n - 1, Shards: total}, true, nil
		}
	}

	return next, closeAll, nil
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}

// sequencer releases results in job order, holding later ones until every
// earlier job has finished (successfully or not).
type sequencer struct {
	next int
	held map[int]distributor.Result
	out  func(distributor.Result)
}

func newSequencer(out func(distributor.Result)) *sequencer {
	return &sequencer{next: 1, held: map[int]distributor.Result{}, out: out}
}

func (s *sequencer) add(r distributor.Result) {
	s.held[r.Job] = r
	for {
		r, ok := s.held[s.next]
		if !ok {
			return
		}
		delete(s.held, s.next)
		s.out(r)
		s.next++
	}
}
