package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
	results                 string
	jobs                    string // -j N: slots of each host whose slots are not given
	slots                   int    // -j's N (0: not given)
	joblog                  string // --joblog FILE: joblog.tsv written there too
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
	launch                  string
	dryRun                  bool
	colsep                  string
	setup, teardown         string
	teardownTimeout         time.Duration
	transfer, cleanup       bool
	returns                 []string
	returnDir               string
	ui                      string // --ui ADDR: "" none
	uiControl               bool

	// Set by validate: the command template (ARGs before any :::), the
	// input sources after it, and --colsep compiled.
	template []string
	sources  []inputSource
	colsepRE *regexp.Regexp
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
// `dsub run --resume DIR` can replay it. A resume never rewrites it.
type runRecord struct {
	Args []string `json:"args"` // everything after "run"
	Cwd  string   `json:"cwd"`
}

// validate checks the flags before anything runs. Every error names its
// flag; the caller turns it into exit status 2.
func (f *runFlags) validate(ctx context.Context, fl *pflag.FlagSet, args []string) error {
	if err := f.validateInputs(fl, args); err != nil {
		return err
	}
	if err := f.validateFlags(fl); err != nil {
		return err
	}
	if err := f.validateJobFiles(fl); err != nil {
		return err
	}
	return f.validateFiles(ctx)
}

// validateInputs splits ARGs into the template and the input sources and
// checks how the inputs are given.
func (f *runFlags) validateInputs(fl *pflag.FlagSet, args []string) error {
	var err error
	if f.template, f.sources, err = splitSources(args); err != nil {
		return err
	}
	if fl.Changed("colsep") {
		if f.colsep == "" {
			return usagef("run: --colsep is empty")
		}
		if f.colsepRE, err = regexp.Compile(f.colsep); err != nil {
			return usagef("run: --colsep %q: %v", f.colsep, err)
		}
	}
	if len(f.sources) > 0 && (f.argsFile != "" || f.shards != 0 || f.commands != "") {
		return usagef("run: input sources (::: and ::::) take the place of --args-file, --shards and --commands")
	}
	if f.colsepRE != nil && f.argsFile == "" && len(f.sources) == 0 {
		return usagef("run: --colsep splits input lines: it goes with --args-file, ::: or ::::")
	}
	return nil
}

// validateFlags checks the flags' values and combinations.
func (f *runFlags) validateFlags(fl *pflag.FlagSet) error {
	if fl.Changed("jobs") {
		n, err := strconv.Atoi(f.jobs)
		if err != nil || n < 1 {
			return usagef("run: -j %q: want a number of slots per host, 1 or more (GNU parallel's -j 0, +N and N%% are not taken)", f.jobs)
		}
		f.slots = n
	}
	modes := 0
	for _, s := range []string{f.binary, f.build, f.commands} {
		if s != "" {
			modes++
		}
	}
	switch {
	case modes > 1:
		return usagef("run: give one of --binary, --build and --commands, or a command line as ARGs")
	case modes == 0 && len(f.template) == 0:
		return usagef("run: what runs? give --binary, --build or --commands, or a command line: dsub run -- CMD {} ::: A B")
	case f.shards != 0 && f.argsFile != "":
		return usagef("run: --shards and --args-file are alternatives")
	case fl.Changed("shards") && f.shards < 1:
		return usagef("run: --shards %d: must be at least 1", f.shards)
	case f.commands != "" && (len(f.template) > 0 || f.shards != 0 || f.argsFile != ""):
		return usagef("run: --commands takes no ARGs, --shards or --args-file: each line is a job")
	case f.reduce != "" && f.reduceCmd != "":
		return usagef("run: --reduce and --reduce-cmd are alternatives")
	case fl.Changed("reduce-cmd") && strings.TrimSpace(f.reduceCmd) == "":
		return usagef("run: --reduce-cmd is empty")
	case f.dryRun && f.resume != "":
		return usagef("run: --dry-run and --resume are alternatives")
	case f.keepOrder && f.reduce != "" && f.reduce != "none":
		return usagef("run: --keep-order applies to --reduce none")
	case f.retries < 0:
		return usagef("run: --retries %d: must be 0 or more", f.retries)
	case f.timeout < 0:
		return usagef("run: --timeout %s: must be positive (0: no limit)", f.timeout)
	case f.uiControl && f.ui == "":
		return usagef("run: --ui-control needs --ui")
	case f.progressEvery <= 0:
		return usagef("run: --progress-interval %s: must be positive", f.progressEvery)
	case fl.Changed("setup") && strings.TrimSpace(f.setup) == "", fl.Changed("teardown") && strings.TrimSpace(f.teardown) == "":
		return usagef("run: --setup and --teardown need a command line")
	case f.teardownTimeout <= 0:
		return usagef("run: --teardown-timeout %s: must be positive", f.teardownTimeout)
	case f.speculateAfter <= 0:
		return usagef("run: --speculate-after %s: must be positive", f.speculateAfter)
	case !distributor.ValidLaunch(f.launch) || f.launch == "":
		return usagef("run: --launch %q: want session, agent or auto", f.launch)
	case strings.TrimSpace(f.logs) == "":
		return usagef("run: --logs is empty")
	case fl.Changed("binary") && f.binary == "", fl.Changed("commands") && f.commands == "", fl.Changed("args-file") && f.argsFile == "":
		return usagef("run: --binary, --commands and --args-file need a file name")
	case f.resumeFailed && f.resume == "":
		return usagef("run: --resume-failed goes with --resume DIR")
	}
	return nil
}

// validateJobFiles checks --transfer, --return, --return-dir and
// --cleanup.
func (f *runFlags) validateJobFiles(fl *pflag.FlagSet) error {
	switch {
	case f.transfer && f.argsFile == "" && len(f.sources) == 0:
		return usagef("run: --transfer uploads each job's input file: it goes with --args-file, ::: or ::::")
	case f.cleanup && !f.transfer && len(f.returns) == 0:
		return usagef("run: --cleanup removes what --transfer and --return move: give one of them")
	case fl.Changed("return-dir") && len(f.returns) == 0:
		return usagef("run: --return-dir goes with --return")
	case fl.Changed("return-dir") && strings.TrimSpace(f.returnDir) == "":
		return usagef("run: --return-dir is empty")
	}
	for _, r := range f.returns {
		if !filepath.IsLocal(r) {
			return usagef("run: --return %q: want a path inside the job's directory (relative, without ..)", r)
		}
		if f.returnDir != "" && !distributor.NewTemplate([]string{r}).UsesAny() {
			// One directory for every job: each would replace the last.
			return usagef("run: --return %q with --return-dir: every job would write %s there; put a placeholder in it ({#}, {/.}, ...)", r, r)
		}
	}
	return nil
}

// validateFiles checks the local files the flags name, and what must be
// resolved before anything runs (--halt, --reduce, --build).
func (f *runFlags) validateFiles(ctx context.Context) error {
	for _, file := range f.files {
		if fi, err := os.Stat(file); err != nil {
			return usagef("run: --file %v", err)
		} else if !fi.Mode().IsRegular() {
			return usagef("run: --file %s: not a regular file", file)
		}
	}
	if f.binary != "" {
		if fi, err := os.Stat(f.binary); err != nil {
			return usagef("run: --binary %v", err)
		} else if !fi.Mode().IsRegular() {
			return usagef("run: --binary %s: not a regular file", f.binary)
		}
	}
	if _, _, err := parseHalt(f.halt); err != nil {
		return usageError{err}
	}
	if f.reduce != "" && f.reduce != "none" {
		if _, err := distributor.NewReducer(f.reduce); err != nil {
			return usagef("run: --reduce: %v", err)
		}
	}
	if f.build != "" {
		if err := distributor.CheckBuild(ctx, f.build); err != nil {
			return usagef("run: --build %s: %v", f.build, err)
		}
	}
	return nil
}

func newRunCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var f runFlags
	c := &cobra.Command{
		Use:   "run [flags] (--binary PATH [-- ARG...] | --build PKG [-- ARG...] | --commands FILE | -- CMD [ARG...]) [::: VALUE... | :::: FILE...]...",
		Short: "Ship a program to every host, shard the work over them, and reduce the results",
		Long: `Ship a compute program to every selected host and run jobs across their
slots, balancing load dynamically: a free slot takes the next job.

What runs (one of):
  --binary PATH    any program; uploaded once per host to a content-addressed
                   cache (<workdir>/bin/<sha256>); a re-run uploads 0 bytes
  --build PKG      a Go package, built with CGO_ENABLED=0 for each distinct
                   remote GOOS/GOARCH
  --commands FILE  one shell command line per line, one job each; no binary
  -- CMD ARG...    a command line template for the remote shell, as GNU
                   parallel's: each value put in is shell-quoted

Jobs:
  --shards N       N jobs
  --args-file F    one job per line of F ("-" reads stdin, streaming)
  ::: A B C        input sources, as GNU parallel's: the values given;
  :::: FILE        the lines of FILE; several sources give every
                   combination (the last varies fastest); :::+ and ::::+
                   pair a source with the one before it, value by value
  --colsep REGEX   split input lines into columns
  Placeholders in ARGs, as GNU parallel's: {#} job number (1-based), {%}
  the job's slot on its host (1 to its slots; also $DSUB_SLOT), {}
  the input (each column a word), {1} {2} ... its columns (the input
  sources' values, or a line split by --colsep; without --colsep a line
  is one column); {shard} and {shards} (0-based index, count). {.} {/}
  {//} {/.} (also {1.} {1/} ...) strip the extension, take the base name
  or directory, or the base name without extension. Any other {...} is
  left as it is.
  Each job also gets DSUB_JOB, DSUB_SHARD, DSUB_SHARDS, DSUB_HOST,
  DSUB_ATTEMPT and DSUB_RUN (the run id, by which its processes are found).

  In --commands and --args-file, blank lines and lines starting with #
  are not jobs ({#} counts only jobs). In a :::: file, as in GNU
  parallel's, every line is a value, blank ones included.

Per host: --setup CMD runs once on each host before its first job (again
when a lost host re-joins, and on resume); --teardown CMD once after its
last job. Their output: <logs>/<run-id>/hosts/<host>/setup.out|err and
teardown.out|err; run.json records how they ended.

Per job, as GNU parallel's --transfer, --return and --cleanup: each job
runs in its own directory on its host; --transfer puts its input files
there, --return fetches what it wrote, into <logs>/<run-id>/out/<job>/ or
--return-dir (a job succeeds once they are safely on disk); $DSUB_RUN_DIR
is the run directory, where --file puts its files.

Results: a job succeeds when it exits 0, as with GNU parallel. Its result
is the last non-empty line of its stdout (JSON when valid, else a string);
a reduce that uses results (sum, min, max, concat, list, --reduce-cmd)
fails a job that prints none. A program may print "dsub:progress F" (0..1)
lines on stderr.
  --reduce none          (default) each job's whole stdout, kept together
                         per job, as GNU parallel --group; --keep-order
                         prints them in job order
  --reduce sum|min|max   exact over big integers and decimals
           count         the number of jobs that succeeded
           concat|list   the results, in job order
  --reduce-cmd CMD       local reducer: {"job":N,"result":...} lines in job
                         order on stdin; its stdout is the result
Only the reduced result goes to stdout; progress, warnings and the final
per-host table go to stderr. --json prints a summary object instead, with
the failed jobs and why they failed.

Records in <logs>/<run-id>/: output/<n>.dso, every job's stdout and
stderr in a few stream files (print a job's with dsub log RUN_DIR JOB;
--results DIR also writes DIR/<job>/stdout and stderr), joblog.tsv (GNU
parallel's: one row per job that ran, the attempt that settled it;
Exitval is the job's exit status, Signal the number of the signal that
ended it, Outcome says why a job that exited 0 failed), executions.tsv
(the same columns, every execution), results.jsonl, run.json; with
--args-file -,
the input as read (input), so that --resume needs no stdin.` + exitHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.resume != "" {
				return resumeRun(cmd, &hf, &f, args, stdin, stdout, stderr)
			}
			if err := f.validate(cmd.Context(), cmd.Flags(), args); err != nil {
				return err
			}
			return runRun(cmd.Context(), &hf, &f, args, runRecord{Args: rawRunArgs(cmd), Cwd: cwd()}, stdin, stdout, stderr)
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
	fl.StringVarP(&f.argsFile, "args-file", "a", "", "one job per line of this file (- = stdin)")
	fl.StringArrayVar(&f.files, "file", nil, "extra input file shipped into the run directory (repeatable)")
	fl.StringVar(&f.reduce, "reduce", "", "sum, min, max (per key when results are JSON objects), count, concat, list or none (default none)")
	fl.StringVar(&f.reduceCmd, "reduce-cmd", "", "local command that reduces the results")
	fl.BoolVarP(&f.keepOrder, "keep-order", "k", false, "with --reduce none: print the jobs' outputs in job order")
	fl.StringVarP(&f.jobs, "jobs", "j", "", "`N` slots on each host whose slots are not given (as GNU parallel's -j: a hosts file's slots, -w N/host and --local N win)")
	fl.StringVar(&f.results, "results", "", "also write each job's output to `DIR`/<job>/stdout and stderr (GNU parallel's --results)")
	fl.StringVar(&f.joblog, "joblog", "", "also write the joblog (GNU parallel's columns) to `FILE`, as the run goes")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print each job's command line, shell-quoted, and run nothing (no host is contacted)")
	fl.StringVar(&f.logs, "logs", "dsub-runs", "directory for run records")
	fl.BoolVar(&f.asJSON, "json", false, "print a JSON summary on stdout")
	fl.IntVar(&f.retries, "retries", 0, "retry a failed job up to N times, on another host where possible")
	fl.DurationVar(&f.timeout, "timeout", 0, "per-job time limit; the job's remote processes are killed")
	fl.BoolVar(&f.keepRemote, "keep-remote", false, "keep the remote run directory")
	fl.DurationVar(&f.progressEvery, "progress-interval", 5*time.Second, "when not on a terminal, print a progress line this often")
	fl.StringVar(&f.ui, "ui", "", "serve a live web page of the run at `ADDR` (127.0.0.1:0 when given alone; every request needs the token in the printed URL)")
	fl.Lookup("ui").NoOptDefVal = "127.0.0.1:0"
	fl.BoolVar(&f.uiControl, "ui-control", false, "let the --ui page stop the run (as Ctrl-C)")
	fl.StringVar(&f.resume, "resume", "", "continue the run recorded in RUN_DIR: run only jobs without a recorded result")
	fl.BoolVar(&f.resumeFailed, "resume-failed", false, "with --resume: also re-run jobs recorded as failed")
	fl.StringVar(&f.halt, "halt", "never", "stop early: soon,fail=N (start no new jobs after N failed) or now,fail=N (also kill running ones)")
	fl.BoolVar(&f.speculate, "speculate", false, "when slots are idle and no job waits, run stragglers again on another host: the first result wins, the other is killed")
	fl.DurationVar(&f.speculateAfter, "speculate-after", time.Second, "with --speculate: a straggler has run at least this long and twice the median job time")
	fl.StringVar(&f.setup, "setup", "", "shell command run once on each host, in the run directory, before its first job (after the program and --file are in place); a host whose setup fails takes no jobs")
	fl.StringVar(&f.teardown, "teardown", "", "shell command run once on each host after its last job, however the run ends (best effort, bounded by --teardown-timeout)")
	fl.DurationVar(&f.teardownTimeout, "teardown-timeout", time.Minute, "time limit of --teardown on each host")
	fl.BoolVar(&f.transfer, "transfer", false, "upload each job's input file ({}) into its own directory on its host before it starts (cached by content); {} is then its name there")
	fl.StringArrayVar(&f.returns, "return", nil, "fetch this file, written by the job in its directory, once it succeeds (placeholders expand: '{/.}.out'; repeatable)")
	fl.StringVar(&f.returnDir, "return-dir", "", "where returned files go (default <logs>/<run-id>/out/<job>/)")
	fl.BoolVar(&f.cleanup, "cleanup", false, "remove the job's transferred and returned files from its host once it has ended")
	fl.StringVar(&f.colsep, "colsep", "", "split each input line into columns {1} {2}... where this regular expression matches (GNU parallel's --colsep)")
	fl.StringVar(&f.launch, "launch", distributor.LaunchAuto, "how jobs reach each host: auto (an agent where one can run, else sessions, saying why), agent (one dsub agent per host, over one session; a host where none can run is left out) or session (one SSH session per job)")
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
