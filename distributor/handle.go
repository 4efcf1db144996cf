package distributor

import (
	"fmt"

	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/records"
)

// onFinished handles an execution's end, and every other one already
// waiting, then commits if many results wait.
func (d *dispatcher) onFinished(c completion) {
	d.handle(c)
	for {
		select {
		case c := <-d.r.finished:
			d.handle(c)
		default:
			if len(d.emit) >= 256 {
				d.commit()
			}
			return
		}
	}
}

// handle settles one execution: the queue's disposition, the joblog row,
// the logs' final names, the result or failure, and the host's fate.
func (d *dispatcher) handle(c completion) {
	if c.local != nil {
		d.stopRecords(c.local)
	}
	if c.outcome == queue.Lost {
		d.orphans.lost[c.e.Host] = append(d.orphans.lost[c.e.Host], c.pgid)
	}
	es := d.running[c.e.Seq]
	es.cancel()
	delete(d.running, c.e.Seq)
	if es.takenBack && c.outcome == queue.Canceled {
		c.outcome = queue.Returned // it waited in the host's window: run it elsewhere
	}
	disp := d.q.Finish(c.e, c.outcome)
	row := records.JoblogRow{Job: c.e.Job.ID, Host: c.e.Host, Start: c.start, Runtime: c.dur, Receive: c.recv,
		Exit: c.exit, Signal: c.signal, Command: c.command, Outcome: joblogOutcome(c, disp)}
	if started(c, es) {
		// GNU parallel's joblog: no row for an execution that will run
		// again (a retried failure, a lost host's, one taken back just as
		// it started); executions.tsv has them all.
		_ = d.jl.Write(row, disp != queue.Requeued)
	}
	t := d.tally[c.e.Host]
	t.cpu += c.usage.User + c.usage.Sys
	switch c.outcome {
	case queue.Failed:
		t.fails++
	case queue.Lost:
		t.lost++
	}
	switch disp {
	case queue.Recorded:
		t.done++
		t.jobTime += c.dur
		d.record(c, es)
	case queue.GaveUp:
		if d.cancelled[c.e.Job.ID] {
			c.err = canceledErr(c.e.Host, c.e.Job.ID)
		}
		d.giveUp(c)
	case queue.Requeued:
		if c.outcome == queue.Failed {
			d.r.opts.Warn(fmt.Sprintf("job %d failed on %s (%v); retrying (attempt %d of %d)", c.e.Job.ID, c.e.Host, c.err, c.e.Attempt+1, d.r.opts.Retries+1))
		}
	}
	d.hostAfter(c)
	d.endEvent(c, es, row)
}

// endEvent reports an execution's end.
func (d *dispatcher) endEvent(c completion, es *execState, row records.JoblogRow) {
	d.r.event(Event{Kind: Ended, Seq: c.e.Seq, Job: c.e.Job.ID, Host: c.e.Host, Attempt: c.e.Attempt, Backup: es.backup,
		Time: c.start.Add(c.dur), Outcome: row.Outcome, Exit: c.exit, Signal: c.signal, Duration: c.dur, StderrTail: c.tail, Output: c.output})
}

// started reports whether an execution started: one taken back from an
// agent's window, or lost with its host before it started, did not, and
// has no row in the joblog or executions.tsv. Of those that did, GNU
// parallel's joblog has a row for each but those that will run again:
// parallel --retries writes one row per job, the attempt that settles it
// (executions.tsv has them all).
func started(c completion, es *execState) bool {
	return es.started.Load() || c.pgid != 0
}

// joblogOutcome is the joblog's Outcome column for an execution.
func joblogOutcome(c completion, disp queue.Disposition) string {
	outcome := disp.String()
	switch {
	case c.outcome == queue.Lost && disp == queue.Requeued:
		outcome = "lost"
	case c.outcome == queue.Canceled && disp == queue.Discarded:
		outcome = "superseded" // killed: another execution won
	case c.outcome == queue.Returned && disp == queue.Requeued:
		outcome = "returned" // taken back from the host's window before it started
	}
	if c.why != "" && c.outcome == queue.Failed {
		outcome += ": " + c.why
	}
	return outcome
}

// record journals a job's result; commit makes it count. The first
// result wins: any other execution of the job is killed.
func (d *dispatcher) record(c completion, es *execState) {
	d.sp.done(c.dur, es.backup)
	for _, o := range d.running {
		if o.job == c.e.Job.ID {
			o.cancel()
		}
	}
	je := d.jobs[c.e.Job.ID]
	d.jrn.Append(&records.JournalRecord{Job: c.e.Job.ID, ID: je.id, Host: c.e.Host, Attempt: c.e.Attempt, Result: c.value, Duration: c.dur.Seconds(),
		CPU: c.usage.User + c.usage.Sys, MaxRSS: c.usage.MaxRSS, Output: c.output})
	d.emit = append(d.emit, Result{Job: c.e.Job.ID, Host: c.e.Host, Attempt: c.e.Attempt, Value: c.value,
		Duration: c.dur, Output: c.output, StderrTail: c.tail})
	delete(d.jobs, c.e.Job.ID)
}

// giveUp journals and reports a job that failed for good.
func (d *dispatcher) giveUp(c completion) {
	d.failedJobs++
	je := d.jobs[c.e.Job.ID]
	d.jrn.Append(&records.JournalRecord{Job: c.e.Job.ID, ID: je.id, Host: c.e.Host, Attempt: c.e.Attempt, Duration: c.dur.Seconds(),
		Failed: true, Error: fmt.Sprint(c.err), Output: c.output})
	// Reported once committed, as a result is: its output is on disk
	// by then, for whoever reads it.
	d.emit = append(d.emit, Result{Job: c.e.Job.ID, Host: c.e.Host, Attempt: c.e.Attempt, Err: c.err, Exit: c.exit,
		Duration: c.dur, Output: c.output, StderrTail: c.tail})
	delete(d.jobs, c.e.Job.ID)
}

// hostAfter takes a host whose execution was lost out of the run (and
// tries to get it back), and notes a quarantine.
func (d *dispatcher) hostAfter(c completion) {
	t := d.tally[c.e.Host]
	if c.outcome == queue.Lost && d.q.HostState(c.e.Host) == queue.Up {
		_ = d.q.SetHostState(c.e.Host, queue.Down)
		t.state = records.HostDown
		d.r.opts.Warn(fmt.Sprintf("host %s lost (%v); its jobs go to other hosts", c.e.Host, c.err))
		go d.r.reconnect(d.runCtx, d.hosts[c.e.Host])
	}
	if d.q.HostState(c.e.Host) == queue.Quarantined && t.state != records.HostQuarantined {
		t.state = records.HostQuarantined
		d.failPinned(c.e.Host, "was quarantined")
		d.r.opts.Warn(fmt.Sprintf("host %s quarantined after %d consecutive failed jobs", c.e.Host, d.r.opts.QuarantineAfter))
	}
}

// onReady takes a host that was prepared, or that came back.
func (d *dispatcher) onReady(h *runHost) {
	name := h.m.Name()
	if _, known := d.hosts[name]; !known {
		d.join(h)
	} else {
		d.hosts[name] = h // a host prepared again (agent mode) replaces the lost one
		d.rejoin(h)
	}
	d.tally[name].state, d.tally[name].slots = records.HostState(d.q.HostState(name).String()), h.slots
}

// join adds a newly prepared host.
func (d *dispatcher) join(h *runHost) {
	r, name := d.r, h.m.Name()
	now := d.now()
	r.event(Event{Kind: Prepared, Host: name, Time: now})
	h.rec.ReadyS = now.Sub(r.start).Seconds() // run.json gets h.rec below
	if d.deferred[name] {
		r.opts.Warn(fmt.Sprintf("host %s joined the run", name))
	} else {
		d.preparing--
		d.markReady()
	}
	d.hosts[name] = h
	d.tally[name].launcher = h.rec.Launcher
	d.liveWG.Add(1)
	go func() { defer d.liveWG.Done(); r.keepAlive(d.ctx, h) }()
	_ = d.q.SetSlots(name, h.slots+h.window())
	_ = d.q.SetHostState(name, queue.Up)
	r.setHostRecord(name, func(rec *records.HostRecord) { *rec = h.rec })
}
