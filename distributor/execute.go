package distributor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

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
	// started: the command runs on the host (not waiting in its window);
	// takenBack: cancelled while waiting there, to run elsewhere.
	started   atomic.Bool
	takenBack bool
	// ticket is its place in its host's sendOrder, for a host with a
	// window.
	ticket uint64
}

// completion is how an execution ended, as execute reports it to the
// dispatcher.
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
	output  records.Locator // where its output is
	command string
	local   error  // the job's output could not be recorded (outcome Canceled)
	why     string // for the joblog: why a job that exited 0 failed
	pgid    int    // Lost: the remote process group, which may run on
	usage   remote.Usage
}

// jobOutput is where an execution's output goes: its records in the
// host's output stream, the result line and the stderr tail with
// progress reports.
type jobOutput struct {
	out *records.Output
	rw  *resultWriter
	sw  *stderrWriter
	loc records.Locator
	err error // writing the records failed (the master's disk)
}

func (r *Run) openJobOutput(e queue.Exec, progress *atomic.Uint64) (*jobOutput, error) {
	w, err := r.streams.get(e.Host)
	if err != nil {
		return nil, err
	}
	return &jobOutput{out: w.Open(e.Job.ID, e.Seq, e.Attempt), rw: &resultWriter{}, sw: &stderrWriter{progress: progress}}, nil
}

// close writes the output's last records; a failure is the logs' error.
func (o *jobOutput) close() { o.loc, o.err = o.out.Close() }

// logErr is the error writing the output's records, if any.
func (o *jobOutput) logErr() error { return o.err }

// jobCmd is the remote command of an execution on h.
func (r *Run) jobCmd(e queue.Exec, h *runHost, spec JobSpec, o *jobOutput) *remote.Cmd {
	env := map[string]string{
		"DSUB_JOB": strconv.Itoa(e.Job.ID), "DSUB_SHARD": strconv.Itoa(spec.Shard),
		"DSUB_SHARDS": strconv.Itoa(spec.Shards), "DSUB_HOST": h.m.Name(),
		"DSUB_ATTEMPT": strconv.Itoa(e.Attempt),
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	env["DSUB_RUN"] = r.id // the marker the sweeps kill by: never overridden
	cmd := &remote.Cmd{Env: env, Dir: h.runDir, Stdout: io.MultiWriter(o.out.Stdout(), o.rw), Stderr: io.MultiWriter(o.out.Stderr(), o.sw)}
	if h.binPath != "" {
		cmd.Argv = append([]string{h.binPath}, spec.Args...)
	} else {
		cmd.Shell = spec.Shell
	}
	return cmd
}

// execute runs one execution of a job on a host and reports how it ended.
func (r *Run) execute(ctx context.Context, e queue.Exec, h *runHost, je *jobEntry, es *execState) completion {
	c := completion{e: e, start: time.Now(), command: je.command, exit: -1}
	sent := c.start
	o, err := r.openJobOutput(e, &es.progress)
	if err != nil {
		// Not the job's fault nor the host's: the master cannot keep
		// records. The job stays unfinished and the run stops.
		c.outcome, c.err = queue.Canceled, err
		c.local = recordsErr(e, err)
		return c
	}
	cmd := r.jobCmd(e, h, je.spec, o)
	if r.opts.SlotNumbers {
		n := h.takeSlot()
		defer h.freeSlot(n)
		putSlot(cmd, n)
		cmd.Env["DSUB_SLOT"] = strconv.Itoa(n)
	}
	// The host applies the limit from the job's start: a job waiting in
	// an agent's window has not used any of it.
	cmd.Timeout = r.opts.Timeout
	cmd.Usage = &c.usage
	var startedAt atomic.Pointer[time.Time]
	cmd.OnStart = func() {
		now := time.Now()
		startedAt.Store(&now)
		es.started.Store(true)
		r.event(startEvent(Started, e, je, es, now))
	}
	dir := ""
	if r.opts.JobDirs {
		dir = jobDir(h, e.Job.ID, e.Seq)
		cmd.Dir, cmd.Env["DSUB_RUN_DIR"] = dir, h.runDir
		if r.opts.Cleanup {
			defer r.removeJobDir(ctx, h, dir)
		}
		_, err = r.stage(ctx, h, e.Job.ID, dir, je.spec.Transfer)
	}
	if h.window() > 0 {
		defer h.order.done(es.ticket) // if it was never sent
		cmd.OnQueued = func() { h.order.done(es.ticket) }
		if err == nil {
			err = h.order.wait(ctx, es.ticket)
		}
	}
	if err == nil {
		err = h.jobs.Run(ctx, cmd)
	} else {
		fileFailure(ctx, &c, err)
	}
	if t := startedAt.Load(); t != nil {
		// It waited in its host's window: its time (joblog, statistics)
		// runs from when it started there, not from when it was sent.
		c.start = *t
	}
	c.dur = time.Since(c.start)
	if w := c.usage.Wall; w > 0 && w <= time.Since(sent) {
		// The host measured it: the Started frame reached us late
		// (under load, or together with the exit). The execution ended
		// now and ran w. A host's word is taken only within what it
		// can be: no longer than since the job was sent.
		c.dur, c.start = w, time.Now().Add(-w)
	}
	o.close()
	c.output = o.loc
	c.recv = o.rw.bytes + o.sw.bytes
	c.tail = o.sw.Tail()
	if c.err != nil {
		return c // staging failed: the job never ran
	}
	r.classify(ctx, &c, err, o)
	if dir != "" && c.outcome == queue.Succeeded {
		// It succeeds once what it returns is safely on disk.
		n, err := r.fetch(ctx, h, e.Job.ID, dir, je.spec.Return)
		if c.recv += n; err != nil {
			fileFailure(ctx, &c, err)
		}
	}
	return c
}

// killedBy records that dsub ended the execution with sig (TERM, then
// KILL after a grace), as GNU parallel's joblog does for a timeout
// (Exitval -1, Signal 15), unless the host told how it ended.
func (c *completion) killedBy(sig string) {
	if c.signal == "" {
		c.exit, c.signal = -1, sig
	}
}

func recordsErr(e queue.Exec, err error) error {
	return errs.E(errs.OpRecord, e.Host, errs.KindLocal, fmt.Errorf("%w: %v", ErrRecords, err)).WithJob(e.Job.ID)
}

// classify sets c's outcome from how the command ended (err) and what it
// wrote (o).
func (r *Run) classify(ctx context.Context, c *completion, err error, o *jobOutput) {
	var ee *remote.ExitError
	if errors.As(err, &ee) {
		c.exit, c.signal = ee.Status, ee.Signal
	} else if err == nil {
		c.exit = 0
	}
	line, ok, tooLong := o.rw.Result()
	switch {
	case err == nil && o.logErr() == nil && (ok || !r.needResult):
		// A result line is needed only by a reduce that uses it.
		c.outcome = queue.Succeeded
		if ok {
			c.value = ResultValue(line)
		}
	case o.logErr() != nil:
		// As above: the job stays unfinished, for a resume.
		c.outcome, c.err = queue.Canceled, o.logErr()
		c.local = recordsErr(c.e, c.err) // c.err names the log
	case err == nil && tooLong:
		c.outcome, c.err = queue.Failed, fmt.Errorf("result line longer than %d bytes", MaxResultLine)
		c.why = "result line too long"
	case err == nil:
		c.outcome, c.err = queue.Failed, fmt.Errorf("no result: stdout had no non-empty line, and the %s reduce needs one", reducerName(r.opts.Reducer))
		c.why = "no result line"
	case ctx.Err() != nil:
		c.outcome, c.err = queue.Canceled, err
		c.killedBy("TERM")
	case errs.KindOf(err) == errs.KindRemoteExit:
		c.outcome, c.err = queue.Failed, ee
	case errs.KindOf(err) == errs.KindTimeout:
		c.outcome, c.err = queue.Failed, fmt.Errorf("timed out after %s; its remote processes were killed", r.opts.Timeout)
		c.why = "timed out"
		c.killedBy("TERM")
	case errs.KindOf(err) == errs.KindTransport:
		c.outcome, c.err = queue.Lost, err // the host, not the job: requeue for free
		var re *errs.Error
		if errors.As(err, &re) {
			c.pgid = re.PGID
		}
	default:
		c.outcome, c.err = queue.Failed, err
	}
}
