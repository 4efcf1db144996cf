package distributor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

// teardown ends the run: kills what still runs, commits the last results,
// waits for preparations and sweeps, cleans up every host, closes the
// records and computes the statistics and the reduced result.
func (d *dispatcher) teardown() {
	r := d.r
	d.publish()
	// A host lost and not back is not waited for: the run ends when its
	// work is done. What its lost executions left there, and its run
	// directory, are recorded as not cleaned; the next run there (which
	// kills a previous master's jobs) or dsub clean sweeps them.
	gone := map[string]bool{}
	for _, name := range d.order {
		// Lost: it had joined (a host still preparing is not: its
		// preparation is waited for below, and it is torn down).
		if d.hosts[name] != nil && d.q.HostState(name) == queue.Down {
			gone[name] = true
		}
	}
	for name, pg := range d.orphans.lost {
		if h := d.hosts[name]; h != nil && !gone[name] {
			d.reap(h, pg, false, 10*time.Second, nil)
		}
	}
	d.cancelJobs()
	close(r.loopDone)
	d.commit()
	d.publish() // the last results reduced: the final page's value
	d.waitPreparations()
	d.orphanWG.Wait()
	d.liveWG.Wait() // no beat may recreate a file after the cleanup below
	r.cleanups.Wait()
	d.teardownHosts(gone) // before the agents go: each removes its run directory
	for _, h := range d.hosts {
		h.closeAgent() // it kills what still runs there, and exits
	}
	d.cleanupHosts(gone)
	_ = d.jl.Close()
	if err := r.streams.Close(); err != nil {
		d.jrn.Poison(err) // the results waiting may locate output that is not on disk
		if r.err == nil {
			r.err = fmt.Errorf("%w: output streams in %s: %v", ErrRecords, r.dir.Output(), err)
		}
	}
	if err := d.jrn.Close(); err != nil && r.err == nil {
		r.err = err
	}
	if r.tmpDir != "" {
		os.RemoveAll(r.tmpDir)
	}
	st := d.stats()
	r.stats = st
	d.settle()
	_ = r.writeManifest(st)
}

// waitPreparations waits for preparations still running, so that none
// creates a run directory after the cleanup: up to 30 s to finish
// (completing the cache), then cancelled.
func (d *dispatcher) waitPreparations() {
	prepDone := make(chan struct{})
	go func() { d.r.prepWG.Wait(); close(prepDone) }()
	select {
	case <-prepDone:
	case <-time.After(30 * time.Second):
		d.cancelPrep()
		<-prepDone
	}
}

// cleanupHosts cleans up the remote run directories, on every host that
// may have one but those gone (lost and not back: they are recorded as
// not cleaned, and not waited for), with a deadline: it kills what jobs
// left running in the run directory (background children, which outlive
// a job's exit), then, unless KeepRemote, removes the directory.
func (d *dispatcher) cleanupHosts(gone map[string]bool) {
	r := d.r
	cctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range r.c.members {
		h := d.hosts[m.Name()]
		if h == nil && !m.Host.Connected() {
			continue // never prepared, and no connection now: nothing to clean, or no way to
		}
		if gone[m.Name()] {
			if h != nil && h.runDir != "" {
				dir := h.runDir
				r.setHostRecord(m.Name(), func(hr *records.HostRecord) { hr.Uncleaned = dir })
				r.opts.Warn(fmt.Sprintf("host %s is lost: %s is left there, uncleaned, with what its jobs left running; the next run there, or a clean of its runs, sweeps them", m.Name(), dir))
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			dir := r.remoteRunDir(cctx, m, h)
			if h != nil {
				n, err := m.Host.KillMarked(cctx, r.marker(dir))
				if err != nil {
					r.opts.Warn(fmt.Sprintf("clean up %s on %s: %v", dir, m.Name(), err))
				}
				if n > 0 {
					r.opts.Warn(fmt.Sprintf("host %s: killed %d process groups that jobs left running in %s", m.Name(), n, dir))
				}
			}
			var err error
			if !r.opts.KeepRemote {
				err = m.Host.RemoveAll(cctx, dir)
			} else if h != nil {
				// Kept for inspection, but no longer live: Clean may take it.
				if err = m.Host.Remove(cctx, path.Join(dir, liveFile)); errors.Is(err, fs.ErrNotExist) {
					err = nil
				}
			}
			if err != nil {
				r.opts.Warn(fmt.Sprintf("clean up %s on %s: %v", dir, m.Name(), err))
			}
		}()
	}
	wg.Wait()
}

// stats are the run's figures.
func (d *dispatcher) stats() *records.Stats {
	r := d.r
	st := &records.Stats{Jobs: d.nextID, Succeeded: d.q.Succeeded() + d.resumed - countFailed(r.journaled, d.nextID, r.opts.ResumeFailed), Failed: d.failedJobs,
		Resumed: d.resumed, Wall: time.Since(r.start).Seconds(), Backups: d.sp.started, BackupsWon: d.sp.won}
	for _, name := range d.order {
		t := d.tally[name]
		if t.slots == 0 && t.done == 0 {
			st.Unused = append(st.Unused, records.UnusedHost{Name: name, State: t.state})
			continue // never took part
		}
		hs := records.HostStats{Name: name, Jobs: t.done, JobTime: t.jobTime.Seconds(), Failed: t.fails, Lost: t.lost, Slots: t.slots, State: t.state,
			CPU: t.cpu, Launcher: t.launcher}
		if rh := d.hosts[name]; rh != nil {
			if hr, ok := rh.jobs.(remote.HealthReporter); ok {
				if h, ok := hr.Health(); ok {
					load := h.Load1
					hs.Load1, hs.MemAvailKB, hs.MemTotalKB = &load, h.MemAvail>>10, h.MemTotal>>10
				}
			}
		}
		st.Hosts = append(st.Hosts, hs)
	}
	return st
}

// settle decides the run's error and reduced result.
func (d *dispatcher) settle() {
	r := d.r
	if r.err == nil && !d.interrupted && r.opts.ResumeDir != "" {
		for job := range r.journaled {
			if job > d.nextID {
				r.err = errs.E(errs.OpResume, "", errs.KindConfig, fmt.Errorf("the input now has %d jobs but the run recorded job %d: the input changed", d.nextID, job)).WithPath(string(r.dir))
				break
			}
		}
	}
	if d.halted && r.err == nil {
		jobs := "jobs"
		if d.failedJobs == 1 {
			jobs = "job"
		}
		r.err = fmt.Errorf("%w: %d %s failed (halt after %d)", ErrHalted, d.failedJobs, jobs, r.opts.HaltAfter)
	}
	if d.interrupted && r.err == nil {
		r.err = fmt.Errorf("run interrupted: %w", context.Cause(d.ctx))
	}
	// A reduce over some of the jobs would be silently wrong: the result
	// is reduced only when every job succeeded.
	if r.err == nil && r.opts.Reducer != nil && len(d.reduceErrs) == 0 && d.failedJobs == 0 {
		res, err := r.opts.Reducer.Result(context.WithoutCancel(d.ctx))
		if err != nil {
			r.err = err
		}
		r.result = res
	}
	if len(d.reduceErrs) > 0 && r.err == nil {
		r.err = fmt.Errorf("%d results could not be reduced:\n  %s", len(d.reduceErrs), strings.Join(d.reduceErrs, "\n  "))
	}
}

// countFailed counts the recorded failures among the first n jobs that a
// resumed run took over as they were.
func countFailed(recs map[int]records.JournalRecord, n int, rerun bool) int {
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
