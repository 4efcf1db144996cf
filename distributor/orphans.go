package distributor

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/remote"
)

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

// orphans are executions lost with their host, which may still run there.
// When the host re-joins with none of this run's executions on it,
// everything in the run directory there is killed before it takes jobs
// again (sweeping); if some still run (another connection survived), only
// the process groups that were reported. Hosts with lost executions are
// swept once more at the end of the run.
type orphans struct {
	lost     map[string][]int // host → reported process groups (the key alone: lost, none reported)
	sweeping map[string]bool  // hosts kept down until their sweep is done
}

// rejoin takes back a host that was lost, sweeping first if nothing of
// the run should be running there.
func (d *dispatcher) rejoin(h *runHost) {
	name := h.m.Name()
	if pg, lost := d.orphans.lost[name]; lost && d.q.RunningOn(name) == 0 {
		// Back, with nothing of ours meant to run there: sweep the run
		// directory's processes, then take jobs (the sweep sends the host
		// here again).
		delete(d.orphans.lost, name)
		d.orphans.sweeping[name] = true
		d.r.opts.Warn(fmt.Sprintf("host %s is back", name))
		d.reap(h, pg, true, 30*time.Second, func() { d.r.offer(h) })
		return
	}
	_ = d.q.SetHostState(name, queue.Up)
	if d.orphans.sweeping[name] {
		delete(d.orphans.sweeping, name)
		return
	}
	d.r.opts.Warn(fmt.Sprintf("host %s is back", name))
	if pg := d.orphans.lost[name]; len(pg) > 0 {
		// Some executions still run there: kill only the groups reported
		// lost; the host stays in orphans for the sweep at the end.
		d.orphans.lost[name] = nil
		d.reap(h, pg, false, 30*time.Second, nil)
	}
}

// reap kills, in the background, what lost executions left on h, within
// a bound, then calls then.
func (d *dispatcher) reap(h *runHost, pgids []int, sweep bool, within time.Duration, then func()) {
	d.orphanWG.Add(1)
	go func() {
		defer d.orphanWG.Done()
		// Not cancelled with the run: killing leftovers is part of
		// stopping cleanly. Bounded instead.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), within)
		d.r.reapOrphans(rctx, h, pgids, sweep)
		cancel()
		if then != nil {
			then()
		}
	}()
}
