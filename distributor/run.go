package distributor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/remote"
)

// RunOptions configure a run. What runs is the Binary (uploaded), a Go
// package to Build per remote platform, or, with neither, each job's Shell
// command line.
type RunOptions struct {
	Binary     string        // local executable to ship; jobs' Args follow it
	Build      string        // Go package built with CGO_ENABLED=0 per remote GOOS/GOARCH
	Files      []string      // extra files shipped into the remote run directory
	Retries    int           // command failures a job may have and still be retried
	Timeout    time.Duration // per job; its remote process group is killed when it passes
	KeepRemote bool          // keep the remote run directories
	LogsDir    string        // local records; default "dsub-runs"
	Reducer    Reducer       // folds results; nil: none
	// OnResult receives each job's final outcome (a result, or a failure
	// for good), in completion order, from a single goroutine.
	OnResult func(Result)
	// Warn receives notices (retries, hosts lost, binary warnings).
	Warn func(string)
	// Record is stored in run.json as "command" (e.g. the CLI arguments).
	Record any
	// QuarantineAfter quarantines a host after that many consecutive
	// failed jobs (0: 5).
	QuarantineAfter int
	// NoHostTimeout ends the run when jobs wait and no host has been
	// usable for this long (0: 60s).
	NoHostTimeout time.Duration
	// ResumeDir continues the run recorded there: jobs with a recorded
	// result are not run again (their results are reduced as recorded);
	// the submitted jobs must be the same as the recorded run's, checked by
	// each job's identity (binary hash + arguments).
	ResumeDir string
	// ResumeFailed also re-runs jobs recorded as failed.
	ResumeFailed bool
	// HaltAfter stops the run once this many jobs have failed for good
	// (0: never), like GNU parallel's --halt: no new job starts; with
	// HaltNow the running ones are killed too, else they may finish.
	HaltAfter int
	HaltNow   bool
	// Speculate runs backups of stragglers: when no job is waiting and a
	// slot is idle, a job that has run longer than SpeculateAfter and
	// twice the median run time of the jobs done so far is started again
	// on another host. The first result wins; the other execution's
	// remote processes are killed and its result discarded.
	Speculate      bool
	SpeculateAfter time.Duration
}

// Result is a job's final outcome.
type Result struct {
	Job        int
	Resumed    bool // recorded by an earlier run of a resumed run, not run again
	Host       string
	Attempt    int
	Value      json.RawMessage // the result line as JSON (string when not JSON); nil on failure
	Err        error           // why the job failed for good
	Exit       int
	Duration   time.Duration
	Stdout     string // log paths
	Stderr     string
	StderrTail string
}

// Errors that stop a run early with its journal intact, so that it can be
// resumed (Wait's error wraps one of them):
var (
	// ErrHalted: the run stopped on failures (HaltAfter).
	ErrHalted = errors.New("run halted")
	// ErrNoHosts: jobs were waiting and no host could run them.
	ErrNoHosts = errors.New("no usable host remains")
	// ErrRecords: the run's local records (a job's log, the journal)
	// could not be written, for example because the disk under LogsDir is
	// full. No job starts after it.
	ErrRecords = errors.New("cannot write the run's records")
)

// Run is a run in progress. Submit jobs, Close, then Wait.
type Run struct {
	c     *Cluster
	opts  RunOptions
	id    string
	dir   string
	start time.Time

	submit    chan JobSpec
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
	loopDone  chan struct{} // closed when the dispatcher stops taking events
	allReady  chan struct{} // closed when every host is prepared or failed
	prepWG    sync.WaitGroup
	ready     chan *runHost
	lost      chan string
	prepFail  chan error
	prepDefer chan *prepError // a host unreachable at the start, tried again
	finished  chan completion

	journaled     map[int]JournalRecord // a resumed run's recorded jobs; read-only after Start
	needResult    bool                  // the reducer uses result lines (NeedsResult); set by Start
	art           artifact              // the shipped binary (Binary mode)
	checkPlatform func(h *runHost)      // warns when the binary does not suit a host
	builder       *builder
	tmpDir        string

	mu        sync.Mutex
	snap      Snapshot     // guarded by mu
	hostsRec  []hostRecord // guarded by mu
	stats     *Stats       // set when done
	result    string       // reduced result
	err       error
	submitted atomic.Int64
}

// Snapshot is the live state of a run, for progress displays.
type Snapshot struct {
	Jobs      int  // submitted so far
	AllKnown  bool // no more jobs will be submitted
	Succeeded int
	Failed    int
	Running   int
	Elapsed   time.Duration
	Hosts     []HostSnapshot
}

// HostSnapshot is one host's live state.
type HostSnapshot struct {
	Name     string
	State    string // preparing, up, down, quarantined, failed
	Running  int
	Done     int
	Failed   int
	Progress float64 // mean reported progress of its running jobs, 0..1
}

type hostRecord struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
	CPUs    int    `json:"cpus,omitempty"`
	Slots   int    `json:"slots,omitempty"`
	Binary  string `json:"binary_sha256,omitempty"`
	Sent    int64  `json:"bytes_uploaded"`
	Error   string `json:"error,omitempty"`
}

// runHost is a prepared host.
type runHost struct {
	m       *Member
	slots   int
	binPath string // absolute remote path of the binary ("" in shell mode)
	binSHA  string
	runDir  string // absolute remote run directory
	rec     hostRecord
}

// liveFile, in a run directory on a host, says the run is alive: the
// master rewrites it every liveEvery, with the path of the program the run
// uses, and Clean keeps run directories (and programs) whose file is
// fresh, so a run between two jobs on a host, with no process there, is
// not cleaned away. See cleanScript.
const (
	liveFile  = ".dsub-live"
	liveEvery = time.Minute
	liveFresh = 3 // minutes: Clean's window, three missed beats
)

// beat writes the run's liveFile on the host, if the run directory still
// exists.
func (h *runHost) beat(ctx context.Context) error {
	// Also marks the workdir as dsub's (WorkdirSentinel): dsub clean
	// works only in a workdir so marked.
	return h.m.Host.Run(ctx, &remote.Cmd{Shell: "printf '%s\\n' " + remote.Quote(h.binPath) + " > " + liveFile +
		" && : >> ../../" + WorkdirSentinel, Dir: h.runDir, NoProcessGroup: true})
}

type completion struct {
	e       queue.Exec
	outcome queue.Outcome
	value   json.RawMessage
	err     error
	exit    int
	signal  string
	start   time.Time
	dur     time.Duration
	recv    int64
	tail    string
	out, er string // temporary log paths
	command string
	local   error  // the job's log could not be written (outcome Canceled)
	why     string // for the joblog: why a job that exited 0 failed
	pgid    int    // Lost: the remote process group, which may run on
}

// Start begins a run on the cluster: hosts are prepared (probed, binary
// and files shipped) in the background, each taking jobs as soon as it is
// ready.
func (c *Cluster) Start(ctx context.Context, opts RunOptions) (*Run, error) {
	if opts.Binary != "" && opts.Build != "" {
		return nil, errors.New("choose one of Binary and Build")
	}
	if opts.LogsDir == "" {
		opts.LogsDir = "dsub-runs"
	}
	if opts.QuarantineAfter == 0 {
		opts.QuarantineAfter = 5
	}
	if opts.NoHostTimeout == 0 {
		opts.NoHostTimeout = 60 * time.Second
	}
	if opts.Warn == nil {
		opts.Warn = func(string) {}
	}
	now := time.Now()
	r := &Run{
		c: c, opts: opts, id: newRunID(now), start: now, journaled: map[int]JournalRecord{},
		submit: make(chan JobSpec), closed: make(chan struct{}), done: make(chan struct{}),
		loopDone: make(chan struct{}), allReady: make(chan struct{}),
		ready: make(chan *runHost), lost: make(chan string), prepFail: make(chan error), prepDefer: make(chan *prepError), finished: make(chan completion, 64),
	}
	r.dir = filepath.Join(opts.LogsDir, r.id)
	r.needResult = NeedsResult(opts.Reducer)
	var prevBinary string
	if opts.ResumeDir != "" {
		r.dir = opts.ResumeDir
		// The id comes from the run's own record, never from the path
		// given: it names the remote directory the run removes.
		var prev struct {
			ID     string `json:"id"`
			Binary struct {
				SHA256 string `json:"sha256"`
			} `json:"binary"`
		}
		b, err := os.ReadFile(filepath.Join(r.dir, "run.json"))
		if err == nil {
			err = json.Unmarshal(b, &prev)
		}
		if err != nil {
			return nil, fmt.Errorf("resume %s: run.json: %w", r.dir, err)
		}
		if !ValidRunID(prev.ID) {
			return nil, fmt.Errorf("resume %s: run.json holds no valid run id (%q): not a dsub run directory", r.dir, prev.ID)
		}
		r.id, prevBinary = prev.ID, prev.Binary.SHA256
		recs, err := readJournal(filepath.Join(r.dir, "results.jsonl"))
		if err != nil {
			return nil, fmt.Errorf("resume %s: %w", r.dir, err)
		}
		r.journaled = recs
	}
	if err := os.MkdirAll(filepath.Join(r.dir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	for _, f := range opts.Files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("--file: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("--file %s: not a regular file", f)
		}
	}
	switch {
	case opts.Binary != "":
		art, err := hashFile(opts.Binary)
		if err != nil {
			return nil, fmt.Errorf("--binary: %w", err)
		}
		r.art = art
		if opts.ResumeDir != "" && prevBinary != art.SHA256 {
			return nil, fmt.Errorf("resume %s: refusing: the binary changed since the run (%s had sha256 %s, now %s); start a new run instead",
				r.dir, opts.Binary, short(prevBinary), short(art.SHA256))
		}
		bi, err := inspectBinary(opts.Binary)
		if err != nil {
			return nil, fmt.Errorf("--binary: %w", err)
		}
		if bi.Dynamic {
			opts.Warn(fmt.Sprintf("%s is dynamically linked: it runs only where its libraries exist on the host (build Go programs with CGO_ENABLED=0)", opts.Binary))
		}
		r.art.Path = opts.Binary
		r.checkPlatform = func(h *runHost) {
			if bi.GOOS != "" && h.rec.OS != "" && (bi.GOOS != h.rec.OS || bi.GOARCH != "" && bi.GOARCH != h.rec.Arch) {
				opts.Warn(fmt.Sprintf("%s is built for %s/%s but host %s is %s/%s", opts.Binary, bi.GOOS, bi.GOARCH, h.m.Name(), h.rec.OS, h.rec.Arch))
			}
		}
	case opts.Build != "":
		dir, err := os.MkdirTemp("", "dsub-build-")
		if err != nil {
			return nil, err
		}
		r.tmpDir = dir
		r.builder = &builder{pkg: opts.Build, dir: dir, builds: map[string]*build{}}
	}
	if err := r.writeRunJSON(nil); err != nil {
		return nil, err
	}
	for _, m := range c.members {
		r.hostsRec = append(r.hostsRec, hostRecord{Name: m.Name(), Address: m.Inv.Address})
	}
	go r.dispatch(ctx)
	return r, nil
}

// Ready waits until every host has been prepared, has failed to be, or was
// found unreachable (it is then retried in the background and joins when
// it answers), for callers that want the cluster in place before
// submitting.
func (r *Run) Ready(ctx context.Context) error {
	select {
	case <-r.allReady:
		return nil
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Verify checks, for a resumed run, that job number job is the job the
// run recorded: same program and arguments. Callers with re-readable input
// verify every job before submitting any, so that a changed input is
// refused before anything runs.
func (r *Run) Verify(job int, spec JobSpec) error {
	rec, ok := r.journaled[job]
	if !ok {
		return nil
	}
	if id := jobIdentity(r.identityHash(), spec); id != rec.ID {
		return fmt.Errorf("resume %s: refusing: job %d is not the job recorded (its arguments or program changed: was %s, now %s); start a new run instead",
			r.dir, job, rec.ID, id)
	}
	return nil
}

// Dir is the local run directory holding logs and records.
func (r *Run) Dir() string { return r.dir }

// ID is the run's identifier.
func (r *Run) ID() string { return r.id }

// Submit queues a job. It blocks while the queue is full, so a producer
// reading a huge input never holds it all in memory.
func (r *Run) Submit(ctx context.Context, j JobSpec) error {
	select {
	case r.submit <- j:
		r.submitted.Add(1)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-r.done:
		if r.err != nil {
			return r.err
		}
		return errors.New("run has ended")
	}
}

// Close declares that no more jobs will be submitted.
func (r *Run) Close() { r.closeOnce.Do(func() { close(r.closed) }) }

// Wait waits for the run to end and returns its statistics, the reduced
// result (if a Reducer was set) and the run's error, if any.
func (r *Run) Wait() (*Stats, string, error) {
	<-r.done
	return r.stats, r.result, r.err
}

// Snapshot returns the live state of the run.
func (r *Run) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.snap
	s.Hosts = append([]HostSnapshot(nil), r.snap.Hosts...)
	s.Elapsed = time.Since(r.start)
	return s
}

// jobEntry is an unfinished job, as the dispatcher keeps it.
type jobEntry struct {
	spec    JobSpec
	id      string // identity: binary hash + command
	command string // for the joblog
}

// execState is a running execution.
type execState struct {
	progress atomic.Uint64
	host     string
	job      int
	start    time.Time
	backup   bool               // a speculative execution
	cancel   context.CancelFunc // kills it (its remote process group)
}

// hostTally is what the dispatcher counts per host.
type hostTally struct {
	state       string
	done, fails int
	lost        int
	jobTime     time.Duration
	slots       int
}

func (r *Run) dispatch(ctx context.Context) {
	defer close(r.done)
	runCtx, cancelJobs := context.WithCancel(ctx)
	defer cancelJobs()
	// Preparations (uploads) have their own context: when the last job
	// ends while a host is still receiving the binary, the upload is let
	// finish (for a while) so that the cache is warm for the next run.
	prepCtx, cancelPrep := context.WithCancel(ctx)
	defer cancelPrep()

	q := queue.New(queue.Options{Retries: r.opts.Retries, QuarantineAfter: r.opts.QuarantineAfter})
	jrn, err := openJournal(filepath.Join(r.dir, "results.jsonl"))
	if err != nil {
		r.fail(fmt.Errorf("open journal: %w", err))
		return
	}
	jl, err := openJoblog(filepath.Join(r.dir, "joblog.tsv"))
	if err != nil {
		r.fail(fmt.Errorf("open joblog: %w", err))
		return
	}

	hosts := map[string]*runHost{}
	tally := map[string]*hostTally{}
	var order []string
	for _, m := range r.c.members {
		tally[m.Name()] = &hostTally{state: "preparing"}
		order = append(order, m.Name())
	}
	jobs := map[int]*jobEntry{} // unfinished jobs
	failedJobs := 0
	preparing := len(r.c.members) // hosts whose first preparation is under way
	deferred := map[string]bool{} // hosts unreachable at the start, being retried
	for _, m := range r.c.members {
		// Every host is known to the queue from the start (so jobs may be
		// pinned to it) but takes jobs only once prepared.
		_ = q.AddHost(m.Name(), 1)
		_ = q.SetHostState(m.Name(), queue.Down)
		r.prepWG.Add(1)
		go func() {
			defer r.prepWG.Done()
			r.prepare(prepCtx, m)
		}()
	}
	readyClosed := false
	markReady := func() {
		if preparing == 0 && !readyClosed {
			readyClosed = true
			close(r.allReady)
		}
	}
	failPinned := func(host, why string) {
		for _, j := range q.FailPinned(host) {
			failedJobs++
			delete(jobs, j.ID)
			if r.opts.OnResult != nil {
				r.opts.OnResult(Result{Job: j.ID, Host: host, Exit: -1, Err: fmt.Errorf("pinned to %s, which %s", host, why)})
			}
		}
	}

	running := map[int]*execState{} // by Exec.Seq
	launch := func(e queue.Exec, backup bool) {
		je := e.Job.Payload.(*jobEntry)
		ectx, cancel := context.WithCancel(runCtx)
		es := &execState{host: e.Host, job: e.Job.ID, start: time.Now(), backup: backup, cancel: cancel}
		running[e.Seq] = es
		h := hosts[e.Host] // read here: the map belongs to this goroutine
		go func() { r.finished <- r.execute(ectx, e, h, je, es) }()
	}
	sp := &speculator{on: r.opts.Speculate, after: r.opts.SpeculateAfter}
	nextID := 0
	closed := false
	var reduceErrs []string
	noHostSince := time.Time{}
	halted := false
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	// Group commit: results wait at most commitDelay for the fsync that
	// makes them count, so one fsync covers many completions.
	const commitDelay = 25 * time.Millisecond
	commitTimer := time.NewTimer(time.Hour)
	commitTimer.Stop()
	commitArmed := false
	interrupted := false // stopping: no new job starts
	canceled := false    // ctx is done: running jobs were killed

	totalSlots := func() int {
		n := 0
		for name, h := range hosts {
			if q.HostState(name) == queue.Up {
				n += h.slots
			}
		}
		return n
	}

	resumed := 0   // jobs taken from a resumed run's journal
	resumedOK := 0 // of which succeeded
	publish := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.snap.Jobs, r.snap.AllKnown = nextID, closed
		// Jobs a resumed run took from its journal count as done.
		r.snap.Succeeded, r.snap.Failed, r.snap.Running = q.Succeeded()+resumedOK, failedJobs, q.Running()
		prog := map[string][]float64{}
		for _, es := range running {
			prog[es.host] = append(prog[es.host], bitsFloat(es.progress.Load()))
		}
		r.snap.Hosts = r.snap.Hosts[:0]
		for _, name := range order {
			t := tally[name]
			hs := HostSnapshot{Name: name, State: t.state, Done: t.done, Failed: t.fails, Running: len(prog[name])}
			if ps := prog[name]; len(ps) > 0 {
				sum := 0.0
				for _, p := range ps {
					sum += p
				}
				hs.Progress = sum / float64(len(ps))
			}
			r.snap.Hosts = append(r.snap.Hosts, hs)
		}
	}

	var emit []Result // recorded results awaiting the journal commit
	stopRecords := func(err error) {
		if !interrupted {
			r.opts.Warn(fmt.Sprintf("%v; no new job starts", err))
		}
		if r.err == nil {
			r.err = err
		}
		interrupted = true
	}
	// Executions lost with their host may still run there. When the host
	// re-joins with none of this run's executions on it, everything in
	// the run directory there is killed before it takes jobs again
	// (sweeping); if some still run (another connection survived), only
	// the process groups that were reported. Hosts with lost executions
	// are swept once more at the end of the run.
	orphans := map[string][]int{} // host → reported process groups (the key alone: lost, none reported)
	sweeping := map[string]bool{} // hosts kept down until their sweep is done
	var orphanWG sync.WaitGroup
	var liveWG sync.WaitGroup // keepAlive, one per prepared host
	reap := func(h *runHost, pgids []int, sweep bool, within time.Duration, then func()) {
		orphanWG.Add(1)
		go func() {
			defer orphanWG.Done()
			// Not cancelled with the run: killing leftovers is part of
			// stopping cleanly. Bounded instead.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), within)
			r.reapOrphans(rctx, h, pgids, sweep)
			cancel()
			if then != nil {
				then()
			}
		}()
	}
	handle := func(c completion) {
		if c.local != nil {
			stopRecords(c.local)
		}
		if c.outcome == queue.Lost {
			orphans[c.e.Host] = append(orphans[c.e.Host], c.pgid)
		}
		es := running[c.e.Seq]
		es.cancel()
		delete(running, c.e.Seq)
		t := tally[c.e.Host]
		disp := q.Finish(c.e, c.outcome)
		outcome := disp.String()
		switch {
		case c.outcome == queue.Lost && disp == queue.Requeued:
			outcome = "lost"
		case c.outcome == queue.Canceled && disp == queue.Discarded:
			outcome = "superseded" // killed: another execution won
		}
		if c.why != "" && c.outcome == queue.Failed {
			outcome += ": " + c.why
		}
		_ = jl.Write(JoblogRow{Job: c.e.Job.ID, Host: c.e.Host, Start: c.start, Runtime: c.dur, Receive: c.recv,
			Exit: c.exit, Signal: c.signal, Command: c.command, Outcome: outcome})
		je := jobs[c.e.Job.ID]
		finalOut, finalErr := jobLogPaths(r.dir, c.e.Job.ID)
		keepAs := func(out, er string) {
			if c.out != out {
				_ = os.Rename(c.out, out)
				_ = os.Rename(c.er, er)
			}
		}
		tryOut := strings.TrimSuffix(finalOut, ".out") + fmt.Sprintf(".try%d.out", c.e.Attempt)
		tryErr := strings.TrimSuffix(finalErr, ".err") + fmt.Sprintf(".try%d.err", c.e.Attempt)
		switch c.outcome {
		case queue.Failed:
			t.fails++
		case queue.Lost:
			t.lost++
		}
		switch disp {
		case queue.Recorded:
			keepAs(finalOut, finalErr)
			t.done++
			t.jobTime += c.dur
			sp.done(c.dur, es.backup)
			for _, o := range running {
				if o.job == c.e.Job.ID {
					o.cancel() // the first result wins: kill the other execution
				}
			}
			jrn.Append(&JournalRecord{Job: c.e.Job.ID, ID: je.id, Host: c.e.Host, Attempt: c.e.Attempt, Result: c.value, Duration: c.dur.Seconds()})
			emit = append(emit, Result{Job: c.e.Job.ID, Host: c.e.Host, Attempt: c.e.Attempt, Value: c.value,
				Duration: c.dur, Stdout: finalOut, Stderr: finalErr, StderrTail: c.tail})
			delete(jobs, c.e.Job.ID)
		case queue.GaveUp:
			keepAs(finalOut, finalErr)
			failedJobs++
			jrn.Append(&JournalRecord{Job: c.e.Job.ID, ID: je.id, Host: c.e.Host, Attempt: c.e.Attempt, Duration: c.dur.Seconds(),
				Failed: true, Error: fmt.Sprint(c.err)})
			res := Result{Job: c.e.Job.ID, Host: c.e.Host, Attempt: c.e.Attempt, Err: c.err, Exit: c.exit,
				Duration: c.dur, Stdout: finalOut, Stderr: finalErr, StderrTail: c.tail}
			if r.opts.OnResult != nil {
				r.opts.OnResult(res)
			}
			delete(jobs, c.e.Job.ID)
		case queue.Requeued:
			keepAs(tryOut, tryErr)
			if c.outcome == queue.Failed {
				r.opts.Warn(fmt.Sprintf("job %d failed on %s (%v); retrying (attempt %d of %d)", c.e.Job.ID, c.e.Host, c.err, c.e.Attempt+1, r.opts.Retries+1))
			}
		case queue.Discarded:
			if c.out != finalOut { // a first attempt's final-path log now holds the winner's
				keepAs(tryOut, tryErr)
			}
		case queue.Dropped:
			keepAs(tryOut, tryErr)
		}
		if c.outcome == queue.Lost && q.HostState(c.e.Host) == queue.Up {
			// The host (or its connection) failed: take it out and try
			// to get it back in the background.
			_ = q.SetHostState(c.e.Host, queue.Down)
			t.state = "down"
			r.opts.Warn(fmt.Sprintf("host %s lost (%v); its jobs go to other hosts", c.e.Host, c.err))
			go r.reconnect(runCtx, hosts[c.e.Host])
		}
		if q.HostState(c.e.Host) == queue.Quarantined && t.state != "quarantined" {
			t.state = "quarantined"
			failPinned(c.e.Host, "was quarantined")
			r.opts.Warn(fmt.Sprintf("host %s quarantined after %d consecutive failed jobs", c.e.Host, r.opts.QuarantineAfter))
		}
	}
	commit := func() {
		if len(emit) == 0 {
			return
		}
		// The joblog rows of these jobs reach the file before the journal
		// makes them count, so a crashed master loses neither.
		_ = jl.Flush()
		if err := jrn.Commit(); err != nil {
			stopRecords(fmt.Errorf("%w: journal %s: %v", ErrRecords, filepath.Join(r.dir, "results.jsonl"), err))
		}
		for _, res := range emit {
			if r.opts.Reducer != nil {
				if err := r.opts.Reducer.Add(res.Job, res.Value); err != nil {
					reduceErrs = append(reduceErrs, fmt.Sprintf("job %d on %s: %v (log: %s)", res.Job, res.Host, err, res.Stdout))
				}
			}
			if r.opts.OnResult != nil {
				r.opts.OnResult(res)
			}
		}
		emit = emit[:0]
	}

	for {
		// Pull new jobs only while the queue is short: backpressure on
		// Submit keeps memory flat for huge inputs.
		var in chan JobSpec
		var closedCh chan struct{}
		if !closed && !interrupted && q.Pending() < max(2*totalSlots(), 64) {
			in, closedCh = r.submit, r.closed
		}
		var ctxDone <-chan struct{}
		if !canceled {
			ctxDone = ctx.Done() // also while stopping softly: kill then
		}
		select {
		case spec := <-in:
			nextID++
			je := &jobEntry{spec: spec, command: displayCommand(r, spec)}
			je.id = jobIdentity(r.identityHash(), spec)
			if rec, ok := r.journaled[nextID]; ok {
				if rec.ID != je.id {
					r.err = fmt.Errorf("resume %s: refusing: job %d is not the job recorded (its arguments or program changed: was %s, now %s); start a new run instead",
						r.dir, nextID, rec.ID, je.id)
					interrupted = true
					cancelJobs()
					continue
				}
				if !rec.Failed || !r.opts.ResumeFailed {
					resumed++
					res := Result{Job: nextID, Resumed: true, Host: rec.Host, Attempt: rec.Attempt, Value: rec.Result,
						Duration: time.Duration(rec.Duration * float64(time.Second))}
					res.Stdout, res.Stderr = jobLogPaths(r.dir, nextID)
					if rec.Failed {
						failedJobs++
						res.Err = errors.New(rec.Error)
						if r.opts.OnResult != nil {
							r.opts.OnResult(res)
						}
					} else {
						resumedOK++
						emit = append(emit, res)
					}
					continue
				}
			}
			jobs[nextID] = je
			if err := q.Add(&queue.Job{ID: nextID, Pin: spec.Pin, Payload: je}); err != nil {
				failedJobs++
				delete(jobs, nextID)
				if r.opts.OnResult != nil {
					r.opts.OnResult(Result{Job: nextID, Err: err, Exit: -1})
				}
			}
		case <-closedCh:
			closed = true
			q.Close()
		case h := <-r.ready:
			if _, known := hosts[h.m.Name()]; !known {
				if deferred[h.m.Name()] {
					r.opts.Warn(fmt.Sprintf("host %s joined the run", h.m.Name()))
				} else {
					preparing--
					markReady()
				}
				hosts[h.m.Name()] = h
				liveWG.Add(1)
				go func() { defer liveWG.Done(); r.keepAlive(ctx, h) }()
				_ = q.SetSlots(h.m.Name(), h.slots)
				_ = q.SetHostState(h.m.Name(), queue.Up)
				r.setHostRecord(h.m.Name(), func(rec *hostRecord) { *rec = h.rec })
			} else if pg, lost := orphans[h.m.Name()]; lost && q.RunningOn(h.m.Name()) == 0 {
				// Back, with nothing of ours meant to run there: sweep the
				// run directory's processes, then take jobs (the sweep
				// sends the host here again).
				delete(orphans, h.m.Name())
				sweeping[h.m.Name()] = true
				r.opts.Warn(fmt.Sprintf("host %s is back", h.m.Name()))
				reap(h, pg, true, 30*time.Second, func() { r.offer(h) })
			} else {
				_ = q.SetHostState(h.m.Name(), queue.Up)
				if sweeping[h.m.Name()] {
					delete(sweeping, h.m.Name())
				} else {
					r.opts.Warn(fmt.Sprintf("host %s is back", h.m.Name()))
					if pg := orphans[h.m.Name()]; len(pg) > 0 {
						// Some executions still run there: kill only the
						// groups reported lost; the host stays in orphans
						// for the sweep at the end.
						orphans[h.m.Name()] = nil
						reap(h, pg, false, 30*time.Second, nil)
					}
				}
			}
			tally[h.m.Name()].state, tally[h.m.Name()].slots = q.HostState(h.m.Name()).String(), h.slots
		case pe := <-r.prepDefer:
			// Warn first: a caller of Ready sees the warning once it returns.
			r.opts.Warn(pe.deferredString())
			deferred[pe.host] = true
			preparing--
			markReady()
			tally[pe.host].state = "down"
			r.setHostRecord(pe.host, func(rec *hostRecord) { rec.Error = pe.Error() })
		case err := <-r.prepFail:
			r.opts.Warn(err.Error())
			var pe *prepError
			if !errors.As(err, &pe) || !deferred[pe.host] {
				preparing--
				markReady()
			}
			if pe != nil {
				tally[pe.host].state = "failed"
				_ = q.SetHostState(pe.host, queue.Quarantined)
				failPinned(pe.host, "could not be prepared")
				r.setHostRecord(pe.host, func(rec *hostRecord) { rec.Error = pe.Error() })
			}
		case c := <-r.finished:
			handle(c)
		drain:
			for {
				select {
				case c := <-r.finished:
					handle(c)
				default:
					break drain
				}
			}
			if len(emit) >= 256 {
				commit()
			}
		case <-commitTimer.C:
			commitArmed = false
			commit()
		case <-tick.C:
			_ = jl.Flush()
			publish() // the snapshot is read by progress displays, not per event
			if r.opts.Speculate && !interrupted {
				for _, b := range sp.pick(q, running, time.Now()) {
					launch(b.e, true)
					r.opts.Warn(b.String())
				}
			}
		case <-ctxDone:
			interrupted, canceled = true, true
			cancelJobs()
		}

		if len(emit) > 0 && !commitArmed {
			commitTimer.Reset(commitDelay)
			commitArmed = true
		}
		if r.opts.HaltAfter > 0 && failedJobs >= r.opts.HaltAfter && !halted {
			halted, interrupted = true, true // no new jobs, no more input
			mode := "soon"
			if r.opts.HaltNow {
				mode = "now"
				cancelJobs()
			}
			r.opts.Warn(fmt.Sprintf("halting (%s) after %d failed jobs", mode, failedJobs))
		}
		if !interrupted {
			for _, e := range q.Assign() {
				launch(e, false)
			}
		}

		if interrupted && q.Running() == 0 {
			break
		}
		if q.Done() && q.Running() == 0 {
			// Hosts still preparing are not needed. Losers of speculative
			// runs, killed when the winner was recorded, are waited for,
			// so that the joblog counts every execution.
			break
		}
		if q.Pending() == 0 && q.Running() == 0 && len(emit) > 0 && closed {
			commit()
		}
		if preparing == 0 && len(hosts) == 0 {
			r.err = errors.New("no host could be prepared for the run; see the errors above")
			break
		}
		if q.Pending() == 0 && q.Running() == 0 && closed && len(jobs) == 0 {
			break
		}
		// After Assign, waiting jobs with nothing running means no Up host
		// can take any of them: every host is down or quarantined, or the
		// jobs left are pinned to such hosts. Wait for one to come back,
		// for NoHostTimeout at most.
		if q.Pending() > 0 && q.Running() == 0 && preparing == 0 {
			if noHostSince.IsZero() {
				noHostSince = time.Now()
			}
			if q.Stuck() || time.Since(noHostSince) > r.opts.NoHostTimeout {
				var down []string
				for _, name := range order {
					if q.HostState(name) == queue.Down {
						down = append(down, name)
					}
				}
				why := "no host is up"
				if q.Usable() {
					why = "the jobs left are pinned to hosts that are not up"
				}
				if len(down) > 0 {
					why += fmt.Sprintf("; waited %s for %s", r.opts.NoHostTimeout, strings.Join(down, ", "))
				}
				r.err = fmt.Errorf("%w (%d jobs unfinished: %s); the journal in %s keeps every recorded result", ErrNoHosts, q.Pending(), why, r.dir)
				break
			}
		} else {
			noHostSince = time.Time{}
		}
	}
	publish()
	// Hosts that never came back: one last try to kill what their lost
	// executions left running, alongside the waits below.
	// (The cleanup below then sweeps every run directory.)
	for name, pg := range orphans {
		if h := hosts[name]; h != nil {
			reap(h, pg, false, 10*time.Second, nil)
		}
	}
	cancelJobs()
	close(r.loopDone)
	commit()
	// Wait for preparations still running, so that none creates a run
	// directory after the cleanup: up to 30 s to finish (completing the
	// cache), then cancelled.
	prepDone := make(chan struct{})
	go func() { r.prepWG.Wait(); close(prepDone) }()
	select {
	case <-prepDone:
	case <-time.After(30 * time.Second):
		cancelPrep()
		<-prepDone
	}
	orphanWG.Wait()
	liveWG.Wait() // no beat may recreate a file after the cleanup below

	// Clean up the remote run directories, on every host that may have
	// one, with a deadline.
	{
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		var wg sync.WaitGroup
		for _, m := range r.c.members {
			if hosts[m.Name()] == nil && m.Host.Conns() == 0 {
				continue // never prepared, and no connection now: nothing to clean, or no way to
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				dir := r.remoteRunDir(cctx, m, hosts[m.Name()])
				// One session: kill what jobs left running in the run
				// directory (background children, which outlive a job's
				// exit), then, unless KeepRemote, rm -rf: faster than
				// walking the tree over SFTP.
				var sh []string
				if hosts[m.Name()] != nil {
					sh = append(sh, remote.KillMarkedScript(r.marker(dir)))
				}
				if !r.opts.KeepRemote {
					sh = append(sh, "rm -rf -- "+remote.QuotePath(dir))
				} else {
					// Kept for inspection, but no longer live: Clean may take it.
					sh = append(sh, "rm -f -- "+remote.QuotePath(path.Join(dir, liveFile)))
				}
				out := remote.NewCappedBuffer(4 << 10)
				err := m.Host.Run(cctx, &remote.Cmd{Shell: strings.Join(sh, "; "), NoProcessGroup: true, Stdout: out})
				if err != nil {
					r.opts.Warn(fmt.Sprintf("clean up %s on %s: %v", dir, m.Name(), err))
				}
				if n, _ := remote.KilledCount(out.String()); n > 0 {
					r.opts.Warn(fmt.Sprintf("host %s: killed %d process groups that jobs left running in %s", m.Name(), n, dir))
				}
			}()
		}
		wg.Wait()
		cancel()
	}
	_ = jl.Close()
	if err := jrn.Close(); err != nil && r.err == nil {
		r.err = err
	}
	if r.tmpDir != "" {
		os.RemoveAll(r.tmpDir)
	}

	st := &Stats{Jobs: nextID, Succeeded: q.Succeeded() + resumed - countFailed(r.journaled, nextID, r.opts.ResumeFailed), Failed: failedJobs,
		Resumed: resumed, Wall: time.Since(r.start).Seconds(), Backups: sp.started, BackupsWon: sp.won}
	if r.err == nil && !interrupted && r.opts.ResumeDir != "" {
		for job := range r.journaled {
			if job > nextID {
				r.err = fmt.Errorf("resume %s: the input now has %d jobs but the run recorded job %d: the input changed", r.dir, nextID, job)
				break
			}
		}
	}
	for _, name := range order {
		t := tally[name]
		if t.slots == 0 && t.done == 0 {
			continue // never took part
		}
		st.Hosts = append(st.Hosts, HostStats{Name: name, Jobs: t.done, JobTime: t.jobTime.Seconds(), Failed: t.fails, Lost: t.lost, Slots: t.slots, State: t.state})
	}
	r.stats = st
	if halted && r.err == nil {
		r.err = fmt.Errorf("%w: %d jobs failed (halt after %d)", ErrHalted, failedJobs, r.opts.HaltAfter)
	}
	if interrupted && r.err == nil {
		r.err = fmt.Errorf("run interrupted: %w", context.Cause(ctx))
	}
	if r.err == nil && r.opts.Reducer != nil && len(reduceErrs) == 0 {
		res, err := r.opts.Reducer.Result(context.WithoutCancel(ctx))
		if err != nil {
			r.err = err
		}
		r.result = res
	}
	if len(reduceErrs) > 0 && r.err == nil {
		r.err = fmt.Errorf("%d results could not be reduced:\n  %s", len(reduceErrs), strings.Join(reduceErrs, "\n  "))
	}
	_ = r.writeRunJSON(st)
}

// adminTimeout bounds each of a run's own sessions on a host (describe,
// sweeps), so that a host that hangs after logging in holds nothing.
const adminTimeout = 2 * time.Minute

// marker tells this run's processes on a host: the run directory dir as
// their working directory, or DSUB_RUN=<id> in their environment (every
// job has it; its children inherit it). Only exact matches count.
func (r *Run) marker(dir string) remote.Marker {
	return remote.Marker{Dir: dir, Env: "DSUB_RUN=" + r.id}
}

// remoteRunDir is the run directory on m: known if m was prepared, else
// derived from its workdir.
func (r *Run) remoteRunDir(ctx context.Context, m *Member, h *runHost) string {
	if h != nil {
		return h.runDir
	}
	return path.Join(m.Inv.Workdir, "runs", r.id) // "~/" is expanded remotely
}

// absWorkdir resolves a workdir against the login home.
func absWorkdir(wd, home string) string {
	switch {
	case wd == "~":
		return home
	case strings.HasPrefix(wd, "~/"):
		return path.Join(home, wd[2:])
	case !path.IsAbs(wd):
		return path.Join(home, wd)
	}
	return wd
}

// countFailed counts the recorded failures among the first n jobs that a
// resumed run took over as they were.
func countFailed(recs map[int]JournalRecord, n int, rerun bool) int {
	if rerun {
		return 0
	}
	c := 0
	for job, r := range recs {
		if r.Failed && job <= n {
			c++
		}
	}
	return c
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func (r *Run) fail(err error) {
	r.err = err
	r.stats = &Stats{}
}

// identityHash is what a job's identity is built from: the shipped
// binary's hash, the Go package built, or "shell".
func (r *Run) identityHash() string {
	switch {
	case r.opts.Binary != "":
		return r.art.SHA256
	case r.opts.Build != "":
		return "build:" + r.opts.Build
	}
	return "shell"
}

// jobIdentity names a job by what it runs, not by its sequence number.
func jobIdentity(base string, spec JobSpec) string {
	h := sha256.New()
	h.Write([]byte(base))
	for _, a := range spec.Args {
		h.Write([]byte{0})
		h.Write([]byte(a))
	}
	h.Write([]byte{1})
	h.Write([]byte(spec.Shell))
	return hex.EncodeToString(h.Sum(nil))[:24]
}

func displayCommand(r *Run, spec JobSpec) string {
	if spec.Shell != "" {
		return spec.Shell
	}
	name := "binary"
	switch {
	case r.opts.Binary != "":
		name = filepath.Base(r.opts.Binary)
	case r.opts.Build != "":
		name = path.Base(r.opts.Build)
	}
	return remote.QuoteArgv(append([]string{name}, spec.Args...))
}

// prepError is a host that could not be prepared.
type prepError struct {
	host string
	err  error
}

func (e *prepError) Error() string {
	return fmt.Sprintf("host %s left out of the run: %v", e.host, e.err)
}
func (e *prepError) Unwrap() error { return e.err }

// prepare connects to a host, learns its platform and CPUs, ships the
// binary (content-addressed: <workdir>/bin/<sha256>) and the --file
// inputs (into <workdir>/runs/<run-id>/), then offers it to the dispatcher.
// A host that cannot be reached (a transport error or timeout) is reported
// as deferred and tried again with backoff for as long as the run lasts,
// so that a host down or cut off at the start joins when it comes back.
// Any other error (host key, authentication, shipping) leaves it out.
func (r *Run) prepare(ctx context.Context, m *Member) {
	backoff := time.Second
	deferred := false
	for {
		// The first try may finish filling the cache after the run ends; a
		// retry is abandoned then.
		var actx context.Context
		var cancel context.CancelFunc
		if deferred {
			actx, cancel = r.untilEnd(ctx)
		} else {
			actx, cancel = context.WithCancel(ctx)
		}
		h, err := r.prepareHost(actx, m)
		cancel()
		if err == nil {
			r.offer(h)
			return
		}
		if k := remote.KindOf(err); ctx.Err() != nil || (k != remote.KindTransport && k != remote.KindTimeout) {
			select {
			case r.prepFail <- &prepError{host: m.Name(), err: err}:
			case <-r.loopDone:
			}
			return
		}
		if !deferred {
			deferred = true
			select {
			case r.prepDefer <- &prepError{host: m.Name(), err: err}:
			case <-r.loopDone:
				return
			}
		}
		select {
		case <-time.After(backoff):
		case <-r.loopDone:
			return
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func (e *prepError) deferredString() string {
	return fmt.Sprintf("host %s unreachable (%v); it joins the run if it comes back", e.host, e.err)
}

func (r *Run) prepareHost(ctx context.Context, m *Member) (*runHost, error) {
	// One session learns the platform and home and creates the run
	// directory; SFTP starts only if there is something to ship.
	// Bounded: a host that logs us in and then hangs must not hold its
	// preparation forever (it is retried like an unreachable one).
	dctx, cancel := context.WithTimeout(ctx, adminTimeout)
	info, err := remote.Describe(dctx, m.Host, m.Inv.Workdir, path.Join(m.Inv.Workdir, "runs", r.id))
	cancel()
	if err != nil {
		return nil, err
	}
	wd := absWorkdir(m.Inv.Workdir, info.Home)
	h := &runHost{m: m, slots: m.Inv.Slots, runDir: path.Join(wd, "runs", r.id)}
	if r.opts.ResumeDir != "" {
		// The crashed or interrupted master's jobs may still run in the
		// run directory, which a resumed run shares: their results would
		// go nowhere, so kill them before new ones start.
		kctx, cancel := context.WithTimeout(ctx, adminTimeout)
		n, err := m.Host.KillMarked(kctx, r.marker(h.runDir))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("kill the previous master's jobs: %w", err)
		}
		if n > 0 {
			r.opts.Warn(fmt.Sprintf("host %s: killed %d jobs of the previous master, still running in %s", m.Name(), n, h.runDir))
		}
	}
	if h.slots == 0 {
		h.slots = max(info.CPUs, 1)
	}
	h.rec = hostRecord{Name: m.Name(), Address: m.Inv.Address, OS: info.OS, Arch: info.Arch, CPUs: info.CPUs, Slots: h.slots}
	var art artifact
	switch {
	case r.opts.Binary != "":
		art = r.art
		if r.checkPlatform != nil {
			r.checkPlatform(h)
		}
	case r.opts.Build != "":
		if art, err = r.builder.get(ctx, info.OS, info.Arch); err != nil {
			return nil, err
		}
	}
	if art.Path != "" {
		h.binSHA = art.SHA256
		h.binPath = path.Join(wd, "bin", art.SHA256)
		n, err := ensureRemote(ctx, m.Host, art, h.binPath, 0o755)
		if err != nil {
			return nil, fmt.Errorf("ship binary: %w", err)
		}
		h.rec.Binary, h.rec.Sent = art.SHA256, n
	}
	for _, f := range r.opts.Files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		fi, _ := fh.Stat()
		n, err := m.Host.Upload(ctx, path.Join(h.runDir, filepath.Base(f)), fh, fi.Mode().Perm())
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("ship --file %s: %w", f, err)
		}
		h.rec.Sent += n
	}
	_ = h.beat(ctx) // best effort: a host that cannot take it cannot run jobs either
	return h, nil
}

// reconnect brings a lost host back with backoff: a fresh connection
// (host key checked again, so a host whose key changed never re-joins).
// The SSHHost drops dead connections itself, so reconnecting is asking it
// to connect again.
func (r *Run) reconnect(ctx context.Context, h *runHost) {
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.loopDone:
			return
		case <-time.After(backoff):
		}
		cctx, cancel := context.WithTimeout(ctx, h.m.Host.Config().ConnectTimeout)
		err := h.m.Host.Connect(cctx)
		cancel()
		if err == nil {
			r.offer(h)
			return
		}
		if remote.KindOf(err) == remote.KindHostKey {
			r.opts.Warn(fmt.Sprintf("host %s will not re-join: %v", h.m.Name(), err))
			return
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// offer hands a prepared or returning host to the dispatcher, unless the
// run has ended.
func (r *Run) offer(h *runHost) {
	select {
	case r.ready <- h:
	case <-r.loopDone:
	}
}

// untilEnd is a child of ctx that is also cancelled when the run ends.
func (r *Run) untilEnd(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-r.loopDone:
			cancel()
		case <-c.Done():
		}
	}()
	return c, cancel
}

// setHostRecord updates the run.json record of host name.
func (r *Run) setHostRecord(name string, f func(*hostRecord)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.hostsRec {
		if r.hostsRec[i].Name == name {
			f(&r.hostsRec[i])
		}
	}
}

// keepAlive rewrites h's liveFile every liveEvery until the run ends.
// A beat that fails (the host is down) is not an error: the next one, or
// the host's return, brings the file up to date.
func (r *Run) keepAlive(ctx context.Context, h *runHost) {
	t := time.NewTicker(liveEvery)
	defer t.Stop()
	for {
		select {
		case <-r.loopDone:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			ectx, cancel := r.untilEnd(ctx) // abandon a beat in flight when the run ends
			bctx, cancelBeat := context.WithTimeout(ectx, h.m.Host.Config().ConnectTimeout)
			_ = h.beat(bctx)
			cancelBeat()
			cancel()
		}
	}
}

// reapOrphans kills what executions lost with h may have left running
// there: the process groups they reported (the run directory is the
// marker that tells them from a group that reused the number) and, with
// sweep, whatever else runs in the run directory (the groups of
// executions lost before they reported one, or children that outlived
// their leader). Sweep only when none of the run's executions should be
// running on h.
func (r *Run) reapOrphans(ctx context.Context, h *runHost, pgids []int, sweep bool) {
	killed := 0
	for i, pg := range pgids {
		if pg <= 0 {
			continue
		}
		found, err := h.m.Host.KillOrphan(ctx, pg, r.marker(h.runDir))
		if err != nil {
			r.opts.Warn(fmt.Sprintf("host %s: %d lost jobs' processes may still run there (process groups %v): %v",
				h.m.Name(), len(pgids)-i, pgids[i:], err))
			return
		}
		if found {
			killed++
		}
	}
	if sweep {
		n, err := h.m.Host.KillMarked(ctx, r.marker(h.runDir))
		if err != nil {
			r.opts.Warn(fmt.Sprintf("host %s: processes of lost jobs may still run in %s: %v", h.m.Name(), h.runDir, err))
		}
		killed += n
	}
	if killed > 0 {
		r.opts.Warn(fmt.Sprintf("host %s: killed the processes of %d lost jobs, still running there", h.m.Name(), killed))
	}
}

// stickyWriter writes to a log file and remembers the first error instead
// of returning it, so that a full disk ends the job cleanly (unfinished,
// ErrRecords) rather than tearing down the session mid-stream.
type stickyWriter struct {
	w   io.Writer
	err error
}

func (s *stickyWriter) Write(p []byte) (int, error) {
	if s.err == nil {
		_, s.err = s.w.Write(p)
	}
	return len(p), nil
}

// execute runs one execution of a job on a host and reports how it ended.
func (r *Run) execute(ctx context.Context, e queue.Exec, h *runHost, je *jobEntry, es *execState) completion {
	c := completion{e: e, start: time.Now(), command: je.command, exit: -1}
	if e.Attempt == 1 {
		// The common case writes where the logs end up; only later
		// attempts (which may overlap the first) use temporary names.
		c.out, c.er = jobLogPaths(r.dir, e.Job.ID)
	} else {
		c.out = filepath.Join(r.dir, "jobs", fmt.Sprintf("%d.%d.out.tmp", e.Job.ID, e.Seq))
		c.er = filepath.Join(r.dir, "jobs", fmt.Sprintf("%d.%d.err.tmp", e.Job.ID, e.Seq))
	}
	fo, err1 := createPrivate(c.out)
	fe, err2 := createPrivate(c.er)
	if err := errors.Join(err1, err2); err != nil {
		if fo != nil {
			fo.Close()
		}
		if fe != nil {
			fe.Close()
		}
		// Not the job's fault nor the host's: the master cannot keep
		// records. The job stays unfinished and the run stops.
		c.outcome, c.err = queue.Canceled, err
		c.local = fmt.Errorf("%w: job %d on %s: %v", ErrRecords, e.Job.ID, e.Host, err)
		return c
	}
	bo, be := newBufWriter(fo), newBufWriter(fe)
	so, se := &stickyWriter{w: bo}, &stickyWriter{w: be}
	rw := &resultWriter{}
	sw := &stderrWriter{progress: &es.progress}

	spec := je.spec
	env := map[string]string{
		"DSUB_JOB": strconv.Itoa(e.Job.ID), "DSUB_SHARD": strconv.Itoa(spec.Shard),
		"DSUB_SHARDS": strconv.Itoa(spec.Shards), "DSUB_HOST": h.m.Name(),
		"DSUB_ATTEMPT": strconv.Itoa(e.Attempt),
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["DSUB_RUN"] = r.id // the marker the sweeps kill by: never overridden
	cmd := remote.Cmd{Env: env, Dir: h.runDir, Stdout: io.MultiWriter(so, rw), Stderr: io.MultiWriter(se, sw)}
	if h.binPath != "" {
		cmd.Argv = append([]string{h.binPath}, spec.Args...)
	} else {
		cmd.Shell = spec.Shell
	}
	jctx := ctx
	if r.opts.Timeout > 0 {
		var cancel context.CancelFunc
		jctx, cancel = context.WithTimeout(ctx, r.opts.Timeout)
		defer cancel()
	}
	err := h.m.Host.Run(jctx, &cmd)
	c.dur = time.Since(c.start)
	if ferr := errors.Join(bo.Flush(), be.Flush(), fo.Close(), fe.Close()); ferr != nil && so.err == nil {
		so.err = ferr
	}
	c.recv = rw.bytes + sw.bytes
	c.tail = sw.Tail()
	var ee *remote.ExitError
	if errors.As(err, &ee) {
		c.exit, c.signal = ee.Status, ee.Signal
	} else if err == nil {
		c.exit = 0
	}
	line, ok, tooLong := rw.Result()
	switch {
	case err == nil && so.err == nil && se.err == nil && (ok || !r.needResult):
		// A result line is needed only by a reduce that uses it.
		c.outcome = queue.Succeeded
		if ok {
			c.value = ResultValue(line)
		}
		return c
	case so.err != nil || se.err != nil:
		// As above: the job stays unfinished, for a resume.
		c.outcome, c.err = queue.Canceled, errors.Join(so.err, se.err)
		c.local = fmt.Errorf("%w: job %d on %s: %v", ErrRecords, e.Job.ID, e.Host, c.err) // c.err names the log
	case err == nil && tooLong:
		c.outcome, c.err = queue.Failed, fmt.Errorf("result line longer than %d bytes", MaxResultLine)
		c.why = "result line too long"
	case err == nil:
		c.outcome, c.err = queue.Failed, fmt.Errorf("no result: stdout had no non-empty line, and the %s reduce needs one", reducerName(r.opts.Reducer))
		c.why = "no result line"
	case ctx.Err() != nil:
		c.outcome, c.err = queue.Canceled, err
	case remote.KindOf(err) == remote.KindRemoteExit:
		c.outcome, c.err = queue.Failed, ee
	case remote.KindOf(err) == remote.KindTimeout:
		c.outcome, c.err = queue.Failed, fmt.Errorf("timed out after %s; its remote processes were killed", r.opts.Timeout)
		c.why = "timed out"
	case remote.KindOf(err) == remote.KindTransport:
		c.outcome, c.err = queue.Lost, err // the host, not the job: requeue for free
		var re *remote.Error
		if errors.As(err, &re) {
			c.pgid = re.PGID
		}
	default:
		c.outcome, c.err = queue.Failed, err
	}
	return c
}

func (r *Run) writeRunJSON(st *Stats) error {
	r.mu.Lock()
	hosts := append([]hostRecord(nil), r.hostsRec...)
	r.mu.Unlock()
	doc := map[string]any{
		"id": r.id, "started": r.start.Format(time.RFC3339Nano), "command": r.opts.Record, "resumed": r.opts.ResumeDir != "",
		"retries": r.opts.Retries, "timeout_s": r.opts.Timeout.Seconds(), "files": r.opts.Files, "hosts": hosts,
	}
	switch {
	case r.opts.Binary != "":
		doc["binary"] = map[string]any{"path": r.opts.Binary, "sha256": r.art.SHA256, "size": r.art.Size}
	case r.opts.Build != "":
		doc["build"] = r.opts.Build
	default:
		doc["mode"] = "commands"
	}
	if st != nil {
		doc["finished"] = time.Now().Format(time.RFC3339Nano)
		doc["stats"] = st
		doc["speedup"] = st.Speedup()
		if r.err != nil {
			doc["error"] = r.err.Error()
		}
	}
	return writeJSONFile(filepath.Join(r.dir, "run.json"), doc)
}
