package distributor

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
)

// runHost is a prepared host.
type runHost struct {
	m       *Member
	jobs    remote.Host // how jobs reach the host: m.Host, or its agent (launch.go)
	slots   int
	binPath string // absolute remote path of the binary ("" in shell mode)
	binSHA  string
	runDir  string // absolute remote run directory
	rec     records.HostRecord

	noWindow bool      // RunOptions.SlotNumbers
	order    sendOrder // with a window: jobs reach the host as assigned

	mu     sync.Mutex      // guards inSlot and files
	inSlot []bool          // {%}: which of the host's slots run a job (slots.go)
	files  map[string]bool // transferred contents this run put in its cache (jobfiles.go)
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

// adminTimeout bounds each of a run's own sessions on a host (describe,
// sweeps), so that a host that hangs after logging in holds nothing.
const adminTimeout = 2 * time.Minute

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
	b := r.backoff()
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
		if k := errs.KindOf(err); ctx.Err() != nil || (k != errs.KindTransport && k != errs.KindTimeout) {
			pe := &prepError{host: m.Name(), err: err}
			select {
			case r.prepFail <- pe:
			case <-r.loopDone:
				// The run ended first (its other hosts did every job):
				// still say why this one was left out.
				if ctx.Err() == nil {
					r.opts.Warn(pe.Error())
					r.setHostRecord(pe.host, func(rec *records.HostRecord) { rec.Error = pe.Error() })
				}
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
		if !b.wait(ctx) {
			return
		}
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
	info, err := m.Host.Describe(dctx, m.Inv.Workdir, path.Join(m.Inv.Workdir, "runs", r.id))
	cancel()
	if err != nil {
		return nil, err
	}
	wd := absWorkdir(m.Inv.Workdir, info.Home)
	h := &runHost{m: m, slots: m.Inv.Slots, runDir: path.Join(wd, "runs", r.id), noWindow: r.opts.SlotNumbers}
	if r.opts.ResumeDir != "" {
		// The crashed or interrupted master's jobs may still run in the
		// run directory, which a resumed run shares: their results would
		// go nowhere, so kill them before new ones start.
		kctx, cancel := context.WithTimeout(ctx, adminTimeout)
		n, err := m.Host.KillMarked(kctx, r.marker(h.runDir))
		cancel()
		if err != nil {
			return nil, errs.E(errs.OpKill, m.Name(), errs.KindOf(err), fmt.Errorf("the previous master's jobs: %w", err)).WithPath(h.runDir)
		}
		if n > 0 {
			r.opts.Warn(fmt.Sprintf("host %s: killed %d jobs of the previous master, still running in %s", m.Name(), n, h.runDir))
		}
	}
	if h.slots == 0 {
		h.slots = max(info.CPUs, 1)
	}
	h.rec = records.HostRecord{Name: m.Name(), Address: m.Inv.Address, OS: info.OS, Arch: info.Arch, CPUs: info.CPUs, Slots: h.slots}
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
			return nil, errs.E(errs.OpShip, m.Name(), errs.KindOf(err), err).WithPath(h.binPath)
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
			return nil, errs.E(errs.OpShip, m.Name(), errs.KindOf(err), err).WithPath(f)
		}
		h.rec.Sent += n
	}
	if err := r.setup(ctx, h); err != nil {
		return nil, err
	}
	if err := r.launch(ctx, h, wd); err != nil {
		return nil, err
	}
	_ = h.beat(ctx) // best effort: a host that cannot take it cannot run jobs either
	return h, nil
}

// reconnect brings a lost host back with backoff: a fresh connection
// (host key checked again, so a host whose key changed never re-joins).
// The SSHHost drops dead connections itself, so reconnecting is asking it
// to connect again.
//
// An agent host is prepared again instead: its agent, on losing its
// master, killed its jobs and removed the run directory, which the
// preparation recreates (with the files shipped there) before a new agent
// starts.
func (r *Run) reconnect(ctx context.Context, h *runHost) {
	b := r.backoff()
	for b.wait(ctx) {
		var err error
		if h.rec.Launcher == LaunchAgent {
			var nh *runHost
			if nh, err = r.prepareHost(ctx, h.m); err == nil {
				h.closeAgent()
				r.offer(nh)
				return
			}
		} else {
			cctx, cancel := context.WithTimeout(ctx, h.m.Timeout)
			err = h.jobs.Connect(cctx)
			cancel()
			if err == nil {
				// It may have lost what setup made (a reboot): again.
				if err = r.setup(ctx, h); err == nil {
					r.offer(h)
					return
				}
				if k := errs.KindOf(err); k != errs.KindTransport && k != errs.KindTimeout {
					r.opts.Warn(fmt.Sprintf("host %s will not re-join: %v", h.m.Name(), err))
					return
				}
			}
		}
		if errs.KindOf(err) == errs.KindHostKey {
			r.opts.Warn(fmt.Sprintf("host %s will not re-join: %v", h.m.Name(), err))
			return
		}
	}
}

// backoff spaces out a host's connection attempts: the delay doubles
// from retryMin up to 30 s.
type backoff struct {
	next time.Duration
	stop <-chan struct{} // the run's end
}

func (r *Run) backoff() *backoff { return &backoff{next: r.retryMin, stop: r.loopDone} }

// wait sleeps for the next delay and reports whether to try again: false
// once ctx is done or the run has ended.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, 30*time.Second)
	select {
	case <-t.C:
		return true
	case <-b.stop:
	case <-ctx.Done():
	}
	return false
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
func (r *Run) setHostRecord(name string, f func(*records.HostRecord)) {
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
			bctx, cancelBeat := context.WithTimeout(ectx, h.m.Timeout)
			_ = h.beat(bctx)
			cancelBeat()
			cancel()
		}
	}
}
