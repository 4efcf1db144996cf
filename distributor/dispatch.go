package distributor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

// dispatcher is a run's event loop. One goroutine runs it; it alone owns
// the queue, the prepared hosts, the unfinished jobs and the records while
// the run lasts, so none of its fields needs a lock. Its fields are the
// run's state; its methods are the events:
//
//	onSubmit    a job was submitted (or taken over from a resumed journal)
//	onClosed    no more jobs will be submitted
//	onReady     a host was prepared, or came back
//	onPrepDefer a host was unreachable at the start; it is retried
//	onPrepFail  a host could not be prepared
//	onFinished  an execution ended (see handle.go)
//	onTick      progress, the joblog, speculation
//	onInterrupt the caller's context was cancelled
//
// After each event, step starts what can start and shouldStop decides
// whether the run is over; teardown (finish.go) then cleans up.
type dispatcher struct {
	r   *Run
	ctx context.Context // the caller's

	runCtx     context.Context // the executions'
	cancelJobs context.CancelFunc
	// Preparations (uploads) have their own context: when the last job
	// ends while a host is still receiving the binary, the upload is let
	// finish (for a while) so that the cache is warm for the next run.
	prepCtx    context.Context
	cancelPrep context.CancelFunc

	q   *queue.Queue
	jrn *records.Journal
	jl  *records.Joblog
	sp  *speculator
	now func() time.Time
	// lastTakeBack is when takeBack last looked.
	lastTakeBack time.Time
	order        []string // host names, inventory order

	hosts     map[string]*runHost   // prepared hosts
	tally     map[string]*hostTally // per host counts
	deferred  map[string]bool       // hosts unreachable at the start, being retried
	cancelled map[int]bool          // jobs the user cancelled (CancelJob)
	preparing int                   // hosts whose first preparation is under way
	jobs      map[int]*jobEntry     // unfinished jobs
	running   map[int]*execState    // by Exec.Seq

	nextID     int // jobs submitted
	failedJobs int
	resumed    int // jobs taken from a resumed run's journal
	resumedOK  int // of which succeeded

	emit        []Result // results and failures for good awaiting the journal commit
	commitTimer *time.Timer
	commitArmed bool
	reduceErrs  []string
	reduceNew   bool // results reduced since the last publish

	closed      bool // no more jobs will be submitted
	readyClosed bool
	halted      bool
	interrupted bool // stopping: no new job starts
	canceled    bool // ctx is done: running jobs were killed
	noHostSince time.Time

	orphans  orphans
	liveWG   sync.WaitGroup // keepAlive, one per prepared host
	orphanWG sync.WaitGroup
}

// hostTally is what the dispatcher counts per host.
type hostTally struct {
	state       records.HostState
	done, fails int
	lost        int
	jobTime     time.Duration
	slots       int
	cpu         float64 // CPU seconds of its executions, where measured
	launcher    string
}

// commitDelay is group commit's window: results wait at most this long
// for the fsync that makes them count, so one fsync covers many.
const commitDelay = 25 * time.Millisecond

func newDispatcher(ctx context.Context, r *Run) (*dispatcher, error) {
	jrn, err := records.OpenJournal(r.dir.Journal())
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	jl, err := records.OpenJoblog(r.dir, r.opts.JoblogCopy, r.opts.ResumeDir != "")
	if err != nil {
		jrn.Close()
		return nil, fmt.Errorf("open joblog: %w", err)
	}
	d := &dispatcher{
		r: r, ctx: ctx, jrn: jrn, jl: jl, now: time.Now,
		q:     queue.New(queue.Options{Retries: r.opts.Retries, QuarantineAfter: r.opts.QuarantineAfter}),
		sp:    &speculator{on: r.opts.Speculate, after: r.opts.SpeculateAfter},
		hosts: map[string]*runHost{}, tally: map[string]*hostTally{}, deferred: map[string]bool{}, cancelled: map[int]bool{},
		jobs: map[int]*jobEntry{}, running: map[int]*execState{},
		orphans:     orphans{lost: map[string][]int{}, sweeping: map[string]bool{}},
		commitTimer: time.NewTimer(time.Hour),
	}
	d.commitTimer.Stop()
	d.runCtx, d.cancelJobs = context.WithCancel(ctx)
	d.prepCtx, d.cancelPrep = context.WithCancel(ctx)
	if r.opts.testHook != nil {
		r.opts.testHook(d)
	}
	return d, nil
}

// run is the dispatcher's goroutine.
func (d *dispatcher) run() {
	defer close(d.r.done)
	defer d.cancelPrep()
	defer d.cancelJobs()
	d.startPreparing()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		d.wait(tick.C)
		if d.step() {
			break
		}
	}
	d.teardown()
}

// startPreparing prepares every host in the background. Every host is
// known to the queue from the start (so jobs may be pinned to it) but
// takes jobs only once prepared.
func (d *dispatcher) startPreparing() {
	for _, m := range d.r.c.members {
		d.tally[m.Name()] = &hostTally{state: records.HostPreparing}
		d.order = append(d.order, m.Name())
		_ = d.q.AddHost(m.Name(), 1)
		_ = d.q.SetHostState(m.Name(), queue.Down)
		d.preparing++
		d.r.prepWG.Add(1)
		go func() {
			defer d.r.prepWG.Done()
			d.r.prepare(d.prepCtx, m)
		}()
	}
}

// wait takes one event and handles it.
func (d *dispatcher) wait(tick <-chan time.Time) {
	r := d.r
	// Pull new jobs only while the queue is short: backpressure on Submit
	// keeps memory flat for huge inputs.
	var in chan JobSpec
	var closedCh chan struct{}
	if !d.closed && !d.interrupted && d.q.Pending() < max(2*d.totalSlots(), 64) {
		in, closedCh = r.submit, r.closed
	}
	var ctxDone <-chan struct{}
	if !d.canceled {
		ctxDone = d.ctx.Done() // also while stopping softly: kill then
	}
	select {
	case spec := <-in:
		d.onSubmit(spec)
	case <-closedCh:
		d.onClosed()
	case h := <-r.ready:
		d.onReady(h)
	case pe := <-r.prepDefer:
		d.onPrepDefer(pe)
	case err := <-r.prepFail:
		d.onPrepFail(err)
	case c := <-r.finished:
		d.onFinished(c)
	case req := <-r.cancel:
		d.onCancel(req)
	case <-d.commitTimer.C:
		d.commitArmed = false
		d.commit()
	case <-tick:
		d.onTick()
	case <-ctxDone:
		d.onInterrupt()
	}
}

// step follows an event: it arms the group commit, halts on failures,
// starts what can start, and reports whether the run is over.
func (d *dispatcher) step() (stop bool) {
	if len(d.emit) > 0 && !d.commitArmed {
		d.commitTimer.Reset(commitDelay)
		d.commitArmed = true
	}
	d.checkHalt()
	if !d.interrupted {
		for _, e := range d.q.Assign() {
			d.launch(e, false)
		}
		d.takeBack()
	}
	return d.shouldStop()
}

func (d *dispatcher) checkHalt() {
	r := d.r
	if r.opts.HaltAfter == 0 || d.failedJobs < r.opts.HaltAfter || d.halted {
		return
	}
	d.halted, d.interrupted = true, true // no new jobs, no more input
	mode := "soon"
	if r.opts.HaltNow {
		mode = "now"
		d.cancelJobs()
	} else {
		// Soon lets running jobs finish; one still waiting in a host's
		// window (queued at its agent) has not started, and must not.
		for _, es := range d.running {
			if !es.started.Load() {
				es.cancel()
			}
		}
	}
	r.opts.Warn(fmt.Sprintf("halting (%s) after %d failed jobs", mode, d.failedJobs))
}

// shouldStop reports whether the run is over: stopped and drained, done,
// or with jobs no host can take.
func (d *dispatcher) shouldStop() bool {
	q := d.q
	switch {
	case d.interrupted && q.Running() == 0:
		return true
	case q.Done() && q.Running() == 0:
		// Hosts still preparing are not needed. Losers of speculative
		// runs, killed when the winner was recorded, are waited for, so
		// that the joblog counts every execution.
		return true
	}
	if q.Pending() == 0 && q.Running() == 0 && len(d.emit) > 0 && d.closed {
		d.commit()
	}
	switch {
	case d.preparing == 0 && len(d.hosts) == 0:
		d.r.err = errors.New("no host could be prepared for the run; see the errors above")
		return true
	case q.Pending() == 0 && q.Running() == 0 && d.closed && len(d.jobs) == 0:
		return true
	}
	return d.noHostLeft()
}

// noHostLeft ends the run when jobs wait and no host can take them. After
// Assign, waiting jobs with nothing running means no Up host can take any
// of them: every host is down or quarantined, or the jobs left are pinned
// to such hosts. Wait for one to come back, for NoHostTimeout at most.
func (d *dispatcher) noHostLeft() bool {
	q, r := d.q, d.r
	if q.Pending() == 0 || q.Running() > 0 || d.preparing > 0 {
		d.noHostSince = time.Time{}
		return false
	}
	if d.noHostSince.IsZero() {
		d.noHostSince = d.now()
	}
	if !q.Stuck() && d.now().Sub(d.noHostSince) <= r.opts.NoHostTimeout {
		return false
	}
	var down []string
	for _, name := range d.order {
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
	r.err = fmt.Errorf("%w (%d unfinished: %s); the journal in %s keeps every recorded result", ErrNoHosts, q.Pending(), why, r.dir)
	return true
}

func (d *dispatcher) totalSlots() int { return d.q.UpSlots() }

// takeBackAfter is how long a job must have waited in a host's window
// before it may be taken back: less is a job whose start is merely on
// its way.
const takeBackAfter = 100 * time.Millisecond

// takeBack moves jobs waiting in a host's window (queued at its agent
// behind running jobs) to hosts with a free slot, once no job waits in
// the queue: the window hides the round trip between jobs, and must not
// leave the end of a run waiting on a slow host while others idle.
//
// It looks at every host and execution, so it runs at most every
// takeBackAfter/4 of a step's time (and on the tick): no job is eligible
// sooner than that, and a per-step scan would cost the master O(hosts)
// per job.
func (d *dispatcher) takeBack() {
	if d.q.Pending() > 0 {
		return
	}
	now := d.now()
	if now.Sub(d.lastTakeBack) < takeBackAfter/4 {
		return
	}
	d.lastTakeBack = now
	free := map[string]int{} // slots with nothing running or waiting
	for name, h := range d.hosts {
		if d.q.HostState(name) == queue.Up {
			free[name] = h.slots
		}
	}
	// Only executions beyond a host's slots can be waiting in its window;
	// one within them that has not reported its start is merely slow to.
	waiting := map[string][]*execState{}
	for _, es := range d.running {
		free[es.host]--
		if !es.started.Load() && !es.takenBack && now.Sub(es.start) > takeBackAfter {
			waiting[es.host] = append(waiting[es.host], es)
		}
	}
	for host, ws := range waiting {
		excess := -free[host]                                                              // executions beyond its slots
		slices.SortFunc(ws, func(a, b *execState) int { return b.start.Compare(a.start) }) // the last sent waits longest
		for _, es := range ws[:min(len(ws), max(excess, 0))] {
			for name, n := range free {
				if name != host && n > 0 {
					free[name]--
					es.takenBack = true
					es.cancel()
					break
				}
			}
		}
	}
}

// launch starts an execution.
func (d *dispatcher) launch(e queue.Exec, backup bool) {
	je := e.Job.Payload.(*jobEntry)
	ectx, cancel := context.WithCancel(d.runCtx)
	es := &execState{host: e.Host, job: e.Job.ID, start: d.now(), backup: backup, cancel: cancel}
	h := d.hosts[e.Host] // read here: the map belongs to this goroutine
	if h.window() == 0 {
		es.started.Store(true) // it starts at once
		d.r.event(startEvent(Started, e, je, es, es.start))
	} else {
		es.ticket = h.order.ticket()
		d.r.event(startEvent(Sent, e, je, es, es.start))
	}
	d.running[e.Seq] = es
	go func() { d.r.finished <- d.r.execute(ectx, e, h, je, es) }()
}

func (d *dispatcher) onSubmit(spec JobSpec) {
	r := d.r
	d.nextID++
	je := &jobEntry{spec: spec, command: displayCommand(r, spec)}
	je.id = jobIdentity(r.identityHash(), spec)
	if err := r.Verify(d.nextID, spec); err != nil {
		r.err = err
		d.interrupted = true
		d.cancelJobs()
		return
	}
	if rec, ok := r.journaled[d.nextID]; ok && (!rec.Failed || !r.opts.ResumeFailed) {
		d.takeRecorded(rec)
		return
	}
	d.jobs[d.nextID] = je
	if err := d.q.Add(&queue.Job{ID: d.nextID, Pin: spec.Pin, Payload: je}); err != nil {
		d.failedJobs++
		delete(d.jobs, d.nextID)
		d.report(Result{Job: d.nextID, Err: err, Exit: -1})
		return
	}
	// A job pinned to a host already out of the run fails as the jobs
	// pinned there before it did.
	if spec.Pin != "" && d.q.HostState(spec.Pin) == queue.Quarantined {
		why := "was quarantined"
		if d.tally[spec.Pin].state == records.HostFailed {
			why = "could not be prepared"
		}
		d.failPinned(spec.Pin, why)
	}
}

// takeRecorded takes the job just submitted as a resumed run recorded it.
func (d *dispatcher) takeRecorded(rec records.JournalRecord) {
	d.resumed++
	res := Result{Job: d.nextID, Resumed: true, Host: rec.Host, Attempt: rec.Attempt, Value: rec.Result,
		Duration: time.Duration(rec.Duration * float64(time.Second))}
	res.Output = rec.Output
	if rec.Failed {
		d.failedJobs++
		res.Err = errors.New(rec.Error)
		d.report(res)
		return
	}
	d.resumedOK++
	d.emit = append(d.emit, res)
}

// report hands a final outcome to the caller.
func (d *dispatcher) report(res Result) {
	if d.r.opts.OnResult != nil {
		d.r.opts.OnResult(res)
	}
}

func (d *dispatcher) onClosed() {
	d.closed = true
	d.q.Close()
}

func (d *dispatcher) onPrepDefer(pe *prepError) {
	// Warn first: a caller of Ready sees the warning once it returns.
	d.r.opts.Warn(pe.deferredString())
	d.deferred[pe.host] = true
	d.preparing--
	d.markReady()
	d.tally[pe.host].state = records.HostDown
	d.r.setHostRecord(pe.host, func(rec *records.HostRecord) { rec.Error = pe.Error() })
}

func (d *dispatcher) onPrepFail(err error) {
	d.r.opts.Warn(err.Error())
	var pe *prepError
	if !errors.As(err, &pe) || !d.deferred[pe.host] {
		d.preparing--
		d.markReady()
	}
	if pe != nil {
		d.tally[pe.host].state = records.HostFailed
		_ = d.q.SetHostState(pe.host, queue.Quarantined)
		d.failPinned(pe.host, "could not be prepared")
		d.r.setHostRecord(pe.host, func(rec *records.HostRecord) { rec.Error = pe.Error() })
	}
}

func (d *dispatcher) markReady() {
	if d.preparing == 0 && !d.readyClosed {
		d.readyClosed = true
		close(d.r.allReady)
	}
}

// failPinned fails the jobs pinned to host, which will never run them.
func (d *dispatcher) failPinned(host, why string) {
	for _, j := range d.q.FailPinned(host) {
		d.failedJobs++
		delete(d.jobs, j.ID)
		d.report(Result{Job: j.ID, Host: host, Exit: -1, Err: fmt.Errorf("pinned to %s, which %s", host, why)})
	}
}

func (d *dispatcher) onTick() {
	_ = d.jl.Flush()
	if !d.interrupted {
		d.takeBack()
	}
	d.publish() // the snapshot is read by progress displays, not per event
	if d.r.opts.Speculate && !d.interrupted {
		for _, b := range d.sp.pick(d.q, d.running, d.now()) {
			d.launch(b.e, true)
			d.r.opts.Warn(b.String())
		}
	}
}

func (d *dispatcher) onInterrupt() {
	d.interrupted, d.canceled = true, true
	d.cancelJobs()
}

// stopRecords stops the run because its records cannot be written.
func (d *dispatcher) stopRecords(err error) {
	if !d.interrupted {
		d.r.opts.Warn(fmt.Sprintf("%v; no new job starts", err))
	}
	if d.r.err == nil {
		d.r.err = err
	}
	d.interrupted = true
}

// commit makes the results waiting in emit count: the joblog rows reach
// the file and the journal is fsynced, then they are reduced and reported.
func (d *dispatcher) commit() {
	if len(d.emit) == 0 {
		return
	}
	// The joblog rows of these jobs reach the file, and their output is
	// on disk, before the journal makes them count: a crashed master
	// loses none of them, and no result locates output that is not there.
	_ = d.jl.Flush()
	if err := d.r.streams.Sync(); err != nil {
		// The results waiting may locate output that is not on disk:
		// none of them may count, now or when the journal closes.
		d.jrn.Poison(err)
		d.stopRecords(fmt.Errorf("%w: output streams in %s: %v", ErrRecords, d.r.dir.Output(), err))
	} else if err := d.jrn.Commit(); err != nil {
		d.stopRecords(fmt.Errorf("%w: journal %s: %v", ErrRecords, d.r.dir.Journal(), err))
	}
	for _, res := range d.emit {
		if d.r.opts.Reducer != nil && res.Err == nil {
			d.reduceNew = true
			if err := d.r.opts.Reducer.Add(res.Job, res.Value); err != nil {
				d.reduceErrs = append(d.reduceErrs, fmt.Sprintf("job %d on %s: %v", res.Job, res.Host, err))
			}
		}
		d.report(res)
	}
	d.emit = d.emit[:0]
}

// publish updates the snapshot that progress displays read.
func (d *dispatcher) publish() {
	r := d.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snap.Jobs, r.snap.AllKnown = d.nextID, d.closed // Snapshot applies RunOptions.Total
	// Jobs a resumed run took from its journal count as done.
	r.snap.Succeeded, r.snap.Failed = d.q.Succeeded()+d.resumedOK, d.failedJobs
	// Running counts only executions that have started; those waiting
	// in a host's window are Queued.
	r.snap.Running, r.snap.Queued = 0, 0
	prog := map[string][]float64{} // of the started executions
	queued := map[string]int{}     // waiting in a host's window
	for _, es := range d.running {
		if !es.started.Load() {
			queued[es.host]++
			r.snap.Queued++
			continue
		}
		r.snap.Running++
		prog[es.host] = append(prog[es.host], bitsFloat(es.progress.Load()))
	}
	if c, ok := r.opts.Reducer.(interface{ current() string }); ok && d.reduceNew {
		r.snap.Reduced, d.reduceNew = c.current(), false
	}
	r.snap.Hosts = r.snap.Hosts[:0]
	for _, name := range d.order {
		t := d.tally[name]
		hs := HostSnapshot{Name: name, State: t.state, Done: t.done, Failed: t.fails, Running: len(prog[name]), Queued: queued[name],
			Lost: t.lost, Slots: t.slots, JobTime: t.jobTime, CPU: t.cpu, Launcher: t.launcher}
		if rh := d.hosts[name]; rh != nil {
			if hr, ok := rh.jobs.(remote.HealthReporter); ok {
				if h, ok := hr.Health(); ok {
					hs.Health = &h
				}
			}
		}
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
