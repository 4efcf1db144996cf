package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/dsub-dev/dsub/errs"
)

// SSHHost is a Host reached over SSH. It connects lazily, keeps its
// connections open, and opens more (up to MaxConns) only when every open
// one carries MaxPerConn sessions.
type SSHHost struct {
	cfg Config
	d   *Dialer

	mu        sync.Mutex
	conns     []*conn       // live connections; guarded by mu
	dialing   int           // dials in progress; guarded by mu
	changed   chan struct{} // closed and replaced when capacity may have freed; guarded by mu
	closed    bool          // guarded by mu
	dialErr   error         // last dial failure, while no connection is live; guarded by mu
	dialErrAt time.Time     // when dialErr happened; guarded by mu
	noDial    time.Time     // no new extra connection before this; guarded by mu

	sftpMu   sync.Mutex
	sftp     *sftp.Client // guarded by sftpMu
	sftpConn *conn        // the connection carrying sftp; guarded by sftpMu

	refused atomic.Int64 // session opens the server refused (and were retried)
}

// Refused is how many session opens the server has refused so far
// (sshd's MaxSessions): each was retried after backing off, never turned
// into a command's failure.
func (h *SSHHost) Refused() int64 { return h.refused.Load() }

var _ Host = (*SSHHost)(nil)

// conn is one SSH connection and its session accounting.
type conn struct {
	client *ssh.Client
	active int           // sessions open; guarded by SSHHost.mu
	limit  int           // current session cap, lowered on refusals; guarded by SSHHost.mu
	dead   bool          // guarded by SSHHost.mu
	done   chan struct{} // closed when the connection ends
}

// Host returns an SSHHost for cfg. It does not connect until first use.
func (d *Dialer) Host(cfg Config) *SSHHost {
	d.init()
	c := cfg.withDefaults()
	return &SSHHost{cfg: c, d: d, changed: make(chan struct{})}
}

// Name is the host's display name.
func (h *SSHHost) Name() string { return h.cfg.Name }

// Config returns the host's connection settings.
func (h *SSHHost) Config() Config { return h.cfg }

// Connect opens the first connection now (if none is open), for callers
// that want connection errors up front.
func (h *SSHHost) Connect(ctx context.Context) error {
	c, err := h.acquire(ctx)
	if err != nil {
		return err
	}
	h.release(c)
	return nil
}

// Connected reports whether a connection to the host is open.
func (h *SSHHost) Connected() bool { return h.Conns() > 0 }

// Describe learns the host's platform, CPUs and home (DescribeShell).
func (h *SSHHost) Describe(ctx context.Context, mkdirs ...string) (Info, error) {
	return DescribeShell(ctx, h, mkdirs...)
}

// Conns returns the number of live connections to the host.
func (h *SSHHost) Conns() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// Close closes every connection of the host, for good.
func (h *SSHHost) Close() error {
	h.drop(true)
	return nil
}

// Release closes the host's connections for now, as Close does, but the
// next use dials again: a one-off command across a thousand hosts holds
// no thousand connections at once, as pdsh's exiting ssh processes hold
// none.
func (h *SSHHost) Release() { h.drop(false) }

// drop closes the SFTP client and every connection; closed marks the
// host closed for good.
func (h *SSHHost) drop(closed bool) {
	h.sftpMu.Lock()
	if h.sftp != nil {
		h.sftp.Close()
		h.sftp = nil
	}
	h.sftpMu.Unlock()
	h.mu.Lock()
	h.closed = h.closed || closed
	conns := h.conns
	h.conns = nil
	h.notifyLocked()
	h.mu.Unlock()
	for _, c := range conns {
		c.client.Close()
	}
}

func (h *SSHHost) notifyLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// acquire reserves a session slot on a live connection, dialling a new
// connection when all are full and MaxConns allows.
func (h *SSHHost) acquire(ctx context.Context) (*conn, error) {
	start := time.Now()
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, errs.E(errs.OpSession, h.cfg.Name, errs.KindCanceled, errors.New("host closed"))
		}
		if len(h.conns) == 0 && h.dialErr != nil && h.dialErrAt.After(start) {
			// We waited on a dial that failed: share its error rather
			// than queue up one connect timeout per waiter.
			err := h.dialErr
			h.mu.Unlock()
			return nil, err
		}
		var best *conn
		for _, c := range h.conns {
			if !c.dead && c.active < c.limit && (best == nil || c.active < best.active) {
				best = c
			}
		}
		if best != nil {
			best.active++
			h.mu.Unlock()
			return best, nil
		}
		canDial := len(h.conns)+h.dialing < h.cfg.MaxConns && (len(h.conns) == 0 || time.Now().After(h.noDial))
		if canDial && (h.dialing == 0 || len(h.conns) > 0) {
			h.dialing++
			h.mu.Unlock()
			client, err := h.d.dial(ctx, &h.cfg)
			h.mu.Lock()
			h.dialing--
			if err != nil {
				h.notifyLocked()
				if len(h.conns) == 0 {
					h.dialErr, h.dialErrAt = err, time.Now()
					h.mu.Unlock()
					return nil, err
				}
				// Others are live: wait for them rather than fail.
				h.noDial = time.Now().Add(5 * time.Second)
				h.mu.Unlock()
				continue
			}
			c := &conn{client: client, limit: h.cfg.MaxPerConn, done: make(chan struct{}), active: 1}
			h.conns = append(h.conns, c)
			h.dialErr = nil
			h.notifyLocked()
			h.mu.Unlock()
			go h.watch(c)
			return c, nil
		}
		wait := h.changed
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, h.ctxErr(ctx, errs.OpSession, "waiting for a free session slot")
		}
	}
}

func (h *SSHHost) release(c *conn) {
	h.mu.Lock()
	c.active--
	h.notifyLocked()
	h.mu.Unlock()
}

// markDead drops c from the pool; the next acquire dials afresh.
func (h *SSHHost) markDead(c *conn) {
	h.mu.Lock()
	if !c.dead {
		c.dead = true
		for i, x := range h.conns {
			if x == c {
				h.conns = append(h.conns[:i], h.conns[i+1:]...)
				break
			}
		}
		h.notifyLocked()
	}
	h.mu.Unlock()
	c.client.Close()
}

// watch runs keepalives on c and marks it dead when the connection ends
// or nothing has answered them for 12/5 of the keepalive interval (12 s
// for 5 s): a keepalive goes out every 2/5 of it, so a hung host is
// declared dead within 3 intervals of its last answer, 15 s by default.
func (h *SSHHost) watch(c *conn) {
	ended := make(chan struct{})
	go func() {
		c.client.Wait()
		close(ended)
	}()
	defer func() {
		h.markDead(c)
		close(c.done)
	}()
	if h.cfg.Keepalive <= 0 {
		<-ended
		return
	}
	window := h.cfg.Keepalive * 12 / 5
	t := time.NewTicker(max(h.cfg.Keepalive*2/5, time.Millisecond))
	defer t.Stop()
	last := time.Now()      // of the last answer
	var reply chan struct{} // non-nil while a keepalive is outstanding
	for {
		select {
		case <-ended:
			return
		case <-reply:
			reply, last = nil, time.Now()
		case <-t.C:
			if time.Since(last) >= window {
				return // dead: no answer for the window
			}
			if reply != nil {
				continue
			}
			r := make(chan struct{})
			reply = r
			go func() {
				// Any reply, even a failure, proves the peer alive.
				if _, _, err := c.client.SendRequest("keepalive@openssh.com", true, nil); err == nil {
					close(r)
				}
			}()
		}
	}
}

func (h *SSHHost) ctxErr(ctx context.Context, op errs.Op, what string) error {
	return ctxError(ctx, op, h.cfg.Name, what)
}

// ctxError is the error of an operation on host that ctx ended: a timeout
// if its deadline passed, else a cancellation.
func ctxError(ctx context.Context, op errs.Op, host, what string) error {
	kind := errs.KindCanceled
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		kind = errs.KindTimeout
	}
	return errs.E(op, host, kind, fmt.Errorf("%s: %w", what, ctx.Err()))
}

// session opens a session, treating a refused channel open as
// back-pressure: the connection's cap is lowered for a while and the open
// is retried, on this or another connection, until ctx ends. A channel
// open that hangs is bounded by ConnectTimeout, after which the connection
// is presumed dead.
func (h *SSHHost) session(ctx context.Context) (*ssh.Session, *conn, error) {
	for attempt := 0; ; attempt++ {
		c, err := h.acquire(ctx)
		if err != nil {
			return nil, nil, err
		}
		type res struct {
			s   *ssh.Session
			err error
		}
		ch := make(chan res, 1)
		go func() {
			s, err := c.client.NewSession()
			ch <- res{s, err}
		}()
		var r res
		select {
		case r = <-ch:
		case <-time.After(h.cfg.ConnectTimeout):
			h.release(c)
			h.markDead(c)
			return nil, nil, errs.E(errs.OpSession, h.cfg.Name, errs.KindTransport, fmt.Errorf("opening a session took longer than %s; connection presumed dead", h.cfg.ConnectTimeout))
		case <-ctx.Done():
			go func() {
				if r := <-ch; r.s != nil {
					r.s.Close()
				}
			}()
			h.release(c)
			return nil, nil, h.ctxErr(ctx, errs.OpSession, "opening a session")
		}
		if r.err == nil {
			return r.s, c, nil
		}
		var oce *ssh.OpenChannelError
		if errors.As(r.err, &oce) {
			h.refused.Add(1)
			h.backOff(c)
			select {
			case <-time.After(time.Duration(5+rand.IntN(20*min(attempt+1, 10))) * time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, nil, h.ctxErr(ctx, errs.OpSession, "server refused new sessions (MaxSessions)")
			}
		}
		h.release(c)
		h.markDead(c)
		if attempt < 2 {
			continue // the connection died under us: redial once or twice
		}
		return nil, nil, errs.E(errs.OpSession, h.cfg.Name, errs.KindTransport, r.err)
	}
}

// backOff lowers c's session cap to what the server just accepted, and
// restores it after a pause.
func (h *SSHHost) backOff(c *conn) {
	h.mu.Lock()
	c.active--
	if c.limit > 1 && c.active < c.limit {
		c.limit = max(1, c.active)
		go func() {
			time.Sleep(2 * time.Second)
			h.mu.Lock()
			c.limit = h.cfg.MaxPerConn
			h.notifyLocked()
			h.mu.Unlock()
		}()
	}
	h.notifyLocked()
	h.mu.Unlock()
}

// Run runs c on the host. See Host.
func (h *SSHHost) Run(ctx context.Context, c *Cmd) error {
	line, err := CommandLine(c)
	if err != nil {
		return errs.E(errs.OpExec, h.cfg.Name, errs.KindConfig, err)
	}
	if c.Timeout > 0 {
		// A session starts its command at once: the limit runs from now.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return h.ctxErr(ctx, errs.OpExec, "before start")
	}
	s, cn, err := h.session(ctx)
	if err != nil {
		return err
	}
	released := false
	closeSession := func() {
		if !released {
			released = true
			s.Close()
			h.release(cn)
		}
	}
	defer closeSession()

	pg := &pgidWriter{w: c.Stderr, got: make(chan int, 1)}
	if c.NoProcessGroup {
		pg.state = pgPassthrough
	}
	var stdin func()
	if c.Stdin != nil {
		// Our own copy, not Session.Stdin's: Wait would wait for that
		// one to reach the input's end, so a command that is done while
		// stdin is still open (a pipe that has not ended) would keep
		// Run waiting. This copy ends at the input's end or at the first
		// write after the session has closed.
		w, err := s.StdinPipe()
		if err != nil {
			return errs.E(errs.OpExec, h.cfg.Name, errs.KindTransport, err)
		}
		stdin = func() {
			_, _ = io.Copy(w, c.Stdin)
			w.Close()
		}
	}
	s.Stdout = c.Stdout
	if s.Stdout == nil {
		s.Stdout = io.Discard
	}
	s.Stderr = pg
	if err := s.Start(line); err != nil {
		return errs.E(errs.OpExec, h.cfg.Name, errs.KindTransport, err)
	}
	if stdin != nil {
		go stdin()
	}
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return h.exitErr(err, cn, pg)
	case <-ctx.Done():
	}
	// Cancelled: kill the remote process group. Closing the channel alone
	// leaves the process running; Signal is ignored for root before
	// OpenSSH 10, so the kill goes through a fresh session.
	_ = s.Signal(ssh.SIGTERM)
	pgid := 0
	select {
	case pgid = <-pg.got:
	case err := <-done: // it finished on its own
		return h.exitErr(err, cn, pg)
	case <-time.After(2 * time.Second):
	}
	closeSession() // free the slot first: the kill needs one
	if pgid > 0 {
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := h.KillGroup(kctx, pgid); err != nil {
			cancel()
			return fmt.Errorf("%w; and killing its process group %d failed: %v", h.ctxErr(ctx, errs.OpExec, "command interrupted"), pgid, err)
		}
		cancel()
	}
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	return h.ctxErr(ctx, errs.OpExec, "command interrupted")
}

// KillGroup sends SIGTERM to the remote process group pgid, then SIGKILL
// to whatever remains after up to two seconds.
func (h *SSHHost) KillGroup(ctx context.Context, pgid int) error {
	_, err := killGroup(ctx, h, pgid, Marker{})
	return err
}

// Marker tells one caller's processes on a host from everyone else's, by
// exact matches only: a process is marked when its working directory is
// Dir (the same directory, compared by inode), or when its environment
// holds Env ("NAME=VALUE") as one whole entry. Nothing else matches:
// never a substring of a command line, so a user's `tail -f DIR/x`
// elsewhere is left alone. dsub marks its jobs with the run directory as
// their working directory and DSUB_RUN=<run id> in their environment,
// which children inherit.
type Marker struct {
	Dir string // absolute path (or "~/..."); "" for none
	Env string // "NAME=VALUE"; "" for none
}

func (m Marker) valid() error {
	switch {
	case m.Dir == "" && m.Env == "":
		return errors.New("an empty marker would match everything")
	case m.Dir == "/" || m.Dir == "~" || m.Dir == "~/" || m.Dir == ".":
		return fmt.Errorf("marker directory %q is not specific", m.Dir)
	case m.Env != "" && (!strings.Contains(m.Env, "=") || strings.HasSuffix(m.Env, "=") || strings.ContainsAny(m.Env, "\n\x00")):
		return fmt.Errorf("marker environment entry %q is not NAME=VALUE", m.Env)
	}
	return nil
}

// script is a shell condition true for the process directory "$d" when it
// is marked.
func (m Marker) script() string {
	var c []string
	if m.Dir != "" {
		c = append(c, `[ "$d/cwd" -ef `+QuotePath(m.Dir)+` ]`)
	}
	if m.Env != "" {
		c = append(c, `{ tr '\0' '\n' <"$d/environ" 2>/dev/null | grep -qxF -- `+Quote(m.Env)+`; }`)
	}
	return "{ " + strings.Join(c, " || ") + "; }"
}

// KillOrphan kills the process group pgid of a command whose connection
// was lost (Error.PGID) and reports whether a group was found. Closing a
// connection kills nothing, so such commands run on. To tell the group
// from another that reused the number, its leader, if it still lives,
// must carry the marker (Linux). A group whose leader has exited keeps its
// number from being reused, so it is still the command's.
func (h *SSHHost) KillOrphan(ctx context.Context, pgid int, m Marker) (found bool, err error) {
	return killOrphan(ctx, h, pgid, m)
}

// killOrphan is KillOrphan through r, whose commands run as session
// leaders (as sshd starts them).
func killOrphan(ctx context.Context, r Runner, pgid int, m Marker) (bool, error) {
	if err := m.valid(); err != nil {
		return false, errs.E(errs.OpKill, r.Name(), errs.KindConfig, err)
	}
	return killGroup(ctx, r, pgid, m)
}

// KillMarked kills, on the host, the process group of every process of
// the login user that carries the marker, and reports how many groups it
// killed (SIGTERM, then SIGKILL after up to two seconds). It finds what
// KillOrphan cannot: the processes of a command whose connection was lost
// before its process group was reported, and children that outlived
// their group's leader. Processes with a controlling terminal (a person's
// shell that has cd'd there) are left alone. Call it only when none of
// the commands carrying the marker should be running. The scan reads
// /proc (Linux); elsewhere it finds nothing.
func (h *SSHHost) KillMarked(ctx context.Context, m Marker) (int, error) {
	return killMarked(ctx, h, m)
}

// killMarked is KillMarked through r, whose commands run as session
// leaders (as sshd starts them).
func killMarked(ctx context.Context, r Runner, m Marker) (int, error) {
	if err := m.valid(); err != nil {
		return 0, errs.E(errs.OpKill, r.Name(), errs.KindConfig, err)
	}
	out, errb := NewCappedBuffer(4<<10), NewCappedBuffer(4<<10)
	err := r.Run(ctx, &Cmd{Shell: KillMarkedScript(m), NoProcessGroup: true, Stdout: out, Stderr: errb})
	if err != nil {
		return 0, err
	}
	n, ok := KilledCount(out.String())
	if !ok {
		return 0, errs.E(errs.OpKill, r.Name(), errs.KindOther, fmt.Errorf("unexpected answer %q (stderr %q)", out.String(), errb.String()))
	}
	return n, nil
}

// KilledCount reads the "killed N" line KillMarkedScript prints.
func KilledCount(out string) (int, bool) {
	for _, l := range strings.Split(out, "\n") {
		var n int
		if _, err := fmt.Sscanf(l, "killed %d", &n); err == nil {
			return n, true
		}
	}
	return 0, false
}

// KillMarkedScript is KillMarked's remote side, for callers that compose
// it with more work in one session (run it with NoProcessGroup). It prints
// "killed N". The shell running it is a session leader (sshd setsid()s
// it), so its own group, and with it its subshells, is skipped.
func KillMarkedScript(m Marker) string {
	return `me=$$; gs=; ` +
		`for d in /proc/[0-9]*; do [ -O "$d" ] || continue; ` +
		`read -r s 2>/dev/null < "$d/stat" || continue; s=${s##*) }; set -- $s; ` +
		`g=$3; [ "$g" = "$me" ] || [ "$g" -le 1 ] || [ "$5" != 0 ] && continue; ` +
		`case " $gs " in *" $g "*) continue ;; esac; ` +
		m.script() + ` || continue; gs="$gs $g"; done; ` +
		`n=0; for g in $gs; do kill -s TERM -- "-$g" 2>/dev/null && n=$((n+1)); done; ` +
		`i=0; while [ $i -lt 20 ]; do a=; for g in $gs; do kill -s 0 -- "-$g" 2>/dev/null && a=1; done; [ -z "$a" ] && break; sleep 0.1; i=$((i+1)); done; ` +
		`for g in $gs; do kill -s KILL -- "-$g" 2>/dev/null; done; echo "killed $n"`
}

// killGroup kills process group pgid through r (see killGroupScript).
func killGroup(ctx context.Context, r Runner, pgid int, m Marker) (bool, error) {
	if pgid <= 1 {
		return false, errs.E(errs.OpKill, r.Name(), errs.KindConfig, fmt.Errorf("bad process group %d", pgid))
	}
	out, errb := NewCappedBuffer(4<<10), NewCappedBuffer(4<<10) // two buffers: stdout and stderr are copied concurrently
	err := r.Run(ctx, &Cmd{Shell: killGroupScript(pgid, m), NoProcessGroup: true, Stdout: out, Stderr: errb})
	return strings.TrimSpace(out.String()) == "killed", err
}

// killGroupScript kills process group pgid (TERM, then KILL after up to
// two seconds) if its leader, while it lives, carries m (unless m is
// empty), and prints "killed", "none" or "other".
func killGroupScript(pgid int, m Marker) string {
	p := strconv.Itoa(pgid)
	var b strings.Builder
	if m != (Marker{}) {
		// A live leader must carry the marker; a gone one keeps the
		// group's number from being reused.
		b.WriteString(`d=/proc/` + p + `; if [ -e "$d" ]; then ` + m.script() + ` || { echo other; exit 0; }; fi; `)
	}
	b.WriteString(`kill -s TERM -- -` + p + ` 2>/dev/null || { echo none; exit 0; }; i=0; while kill -s 0 -- -` + p + ` 2>/dev/null && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done; kill -s KILL -- -` + p + ` 2>/dev/null; echo killed; exit 0`)
	return b.String()
}

func (h *SSHHost) exitErr(err error, cn *conn, pg *pgidWriter) error {
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		x := &ExitError{Status: ee.ExitStatus(), Signal: Signal(ee.Signal())}
		if x.Signal != "" {
			x.Status = -1
		}
		return errs.E(errs.OpExec, h.cfg.Name, errs.KindRemoteExit, x)
	}
	select {
	case <-cn.done:
		err = fmt.Errorf("connection lost: %w", err)
	default:
	}
	e := errs.E(errs.OpExec, h.cfg.Name, errs.KindTransport, err)
	select {
	case e.PGID = <-pg.got: // the command may still run there
	default:
	}
	return e
}

const (
	pgWaiting = iota
	pgPassthrough
)

// pgidWriter strips the process-group report from the start of stderr and
// passes everything else through. x/crypto writes stderr from one
// goroutine, so it needs no lock.
type pgidWriter struct {
	w     io.Writer
	got   chan int
	state int
	buf   []byte
}

func (p *pgidWriter) Write(b []byte) (int, error) {
	n := len(b)
	if p.state == pgWaiting {
		p.buf = append(p.buf, b...)
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 && len(p.buf) < 64 && bytes.HasPrefix([]byte(pgidMarker), p.buf[:min(len(p.buf), len(pgidMarker))]) {
			return n, nil // need more
		}
		p.state = pgPassthrough
		rest := p.buf
		if i >= 0 && bytes.HasPrefix(p.buf, []byte(pgidMarker)) {
			if pgid, err := strconv.Atoi(string(p.buf[len(pgidMarker):i])); err == nil {
				p.got <- pgid
			}
			rest = p.buf[i+1:]
		}
		p.buf = nil
		if len(rest) == 0 || p.w == nil {
			return n, nil
		}
		_, err := p.w.Write(rest)
		return n, err
	}
	if p.w == nil {
		return n, nil
	}
	_, err := p.w.Write(b)
	return n, err
}
