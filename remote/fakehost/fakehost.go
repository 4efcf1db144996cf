// Package fakehost is an in-memory remote.Host, a sibling of
// remote.SSHHost, for testing engine logic without sshd: deterministic,
// fast, and scriptable.
//
// Jobs are Go funcs (JobFunc). A job is a Run whose Cmd.Env has DSUB_JOB;
// any other command (a liveness beat, a hash) is an admin command, handled
// by AdminFunc (by default it succeeds and prints nothing). Files live in
// a map. Faults are methods: Lose (the connection drops: in-flight
// commands fail as transport errors while their processes live on, until
// Restore), Hang (the host stops answering; the transport notices after a
// window, as SSH keepalives would), and Down (connects are refused).
//
// The fake keeps remote.Host's contract: a cancelled Run kills its process
// before returning, a lost one does not, and KillOrphan and KillMarked
// kill only what carries the marker. Live() lists the processes still
// running, so tests can check that nothing was left behind.
package fakehost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// Home is every fake host's home directory.
const Home = "/home/fake"

// Proc is one fake remote process: a job's execution.
type Proc struct {
	Host    string
	PGID    int
	Job     int // DSUB_JOB
	Attempt int // DSUB_ATTEMPT
	Cmd     *remote.Cmd
	Started time.Time

	ctx    context.Context // done when the process is killed
	kill   context.CancelFunc
	exited chan struct{}
}

// Killed is done when the process has been killed.
func (p *Proc) Killed() <-chan struct{} { return p.ctx.Done() }

// Env returns the value of the job's environment variable k.
func (p *Proc) Env(k string) string { return p.Cmd.Env[k] }

// Printf writes to the job's stdout.
func (p *Proc) Printf(format string, a ...any) { fmt.Fprintf(p.Cmd.Stdout, format, a...) }

// JobFunc is what a job does: it writes to p.Cmd.Stdout and Stderr and
// returns nil (exit 0) or Exit(n). It must return once ctx is done (the
// process was killed), unless it models a job that finished before the
// kill landed: what it returns then is what the master sees.
type JobFunc func(ctx context.Context, p *Proc) error

// Exit is the error of a job that exited with status n.
func Exit(n int) error { return &remote.ExitError{Status: n} }

// Print is a JobFunc that prints s and exits 0.
func Print(s string) JobFunc {
	return func(ctx context.Context, p *Proc) error {
		io.WriteString(p.Cmd.Stdout, s)
		return nil
	}
}

// Options configure a fake host.
type Options struct {
	Info remote.Info // default linux/amd64, 2 CPUs, Home
	Job  JobFunc     // default Print("1\n")
	// Admin handles commands that are not jobs; default: succeed.
	Admin func(ctx context.Context, c *remote.Cmd) error
	// HangDetect is how long a hung host takes to be noticed (the SSH
	// keepalive window); default 100 ms.
	HangDetect time.Duration
	// LoseAtJob drops the connection when the host starts its n-th job
	// (1-based; 0: never). The job's process keeps running.
	LoseAtJob int
	// Slots, if positive, bounds the jobs running at once: more wait in
	// the order they reach the host, as at an agent. Cmd.OnQueued is
	// called when a job reaches the host, and Cmd.OnStart when it starts.
	Slots int
	// Transit, if set, is how long job n takes to reach a host with Slots
	// once Run is called (an agent's start frame on its way).
	Transit func(job int) time.Duration
	// Health, if set, is what the host reports as its load and memory
	// (remote.HealthReporter), as an agent's heartbeats do.
	Health *remote.Health
}

// Host is a fake host. The zero value is not usable: call New.
type Host struct {
	name string
	opts Options

	mu       sync.Mutex
	files    map[string]*file
	down     bool          // connects and commands fail (transport)
	refuse   error         // every operation fails with it (Refuse)
	lost     chan struct{} // closed when the connection drops
	hung     bool
	closed   bool
	nextPG   int
	live     map[int]*Proc
	started  int // jobs started
	admin    []string
	connects int
	busy     int             // jobs holding one of Options.Slots
	waiting  []chan struct{} // jobs waiting for a slot, first first
}

// New makes a fake host named name.
func New(name string, opts Options) *Host {
	if opts.Info.OS == "" {
		opts.Info = remote.Info{OS: "linux", Arch: "amd64", CPUs: 2}
	}
	if opts.Info.Home == "" {
		opts.Info.Home = Home
	}
	if opts.Job == nil {
		opts.Job = Print("1\n")
	}
	if opts.HangDetect == 0 {
		opts.HangDetect = 100 * time.Millisecond
	}
	return &Host{name: name, opts: opts, files: map[string]*file{"/": {dir: true, mode: fs.ModeDir | 0o755}, "/home": {dir: true, mode: fs.ModeDir | 0o755}, opts.Info.Home: {dir: true, mode: fs.ModeDir | 0o700}},
		lost: make(chan struct{}), nextPG: 1000, live: map[int]*Proc{}}
}

// SetJob replaces the host's JobFunc.
func (h *Host) SetJob(f JobFunc) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opts.Job = f
}

// SetAdmin replaces the host's handler of admin commands.
func (h *Host) SetAdmin(f func(ctx context.Context, c *remote.Cmd) error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.opts.Admin = f
}

// Queues reports whether the host holds jobs back beyond Options.Slots.
func (h *Host) Queues() bool { return h.opts.Slots > 0 }

// takeSlot waits, after the job's transit, for one of the host's slots,
// in the order jobs arrive.
func (h *Host) takeSlot(ctx context.Context, c *remote.Cmd) error {
	if h.opts.Transit != nil {
		n, _ := strconv.Atoi(c.Env["DSUB_JOB"])
		select {
		case <-time.After(h.opts.Transit(n)):
		case <-ctx.Done():
			return h.err(errs.OpExec, errs.KindCanceled, fmt.Errorf("not sent: %w", ctx.Err()))
		}
	}
	h.mu.Lock()
	var wait chan struct{}
	if h.busy < h.opts.Slots {
		h.busy++
	} else {
		wait = make(chan struct{})
		h.waiting = append(h.waiting, wait)
	}
	h.mu.Unlock()
	if c.OnQueued != nil {
		c.OnQueued()
	}
	if wait != nil {
		select {
		case <-wait:
		case <-ctx.Done():
			h.mu.Lock()
			i := slices.Index(h.waiting, wait)
			if i >= 0 {
				h.waiting = slices.Delete(h.waiting, i, i+1)
			}
			h.mu.Unlock()
			if i < 0 {
				h.freeSlot() // given to it as it gave up
			}
			return h.err(errs.OpExec, errs.KindCanceled, fmt.Errorf("not started: %w", ctx.Err()))
		}
	}
	if c.OnStart != nil {
		c.OnStart()
	}
	return nil
}

// freeSlot hands a slot to the first job waiting, or frees it.
func (h *Host) freeSlot() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiting) > 0 {
		close(h.waiting[0])
		h.waiting = h.waiting[1:]
		return
	}
	h.busy--
}

// Lose drops the connection: commands in flight fail with a transport
// error and their processes keep running; new ones fail until Restore.
func (h *Host) Lose() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loseLocked()
}

func (h *Host) loseLocked() {
	if !h.down {
		h.down = true
		close(h.lost)
	}
}

// Hang makes the host stop answering: nothing in flight completes, and
// after HangDetect the connection is found dead (Lose).
func (h *Host) Hang() {
	h.mu.Lock()
	h.hung = true
	h.mu.Unlock()
	time.AfterFunc(h.opts.HangDetect, h.Lose)
}

// Down refuses connections (and commands) until Restore, as an
// unreachable host does.
func (h *Host) Down() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loseLocked()
}

// Refuse makes every operation fail with err (say an *errs.Error of
// KindAuth) until Restore.
func (h *Host) Refuse(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse = err
}

// Restore brings a lost, hung, down or refusing host back.
func (h *Host) Restore() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refuse = nil
	if h.down {
		h.down, h.hung = false, false
		h.lost = make(chan struct{})
	}
}

// Live returns the processes still running, lost ones included.
func (h *Host) Live() []*Proc {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ps []*Proc
	for _, p := range h.live {
		ps = append(ps, p)
	}
	slices.SortFunc(ps, func(a, b *Proc) int { return a.PGID - b.PGID })
	return ps
}

// Started returns how many jobs the host has started.
func (h *Host) Started() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.started
}

// AdminCommands returns the shell lines of the admin commands run so far.
func (h *Host) AdminCommands() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.admin)
}

// Connects returns how many times Connect was called.
func (h *Host) Connects() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.connects
}

func (h *Host) Name() string { return h.name }

func (h *Host) err(op errs.Op, kind errs.Kind, err error) error {
	return errs.E(op, h.name, kind, err)
}

// check fails when the host cannot be reached.
func (h *Host) check(op errs.Op) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.refuse != nil:
		return h.refuse
	case h.closed:
		return h.err(op, errs.KindTransport, errors.New("host closed"))
	case h.down:
		return h.err(op, errs.KindTransport, errors.New("connection lost"))
	}
	return nil
}

func (h *Host) Connect(ctx context.Context) error {
	h.mu.Lock()
	h.connects++
	h.mu.Unlock()
	return h.check(errs.OpConnect)
}

func (h *Host) Connected() bool { return h.check(errs.OpConnect) == nil }

func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return nil
}

func (h *Host) Describe(ctx context.Context, mkdirs ...string) (remote.Info, error) {
	if err := h.check("describe"); err != nil {
		return remote.Info{}, err
	}
	for _, d := range mkdirs {
		if err := h.MkdirAll(ctx, d); err != nil {
			return remote.Info{}, err
		}
	}
	return h.opts.Info, nil
}

// Run runs a job through the host's JobFunc, or an admin command.
func (h *Host) Run(ctx context.Context, c *remote.Cmd) error {
	if err := h.check(errs.OpExec); err != nil {
		return err
	}
	if _, ok := c.Env["DSUB_JOB"]; !ok {
		h.mu.Lock()
		h.admin = append(h.admin, c.Shell)
		admin := h.opts.Admin
		h.mu.Unlock()
		if admin != nil {
			return h.exitErr(admin(ctx, c))
		}
		return nil
	}
	if h.opts.Slots > 0 {
		if err := h.takeSlot(ctx, c); err != nil {
			return err
		}
		defer h.freeSlot()
	}
	if c.Timeout > 0 {
		// From the start: a job held back for a slot was not running.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	p, job, lost, loseNow := h.start(c)
	if loseNow {
		h.Lose()
	}
	done := make(chan error, 1)
	go func() {
		err := job(p.ctx, p)
		h.mu.Lock()
		delete(h.live, p.PGID)
		h.mu.Unlock()
		close(p.exited)
		done <- err
	}()
	select {
	case err := <-done:
		if h.isHung() {
			<-lost // the exit status never arrives; the connection is found dead
			return errs.E(errs.OpExec, h.name, errs.KindTransport, errors.New("connection lost")).WithPGID(p.PGID)
		}
		return h.exitErr(err)
	case <-lost:
		return errs.E(errs.OpExec, h.name, errs.KindTransport, errors.New("connection lost")).WithPGID(p.PGID)
	case <-ctx.Done():
		p.kill()
		if err := <-done; err == nil {
			return nil // it finished before the kill landed
		}
		kind := errs.KindCanceled
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = errs.KindTimeout
		}
		return h.err(errs.OpExec, kind, ctx.Err())
	}
}

func (h *Host) start(c *remote.Cmd) (p *Proc, job JobFunc, lost chan struct{}, loseNow bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.nextPG++
	h.started++
	n, _ := strconv.Atoi(c.Env["DSUB_JOB"])
	a, _ := strconv.Atoi(c.Env["DSUB_ATTEMPT"])
	p = &Proc{Host: h.name, PGID: h.nextPG, Job: n, Attempt: a, Cmd: c, Started: time.Now(), exited: make(chan struct{})}
	p.ctx, p.kill = context.WithCancel(context.Background())
	h.live[p.PGID] = p
	return p, h.opts.Job, h.lost, h.opts.LoseAtJob == h.started
}

func (h *Host) isHung() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hung
}

func (h *Host) exitErr(err error) error {
	var ee *remote.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return h.err(errs.OpExec, errs.KindRemoteExit, ee)
	}
	var re *errs.Error
	if errors.As(err, &re) {
		return err
	}
	return h.err(errs.OpExec, errs.KindOther, err)
}

// marked reports whether p carries m.
func marked(p *Proc, m remote.Marker) bool {
	if m.Dir != "" && p.Cmd.Dir == m.Dir {
		return true
	}
	if k, v, ok := strings.Cut(m.Env, "="); ok && p.Cmd.Env[k] == v {
		return true
	}
	return false
}

func (h *Host) KillOrphan(ctx context.Context, pgid int, m remote.Marker) (bool, error) {
	if err := h.check(errs.OpKill); err != nil {
		return false, err
	}
	h.mu.Lock()
	p := h.live[pgid]
	h.mu.Unlock()
	if p == nil || !marked(p, m) {
		return false, nil
	}
	return true, h.killWait(ctx, p)
}

func (h *Host) KillMarked(ctx context.Context, m remote.Marker) (int, error) {
	if m == (remote.Marker{}) {
		return 0, h.err(errs.OpKill, errs.KindConfig, errors.New("an empty marker would match everything"))
	}
	if err := h.check(errs.OpKill); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range h.Live() {
		if marked(p, m) {
			if err := h.killWait(ctx, p); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// killWait kills p and waits for it to exit, as TERM then KILL would.
func (h *Host) killWait(ctx context.Context, p *Proc) error {
	p.kill()
	select {
	case <-p.exited:
		return nil
	case <-ctx.Done():
		return h.err(errs.OpKill, errs.KindTimeout, ctx.Err())
	}
}

// file is an entry of the in-memory file system.
type file struct {
	data  []byte
	mode  fs.FileMode
	dir   bool
	link  string
	mtime time.Time
}

type fileInfo struct {
	name string
	f    *file
}

func (fi fileInfo) Name() string       { return fi.name }
func (fi fileInfo) Size() int64        { return int64(len(fi.f.data)) }
func (fi fileInfo) Mode() fs.FileMode  { return fi.f.mode }
func (fi fileInfo) ModTime() time.Time { return fi.f.mtime }
func (fi fileInfo) IsDir() bool        { return fi.f.dir }
func (fi fileInfo) Sys() any           { return nil }

// abs resolves "~/" and relative paths against Home.
func (h *Host) abs(p string) string {
	switch {
	case p == "~":
		return h.opts.Info.Home
	case strings.HasPrefix(p, "~/"):
		return path.Join(h.opts.Info.Home, p[2:])
	case !path.IsAbs(p):
		return path.Join(h.opts.Info.Home, p)
	}
	return path.Clean(p)
}

func (h *Host) fsErr(op errs.Op, p string, err error) error {
	return h.err(op, errs.KindRemoteExit, &fs.PathError{Op: string(op), Path: p, Err: err})
}

// lookup returns the entry at p (following a final symlink if follow).
func (h *Host) lookup(op errs.Op, p string, follow bool) (*file, error) {
	if err := h.check(op); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.abs(p)
	for i := 0; i < 8; i++ {
		f := h.files[a]
		if f == nil {
			return nil, h.fsErr(op, p, fs.ErrNotExist)
		}
		if f.link == "" || !follow {
			return f, nil
		}
		if path.IsAbs(f.link) {
			a = path.Clean(f.link)
		} else {
			a = h.abs(path.Join(path.Dir(a), f.link))
		}
	}
	return nil, h.fsErr(op, p, errors.New("too many links"))
}

func (h *Host) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	f, err := h.lookup("stat", p, true)
	if err != nil {
		return nil, err
	}
	return fileInfo{path.Base(h.abs(p)), f}, nil
}

func (h *Host) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	f, err := h.lookup("lstat", p, false)
	if err != nil {
		return nil, err
	}
	return fileInfo{path.Base(h.abs(p)), f}, nil
}

func (h *Host) ReadLink(ctx context.Context, p string) (string, error) {
	f, err := h.lookup("readlink", p, false)
	if err != nil {
		return "", err
	}
	return f.link, nil
}

func (h *Host) Home(ctx context.Context) (string, error) { return h.opts.Info.Home, h.check("home") }

func (h *Host) MkdirAll(ctx context.Context, p string) error {
	if err := h.check("mkdir"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for d := h.abs(p); d != "/"; d = path.Dir(d) {
		if f := h.files[d]; f != nil {
			if !f.dir {
				return h.fsErr(errs.OpMkdir, d, errors.New("not a directory"))
			}
			continue
		}
		h.files[d] = &file{dir: true, mode: fs.ModeDir | 0o700, mtime: time.Now()}
	}
	return nil
}

func (h *Host) ReadDir(ctx context.Context, p string) ([]fs.FileInfo, error) {
	if _, err := h.lookup("readdir", p, true); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.abs(p)
	var out []fs.FileInfo
	for name, f := range h.files {
		if name != "/" && path.Dir(name) == a {
			out = append(out, fileInfo{path.Base(name), f})
		}
	}
	slices.SortFunc(out, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

func (h *Host) Glob(ctx context.Context, pattern string) ([]string, error) {
	if err := h.check("glob"); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	pat := h.abs(pattern)
	var out []string
	for name := range h.files {
		if ok, err := path.Match(pat, name); err != nil {
			return nil, h.err(errs.OpGlob, errs.KindConfig, err)
		} else if ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (h *Host) Chmod(ctx context.Context, p string, perm fs.FileMode) error {
	f, err := h.lookup("chmod", p, true)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f.mode = f.mode&fs.ModeType | perm
	return nil
}

func (h *Host) put(op errs.Op, p string, f *file) error {
	if err := h.check(op); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.abs(p)
	if d := h.files[path.Dir(a)]; d == nil || !d.dir {
		return h.fsErr(op, p, fs.ErrNotExist)
	}
	f.mtime = time.Now()
	h.files[a] = f
	return nil
}

func (h *Host) Symlink(ctx context.Context, target, link string) error {
	return h.put("symlink", link, &file{link: target, mode: fs.ModeSymlink | 0o777})
}

// WriteFile writes p, creating its parent directories, as SSHHost's
// uploads do.
func (h *Host) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	if err := h.MkdirAll(ctx, path.Dir(h.abs(p))); err != nil {
		return err
	}
	return h.put("write", p, &file{data: slices.Clone(data), mode: perm})
}

func (h *Host) Upload(ctx context.Context, p string, src io.Reader, perm fs.FileMode) (int64, error) {
	return h.UploadVia(ctx, p, remote.TempName(p), src, perm)
}

func (h *Host) UploadVia(ctx context.Context, p, tmp string, src io.Reader, perm fs.FileMode) (int64, error) {
	var b bytes.Buffer
	n, err := io.Copy(&b, src)
	if err != nil {
		return n, h.err(errs.OpUpload, errs.KindOther, err)
	}
	return n, h.WriteFile(ctx, p, b.Bytes(), perm)
}

func (h *Host) Download(ctx context.Context, p string, dst io.Writer) (int64, error) {
	f, err := h.lookup("download", p, true)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	data := f.data
	h.mu.Unlock()
	n, err := dst.Write(data)
	return int64(n), err
}

func (h *Host) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var b bytes.Buffer
	_, err := h.Download(ctx, p, &b)
	return b.Bytes(), err
}

func (h *Host) Remove(ctx context.Context, p string) error {
	if _, err := h.lookup("remove", p, false); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.files, h.abs(p))
	return nil
}

func (h *Host) RemoveAll(ctx context.Context, p string) error {
	if err := h.check("remove-all"); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.abs(p)
	if a == "/" || a == h.opts.Info.Home {
		return h.err(errs.OpRemoveAll, errs.KindConfig, fmt.Errorf("refusing to remove %q", p))
	}
	for name := range h.files {
		if name == a || strings.HasPrefix(name, a+"/") {
			delete(h.files, name)
		}
	}
	return nil
}

func (h *Host) Rename(ctx context.Context, from, to string) error {
	f, err := h.lookup("rename", from, false)
	if err != nil {
		return err
	}
	h.mu.Lock()
	delete(h.files, h.abs(from))
	h.mu.Unlock()
	return h.put("rename", to, f)
}

// Exists reports whether p exists (for tests).
func (h *Host) Exists(p string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.files[h.abs(p)] != nil
}

var _ remote.Host = (*Host)(nil)

// Health is Options.Health (remote.HealthReporter).
func (h *Host) Health() (remote.Health, bool) {
	if h.opts.Health == nil {
		return remote.Health{}, false
	}
	return *h.opts.Health, true
}
