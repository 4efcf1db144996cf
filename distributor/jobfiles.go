package distributor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/remote"
)

// Per-job files (RunOptions.JobDirs): a job's own directory on its host,
// its transfers in and its returns out.

// jobDir is execution e's own directory on h.
func jobDir(h *runHost, job, seq int) string {
	return path.Join(h.runDir, "jobs", strconv.Itoa(job)+"."+strconv.Itoa(seq))
}

// inputs memoizes the hashes of transferred files: a file given to many
// jobs is hashed once.
type inputs struct {
	mu   sync.Mutex
	arts map[string]artifact
}

func (in *inputs) get(p string) (artifact, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if a, ok := in.arts[p]; ok {
		return a, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return artifact{}, err
	}
	if !fi.Mode().IsRegular() {
		return artifact{}, fmt.Errorf("%s: not a regular file", p)
	}
	a, err := hashFile(p)
	if err != nil {
		return artifact{}, err
	}
	if in.arts == nil {
		in.arts = map[string]artifact{}
	}
	in.arts[p] = a
	return a, nil
}

// openRegular opens p, which must be a regular file.
func openRegular(p string) (*os.File, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("%s: not a regular file", p)
		}
		return nil, err
	}
	return f, nil
}

// cached reports whether this run has put content sha in h's cache.
func (h *runHost) cached(sha string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.files[sha]
}

func (h *runHost) setCached(sha string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.files == nil {
		h.files = map[string]bool{}
	}
	h.files[sha] = true
}

// stage makes job's directory dir on h and puts its transfers there: as
// links to the content cache (uploaded once per content and host,
// read-only), or, with Cleanup, uploaded into dir itself. It returns the
// bytes sent.
func (r *Run) stage(ctx context.Context, h *runHost, job int, dir string, transfer []string) (int64, error) {
	fail := func(p string, err error) error {
		kind := errs.KindOf(err)
		if kind == errs.KindOther && !errors.As(err, new(*errs.Error)) {
			kind = errs.KindConfig // the input: a missing or unreadable file
		}
		return errs.E(errs.OpTransfer, h.m.Name(), kind, err).WithPath(p).WithJob(job)
	}
	if !r.opts.Cleanup || len(transfer) == 0 {
		// (An upload makes its directory itself.)
		if err := h.m.Host.MkdirAll(ctx, dir); err != nil {
			return 0, fail(dir, err)
		}
	}
	var sent int64
	seen := map[string]string{}
	for _, p := range transfer {
		base := filepath.Base(p)
		if prev, dup := seen[base]; dup && prev != p {
			return sent, fail(p, fmt.Errorf("%s and %s have one base name: they would be one file in the job's directory", prev, p))
		}
		seen[base] = p
		if r.opts.Cleanup {
			// Uploaded as it is, not cached: no need of its hash.
			f, err := openRegular(p)
			if err != nil {
				return sent, fail(p, err)
			}
			n, err := h.m.Host.Upload(ctx, path.Join(dir, base), f, 0o400)
			f.Close()
			if sent += n; err != nil {
				return sent, fail(p, err)
			}
			continue
		}
		art, err := r.inputs.get(p)
		if err != nil {
			return sent, fail(p, err)
		}
		cache := path.Join(path.Dir(path.Dir(h.runDir)), "files", art.SHA256)
		if !h.cached(art.SHA256) {
			// Once per content and host in a run: later jobs link it.
			n, err := ensureRemote(ctx, h.m.Host, art, cache, 0o400)
			if sent += n; err != nil {
				return sent, fail(p, err)
			}
			h.setCached(art.SHA256)
		}
		if err := h.m.Host.Symlink(ctx, cache, path.Join(dir, base)); err != nil {
			return sent, fail(p, err)
		}
	}
	return sent, nil
}

// fetch downloads job's returns from dir on h into its local destination,
// each to a temporary name, synced, then renamed: a returned file is
// whole on disk or absent. A return that would land outside the
// destination, or that the job did not write, fails the job, and the
// returns fetched before it are removed: all of a job's, or none.
func (r *Run) fetch(ctx context.Context, h *runHost, job int, dir string, returns []string) (int64, error) {
	dest := r.opts.ReturnDir
	perm := fs.FileMode(0o644)
	if dest == "" {
		dest, perm = r.dir.Returned(job), 0o600 // records are private
	}
	fail := func(p string, kind errs.Kind, err error) error {
		return errs.E(errs.OpReturn, h.m.Name(), kind, err).WithPath(p).WithJob(job)
	}
	if len(returns) == 0 {
		return 0, nil
	}
	if err := os.MkdirAll(dest, 0o700); err != nil {
		return 0, fail(dest, errs.KindLocal, err)
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return 0, fail(dest, errs.KindLocal, err)
	}
	defer root.Close()
	var got int64
	var written []string
	for _, p := range returns {
		if !filepath.IsLocal(p) {
			err := fail(p, errs.KindConfig, errors.New("a returned file must be a path inside the job's directory"))
			return got, r.unfetch(root, job, written, err)
		}
		if r.opts.ReturnDir != "" {
			if other := r.claimReturn(p, job); other != 0 {
				err := fail(filepath.Join(dest, p), errs.KindConfig, fmt.Errorf("job %d returned a file of that name to the shared return directory first; this one would replace it", other))
				return got, r.unfetch(root, job, written, err)
			}
		}
		n, err := fetchOne(ctx, h.m.Host, root, path.Join(dir, p), p, perm)
		got += n
		switch {
		case errs.KindOf(err) == errs.KindLocal:
			err = fail(filepath.Join(dest, p), errs.KindLocal, errors.Unwrap(err))
		case errors.Is(err, fs.ErrNotExist):
			err = fail(p, errs.KindRemoteExit, fmt.Errorf("the job did not write it (%v)", err))
		case err != nil:
			err = fail(p, errs.KindOf(err), err)
		}
		if err != nil {
			return got, r.unfetch(root, job, written, err)
		}
		written = append(written, p)
	}
	return got, nil
}

// unfetch removes the returns job had fetched before one failed: a job
// that did not succeed leaves none of them behind. It removes only what
// this job put in place (in a shared --return-dir, another job's file of
// the same name is never its). It returns err.
func (r *Run) unfetch(root *os.Root, job int, written []string, err error) error {
	for _, p := range written {
		_ = root.Remove(p)
		if r.opts.ReturnDir != "" {
			r.releaseReturn(p, job)
		}
	}
	return err
}

// claimReturn makes job the owner of p in the shared ReturnDir, unless
// another job owns it: then it returns that job.
func (r *Run) claimReturn(p string, job int) int {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	if r.returned == nil {
		r.returned = map[string]int{}
	}
	if other, ok := r.returned[p]; ok && other != job {
		return other
	}
	r.returned[p] = job
	return 0
}

func (r *Run) releaseReturn(p string, job int) {
	r.retMu.Lock()
	defer r.retMu.Unlock()
	if r.returned[p] == job {
		delete(r.returned, p)
	}
}

// fetchOne copies the remote file src to local (relative to root) via a
// temporary name, synced, then renamed.
func fetchOne(ctx context.Context, h remote.Host, root *os.Root, src, local string, perm fs.FileMode) (int64, error) {
	// A failure of the master's own disk is KindLocal; fetchOne's caller
	// names the operation and path.
	localErr := func(err error) error { return errs.E("", "", errs.KindLocal, err) }
	if d := filepath.Dir(local); d != "." {
		if err := root.MkdirAll(d, 0o700); err != nil {
			return 0, localErr(err)
		}
	}
	tmp := filepath.Join(filepath.Dir(local), "."+filepath.Base(local)+".dsub-part-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, localErr(err)
	}
	n, err := h.Download(ctx, src, f)
	if err == nil {
		if err = f.Sync(); err != nil {
			err = localErr(err)
		}
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = localErr(cerr)
	}
	if err == nil {
		if err = root.Rename(tmp, local); err != nil {
			err = localErr(err)
		}
	}
	if err != nil {
		_ = root.Remove(tmp)
	}
	return n, err
}

// fileFailure sets c's outcome after staging or fetching failed with err:
// the host's failure is a lost execution (requeued), the master's disk
// stops the run (as for its records), anything else fails the job.
func fileFailure(ctx context.Context, c *completion, err error) {
	switch kind := errs.KindOf(err); {
	case ctx.Err() != nil:
		c.outcome, c.err = queue.Canceled, err
	case kind == errs.KindTransport:
		c.outcome, c.err = queue.Lost, err
	case kind == errs.KindLocal:
		c.outcome, c.err, c.local = queue.Canceled, err, err
	default:
		c.outcome, c.err = queue.Failed, err
		c.why = string(errs.OpOf(err)) + " failed"
	}
}

// removeJobDir removes a job's directory once it has ended (Cleanup):
// best effort, bounded, and in the background, so that the job's slot
// is free at once; the run's end waits for it.
func (r *Run) removeJobDir(ctx context.Context, h *runHost, dir string) {
	r.cleanups.Add(1)
	go func() {
		defer r.cleanups.Done()
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminTimeout)
		defer cancel()
		// Through the job launcher: an agent runs it without the cost of
		// a session. (dir is the job's own, under the run directory.)
		if err := h.jobs.Run(cctx, &remote.Cmd{Argv: []string{"rm", "-rf", "--", dir}, Env: map[string]string{"DSUB_RUN": r.id}}); err != nil {
			r.opts.Warn(fmt.Sprintf("cleanup of %s on %s: %v", dir, h.m.Name(), err))
		}
	}()
}
