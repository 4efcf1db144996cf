package distributor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

// hook runs a --setup or --teardown command line on h, in its run
// directory, with its output in the run's hosts/<name>/ logs, and
// returns how it ran. err is non-nil when it did not exit 0.
func (r *Run) hook(ctx context.Context, h *runHost, op errs.Op, line string) (records.HookRecord, error) {
	outPath, errPath := r.dir.HookLogs(inventory.DirName(h.m.Name()), string(op))
	rec := records.HookRecord{Exit: -1}
	if err := os.MkdirAll(filepath.Dir(outPath), 0o700); err != nil {
		return rec, recordsErrHost(op, h.m.Name(), err)
	}
	fo, err1 := createPrivate(outPath)
	fe, err2 := createPrivate(errPath)
	if err := errors.Join(err1, err2); err != nil {
		closeAll(fo, fe)
		return rec, recordsErrHost(op, h.m.Name(), err)
	}
	tail := &stderrWriter{progress: new(atomic.Uint64)}
	start := time.Now()
	err := h.m.Host.Run(ctx, &remote.Cmd{
		Shell: line, Dir: h.runDir, Stdout: fo, Stderr: io.MultiWriter(fe, tail),
		// DSUB_RUN: what a hook leaves running is swept with the jobs.
		Env: map[string]string{"DSUB_HOST": h.m.Name(), "DSUB_RUN": r.id},
	})
	rec.Seconds = time.Since(start).Seconds()
	closeAll(fo, fe)
	var ee *remote.ExitError
	switch {
	case err == nil:
		rec.Exit = 0
		return rec, nil
	case errors.As(err, &ee):
		rec.Exit, rec.Signal = ee.Status, ee.Signal
		why := fmt.Sprintf("exited %d", ee.Status)
		if ee.Signal != "" {
			why = "killed by SIG" + ee.Signal
		}
		if t := strings.TrimSpace(tail.Tail()); t != "" {
			why += ": " + t[strings.LastIndexByte(t, '\n')+1:] // its last line
		}
		err = errs.E(op, h.m.Name(), errs.KindRemoteExit, fmt.Errorf("%s (%s)", why, errPath))
	case errs.KindOf(err) == errs.KindTimeout:
		err = errs.E(op, h.m.Name(), errs.KindTimeout, errors.New("did not end in its time and was killed"))
	default:
		err = errs.E(op, h.m.Name(), errs.KindOf(err), err)
	}
	rec.Error = err.Error()
	return rec, err
}

func recordsErrHost(op errs.Op, host string, err error) error {
	return errs.E(op, host, errs.KindLocal, fmt.Errorf("%w: %v", ErrRecords, err))
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}

// setup runs --setup on h, if there is one, and records how it ran.
func (r *Run) setup(ctx context.Context, h *runHost) error {
	if r.opts.Setup == "" {
		return nil
	}
	rec, err := r.hook(ctx, h, errs.OpSetup, r.opts.Setup)
	h.rec.Setup = &rec
	r.setHostRecord(h.m.Name(), func(hr *records.HostRecord) { hr.Setup = &rec })
	if err == nil {
		r.mu.Lock()
		if r.setUp == nil {
			r.setUp = map[string]*runHost{}
		}
		r.setUp[h.m.Name()] = h
		r.mu.Unlock()
	}
	return err
}

// teardownHosts runs --teardown on every host that was prepared or whose
// setup ran (a preparation the run's end cut short may have set a host up),
// at once, each bounded by TeardownTimeout, whatever ended the run: best
// effort, a failure is a warning.
func (d *dispatcher) teardownHosts(gone map[string]bool) {
	r := d.r
	if r.opts.Teardown == "" {
		return
	}
	limit := r.opts.TeardownTimeout
	if limit <= 0 {
		limit = time.Minute
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(d.ctx), limit)
	defer cancel()
	hosts := map[string]*runHost{}
	r.mu.Lock()
	for name, h := range r.setUp {
		hosts[name] = h
	}
	r.mu.Unlock()
	for name, h := range d.hosts {
		hosts[name] = h
	}
	for name := range gone {
		delete(hosts, name) // lost and not back: not waited for
	}
	var wg sync.WaitGroup
	for _, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := r.hook(ctx, h, errs.OpTeardown, r.opts.Teardown)
			r.setHostRecord(h.m.Name(), func(hr *records.HostRecord) { hr.Teardown = &rec })
			if err != nil {
				r.opts.Warn(err.Error())
			}
		}()
	}
	wg.Wait()
}
