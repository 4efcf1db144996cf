package distributor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/records"
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
	// JoblogCopy, if set, is a file that gets joblog.tsv's rows too, as
	// they are written (GNU parallel's --joblog FILE): truncated by a new
	// run, appended to by a resumed one.
	JoblogCopy string
	// Total, if positive, is how many jobs will be submitted, known up
	// front (the input counted: ::: values, a file's lines): progress
	// shows it, and an ETA, from the start rather than the jobs
	// submitted so far.
	Total   int
	Reducer Reducer // folds results; nil: none
	// OnResult receives each job's final outcome (a result, or a failure
	// for good), in completion order, from a single goroutine.
	OnResult func(Result)
	// Warn receives notices (retries, hosts lost, binary warnings).
	Warn func(string)
	// OnEvent, if set, receives each execution's Sent, Started and Ended
	// events. It is called from the run's goroutines (the dispatcher's,
	// and an execution's as a host that queued it starts it): it must be
	// quick and safe for concurrent use.
	OnEvent func(Event)
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
	// Launch is how jobs reach hosts: LaunchSession (the default),
	// LaunchAgent or LaunchAuto. Agent is the agent binary to ship: a dsub
	// built for the hosts' platform (normally the running one).
	Launch string
	Agent  string
	// AgentFor, if set, provides an agent for a host whose OS or
	// architecture differs from Agent's: the path of a dsub built for
	// goos/goarch (cross-built, or one found beside Agent). It is called
	// once per platform; its error is why that platform's hosts run jobs
	// as sessions.
	AgentFor func(ctx context.Context, goos, goarch string) (string, error)
	// SlotNumbers puts each job's slot on its host (1 to its slots) in
	// for SlotMark ({%}) as the job starts. Hosts then hold no window of
	// jobs waiting for a slot: a job's slot is known when it is sent.
	SlotNumbers bool
	// Setup, a shell command line, runs on each host in its run
	// directory before its first job, after the program and Files are in
	// place, and again whenever it re-joins. A host whose setup fails
	// takes no jobs. Teardown runs on each prepared host once the run
	// ends, however it ends, bounded by TeardownTimeout (default 1 min).
	Setup, Teardown string
	TeardownTimeout time.Duration
	// JobDirs runs each job in its own directory on its host,
	// <run dir>/jobs/<job>.<execution>, where its Transfer files are and
	// where it writes its Return files ($DSUB_RUN_DIR is the run
	// directory). Transfers are cached by content in <workdir>/files
	// unless Cleanup, which removes the job's directory (transfers and
	// returns) once it has ended. Returned files go to ReturnDir, else to
	// <run dir>/out/<job>/, each written to a temporary name, synced and
	// renamed before the job counts as succeeded; none is written outside.
	JobDirs   bool
	Cleanup   bool
	ReturnDir string

	// testHook lets the package's tests adjust the dispatcher (its clock)
	// before it starts.
	testHook func(*dispatcher)
}

// Result is a job's final outcome.
type Result struct {
	Job      int
	Resumed  bool // recorded by an earlier run of a resumed run, not run again
	Host     string
	Attempt  int
	Value    json.RawMessage // the result line as JSON (string when not JSON); nil on failure
	Err      error           // why the job failed for good
	Exit     int
	Duration time.Duration
	// Output locates the job's output in the run's output streams:
	// records.RunDir.ReadOutput reads it.
	Output     records.Locator
	StderrTail string
}

// Errors that stop a run early with its journal intact, so that it can be
// resumed (Wait's error wraps one of them):
var (
	// ErrHalted: the run stopped on failures (HaltAfter).
	ErrHalted = errors.New("run halted")
	// ErrNoHosts: jobs were waiting and no host could run them.
	ErrNoHosts = errors.New("no usable host remains")
	// ErrRecords: the run's local records (the output streams, the journal)
	// could not be written, for example because the disk under LogsDir is
	// full. No job starts after it.
	ErrRecords = errors.New("cannot write the run's records")
)

// Run is a run in progress. Submit jobs, Close, then Wait.
type Run struct {
	c    *Cluster
	opts RunOptions
	// returned maps each file in the shared ReturnDir to the job whose
	// return put it there: another job's return of the same name fails
	// (it would replace it), and a failing job removes only its own.
	retMu    sync.Mutex
	returned map[string]int
	id       string
	dir      records.RunDir
	start    time.Time

	submit    chan JobSpec
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
	loopDone  chan struct{} // closed when the dispatcher stops taking events
	allReady  chan struct{} // closed when every host is prepared or failed
	prepWG    sync.WaitGroup
	ready     chan *runHost
	prepFail  chan error
	prepDefer chan *prepError // a host unreachable at the start, tried again
	finished  chan completion
	cancel    chan cancelReq // CancelJob

	journaled     map[int]records.JournalRecord // a resumed run's recorded jobs; read-only after Start
	needResult    bool                          // the reducer uses result lines (NeedsResult); set by Start
	art           artifact                      // the shipped binary (Binary mode)
	checkPlatform func(h *runHost)              // warns when the binary does not suit a host
	builder       *builder
	agentArt      artifact   // the agent binary (Launch agent or auto)
	agentInfo     binaryInfo // its platform
	agentsFor     agentsFor  // agents for other platforms (RunOptions.AgentFor)
	tmpDir        string
	streams       *streamSet    // the jobs' output
	retryMin      time.Duration // first delay between a host's connection attempts

	mu        sync.Mutex
	snap      Snapshot             // guarded by mu
	hostsRec  []records.HostRecord // guarded by mu
	setUp     map[string]*runHost  // hosts whose --setup succeeded, for --teardown; guarded by mu
	inputs    inputs               // hashes of transferred files
	cleanups  sync.WaitGroup       // removals of job directories (Cleanup) under way
	stats     *records.Stats       // set when done
	result    string               // reduced result
	err       error
	submitted atomic.Int64
}

// Snapshot is the live state of a run, for progress displays.
type Snapshot struct {
	Jobs      int  // submitted so far, or RunOptions.Total if more
	AllKnown  bool // Jobs is the run's total: known up front, or no more will be submitted
	Succeeded int
	Failed    int
	Running   int // executions that have started
	Queued    int // executions sent to a host, waiting in its window for a slot
	Elapsed   time.Duration
	Hosts     []HostSnapshot
	// Reduced is the reduce's running value, for reduces that have a
	// small one (sum, min and max of numbers, count); else "".
	Reduced string
}

// HostSnapshot is one host's live state.
type HostSnapshot struct {
	Name     string
	State    records.HostState
	Running  int // started there
	Queued   int // sent there, waiting in its window for a slot
	Done     int
	Failed   int
	Progress float64 // mean reported progress of its running jobs, 0..1
	Lost     int
	Slots    int
	JobTime  time.Duration // of its recorded jobs
	CPU      float64       // CPU seconds of its executions, where measured
	Launcher string
	// Health is the host's load and memory where it reports them (an
	// agent's heartbeats), else nil.
	Health *remote.Health
}

// Start begins a run on the cluster: hosts are prepared (probed, binary
// and files shipped) in the background, each taking jobs as soon as it is
// ready.
func (c *Cluster) Start(ctx context.Context, opts RunOptions) (*Run, error) {
	if opts.Binary != "" && opts.Build != "" {
		return nil, errors.New("choose one of Binary and Build")
	}
	opts = opts.withDefaults()
	now := time.Now()
	r := &Run{
		c: c, opts: opts, id: newRunID(now), start: now, journaled: map[int]records.JournalRecord{}, retryMin: time.Second,
		submit: make(chan JobSpec), closed: make(chan struct{}), done: make(chan struct{}),
		loopDone: make(chan struct{}), allReady: make(chan struct{}),
		ready: make(chan *runHost), prepFail: make(chan error), prepDefer: make(chan *prepError), finished: make(chan completion, 64),
		cancel: make(chan cancelReq),
	}
	r.dir = records.RunDir(filepath.Join(opts.LogsDir, r.id))
	r.needResult = NeedsResult(opts.Reducer)
	var prevBinary string
	if opts.ResumeDir != "" {
		var err error
		if prevBinary, err = r.loadResumed(); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(r.dir.Output(), 0o700); err != nil {
		return nil, fmt.Errorf("create run directory: %w", err)
	}
	r.streams = &streamSet{dir: r.dir}
	for _, f := range opts.Files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, errs.E(errs.OpShip, "", errs.KindConfig, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, errs.E(errs.OpShip, "", errs.KindConfig, errors.New("not a regular file")).WithPath(f)
		}
	}
	if err := r.setProgram(prevBinary); err != nil {
		return nil, err
	}
	if err := r.setAgent(); err != nil {
		return nil, err
	}
	for _, m := range c.members {
		r.hostsRec = append(r.hostsRec, records.HostRecord{Name: m.Name(), Address: m.Inv.Address})
	}
	if err := r.writeManifest(nil); err != nil {
		return nil, err
	}
	d, err := newDispatcher(ctx, r)
	if err != nil {
		return nil, err
	}
	go d.run()
	return r, nil
}

func (o RunOptions) withDefaults() RunOptions {
	if o.LogsDir == "" {
		o.LogsDir = "dsub-runs"
	}
	if o.QuarantineAfter == 0 {
		o.QuarantineAfter = 5
	}
	if o.NoHostTimeout == 0 {
		o.NoHostTimeout = 60 * time.Second
	}
	if o.Warn == nil {
		o.Warn = func(string) {}
	}
	return o
}

// loadResumed takes over the run recorded in ResumeDir: its id and
// journal. It returns the recorded binary's hash.
func (r *Run) loadResumed() (prevBinary string, err error) {
	r.dir = records.RunDir(r.opts.ResumeDir)
	// The id comes from the run's own record, never from the path given:
	// it names the remote directory the run removes.
	m, err := records.ReadManifest(r.dir)
	if err != nil {
		return "", errs.E(errs.OpResume, "", errs.KindConfig, err).WithPath(string(r.dir))
	}
	if !ValidRunID(m.ID) {
		return "", errs.E(errs.OpResume, "", errs.KindConfig, fmt.Errorf("run.json holds no valid run id (%q): not a dsub run directory", m.ID)).WithPath(string(r.dir))
	}
	if err := m.Resumable(); err != nil {
		return "", errs.E(errs.OpResume, "", errs.KindConfig, err).WithPath(string(r.dir))
	}
	r.id = m.ID
	if m.Binary != nil {
		prevBinary = m.Binary.SHA256
	}
	if r.journaled, err = records.ReadJournal(r.dir.Journal()); err != nil {
		return "", errs.E(errs.OpResume, "", errs.KindConfig, err).WithPath(string(r.dir))
	}
	return prevBinary, nil
}

// setProgram hashes and inspects the Binary, or sets up the Build.
func (r *Run) setProgram(prevBinary string) error {
	opts := r.opts
	switch {
	case opts.Binary != "":
		art, err := hashFile(opts.Binary)
		if err != nil {
			return errs.E(errs.OpShip, "", errs.KindConfig, err).WithPath(opts.Binary)
		}
		r.art = art
		if opts.ResumeDir != "" && prevBinary != art.SHA256 {
			return errs.E(errs.OpResume, "", errs.KindConfig, fmt.Errorf("refusing: the binary changed since the run (%s had sha256 %s, now %s); start a new run instead", opts.Binary, short(prevBinary), short(art.SHA256))).WithPath(string(r.dir))
		}
		bi, err := inspectBinary(opts.Binary)
		if err != nil {
			return errs.E(errs.OpShip, "", errs.KindConfig, err).WithPath(opts.Binary)
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
			return err
		}
		r.tmpDir = dir
		r.builder = &builder{pkg: opts.Build, dir: dir, builds: map[string]*build{}}
	}
	return nil
}

// setAgent hashes and inspects the agent binary, for a launch that may
// use agents.
func (r *Run) setAgent() error {
	if !ValidLaunch(r.opts.Launch) {
		return errs.E(errs.OpShip, "", errs.KindConfig, fmt.Errorf("unknown launcher %q (want session, agent or auto)", r.opts.Launch))
	}
	if r.opts.Launch == "" || r.opts.Launch == LaunchSession || r.opts.Agent == "" {
		return nil
	}
	art, err := hashFile(r.opts.Agent)
	if err != nil {
		return errs.E(errs.OpShip, "", errs.KindConfig, fmt.Errorf("agent: %w", err)).WithPath(r.opts.Agent)
	}
	art.Path = r.opts.Agent
	bi, err := inspectBinary(r.opts.Agent)
	if err != nil {
		return errs.E(errs.OpShip, "", errs.KindConfig, fmt.Errorf("agent: %w", err)).WithPath(r.opts.Agent)
	}
	r.agentArt, r.agentInfo = art, bi
	return nil
}

// writeManifest writes run.json: st is nil until the run ends.
func (r *Run) writeManifest(st *records.Stats) error {
	r.mu.Lock()
	m := &records.Manifest{Schema: records.SchemaStreams, ID: r.id, Started: r.start, Resumed: r.opts.ResumeDir != "",
		Retries: r.opts.Retries, TimeoutS: r.opts.Timeout.Seconds(), Files: r.opts.Files, Hosts: append([]records.HostRecord(nil), r.hostsRec...)}
	r.mu.Unlock()
	if r.opts.Record != nil {
		b, err := json.Marshal(r.opts.Record)
		if err != nil {
			return fmt.Errorf("run record: %w", err)
		}
		m.Command = b
	}
	switch {
	case r.opts.Binary != "":
		m.Binary = &records.BinaryRecord{Path: r.opts.Binary, SHA256: r.art.SHA256, Size: r.art.Size}
	case r.opts.Build != "":
		m.Build = r.opts.Build
	default:
		m.Mode = "commands"
	}
	if st != nil {
		m.Finished = time.Now()
		m.Stats, m.Speedup = st, st.Speedup()
		if len(r.result) <= records.MaxManifestResult {
			m.Result = r.result
		}
		if r.err != nil {
			m.Error = r.err.Error()
		}
	}
	return m.Write(r.dir)
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
		return errs.E(errs.OpResume, "", errs.KindConfig, fmt.Errorf("refusing: the job is not the job recorded (its arguments or program changed: was %s, now %s); start a new run instead", rec.ID, id)).WithPath(string(r.dir)).WithJob(job)
	}
	return nil
}

// Dir is the local run directory holding logs and records.
func (r *Run) Dir() string { return string(r.dir) }

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
func (r *Run) Wait() (*records.Stats, string, error) {
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
	if r.opts.Total > 0 { // before the first job too
		s.Jobs, s.AllKnown = max(s.Jobs, r.opts.Total), true
	}
	return s
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
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
		return ShowSlot(spec.Shell)
	}
	name := "binary"
	switch {
	case r.opts.Binary != "":
		name = filepath.Base(r.opts.Binary)
	case r.opts.Build != "":
		name = path.Base(r.opts.Build)
	}
	return ShowSlot(remote.QuoteArgv(append([]string{name}, spec.Args...)))
}
