package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	xknownhosts "golang.org/x/crypto/ssh/knownhosts"

	"github.com/dsub-dev/dsub/errs"
)

// Dialer connects to hosts. One Dialer serves every host of a run: it owns
// the admission limits on handshakes, the ssh-agent connection, loaded
// keys, known_hosts databases and shared connections to jump hosts.
type Dialer struct {
	// Fanout limits handshakes in flight across all hosts (default 64),
	// so that many hosts behind one sshd (or one bastion) do not trip
	// sshd's MaxStartups (10:30:100).
	Fanout int
	// PerJump limits handshakes in flight through one jump host (default 8).
	PerJump int
	// AcceptNew trusts a host's key on first use and appends it to the
	// host's first known_hosts file. A changed key is refused regardless.
	AcceptNew bool
	// FirstUseHint tells the user how to trust a host's key on first use
	// (the CLI names its flag): it is added to an unknown key's hint.
	FirstUseHint string
	// NoAgent ignores SSH_AUTH_SOCK.
	NoAgent bool
	// Warn receives non-fatal notices (a key accepted on first use, an
	// unusable identity file); nil discards them.
	Warn func(msg string)

	initOnce sync.Once
	sem      chan struct{}
	agent    agent.ExtendedAgent
	agentErr error

	mu    sync.Mutex
	keys  map[string]keyResult             // identity file → parsed key; guarded by mu
	dbs   map[string]*knownhosts.HostKeyDB // joined known_hosts paths → db; guarded by mu
	jumps map[string]*jumpConn             // jump chain key → shared client; guarded by mu

	khMu     sync.Mutex               // serialises accept-new appends
	accepted map[string]ssh.PublicKey // host → key accepted this session; guarded by khMu
}

type keyResult struct {
	signer ssh.Signer
	pub    ssh.PublicKey // set for encrypted keys whose public half is known
	err    error
}

type jumpConn struct {
	once   sync.Once
	client *ssh.Client
	err    error
	sem    chan struct{}
	lost   atomic.Bool // the connection died: the next dial through it re-dials
}

func (d *Dialer) init() {
	d.initOnce.Do(func() {
		n := d.Fanout
		if n <= 0 {
			n = 64
		}
		d.sem = make(chan struct{}, n)
		d.keys = map[string]keyResult{}
		d.dbs = map[string]*knownhosts.HostKeyDB{}
		d.jumps = map[string]*jumpConn{}
		d.accepted = map[string]ssh.PublicKey{}
		if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !d.NoAgent {
			c, err := net.Dial("unix", sock)
			if err != nil {
				d.agentErr = err
				return
			}
			d.agent = agent.NewClient(c)
		}
	})
}

func (d *Dialer) warn(format string, args ...any) {
	if d.Warn != nil {
		d.Warn(fmt.Sprintf(format, args...))
	}
}

// Close closes shared jump-host connections and the agent connection.
func (d *Dialer) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, j := range d.jumps {
		if j.client != nil {
			j.client.Close()
		}
	}
	d.jumps = map[string]*jumpConn{}
	return nil
}

// dial opens one authenticated connection to cfg's host. The whole of TCP
// connect, handshake and authentication is bounded by cfg.ConnectTimeout
// (x/crypto's ClientConfig.Timeout covers only the TCP connect), and that
// clock runs only once the host's turn has come: time spent waiting for
// a handshake slot (Fanout, PerJump) is dsub's queue, not the host's
// slowness, and counts against parent's deadline alone. No connection is
// opened before its slot, so none waits in a listen backlog. A handshake
// cut off by EOF or reset, which is how sshd's MaxStartups sheds load, is
// retried with jitter while the host's time remains.
func (d *Dialer) dial(parent context.Context, cfg *Config) (*ssh.Client, error) {
	d.init()
	auth, err := d.authMethod(cfg)
	if err != nil {
		// Nothing local to authenticate with: fix the configuration.
		return nil, errs.E(errs.OpConnect, cfg.Name, errs.KindConfig, err)
	}
	hkcb, algos, err := d.hostKeyCallback(cfg)
	if err != nil {
		return nil, errs.E(errs.OpConnect, cfg.Name, errs.KindConfig, err)
	}
	sc := &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{auth},
		HostKeyCallback:   hkcb,
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-dsub",
	}
	left := cfg.ConnectTimeout // the host's own time, spent from its turn
	for attempt := 0; ; attempt++ {
		client, spent, err := d.dialOnce(parent, cfg, sc, left)
		if err == nil {
			return client, nil
		}
		left -= spent
		kind := classifyDial(err)
		if kind == errs.KindTransport && retryableHandshake(err) && attempt < maxHandshakeTries && left > 0 {
			// Shed by sshd's MaxStartups: again after a jittered backoff
			// (at most 2 s), which is not the host's time.
			wait := min(time.Duration(50+rand.IntN(200))*time.Millisecond<<min(attempt, 5), 2*time.Second)
			select {
			case <-time.After(wait):
				continue
			case <-parent.Done():
			}
		}
		return nil, d.dialError(parent, cfg, kind, err)
	}
}

// dialError names a failed dial: whose deadline ended it (the caller's
// makes it a timeout or a cancellation; the host's own connect timeout
// means it did not answer in time, a transport failure), and the hints.
func (d *Dialer) dialError(parent context.Context, cfg *Config, kind errs.Kind, err error) error {
	e := errs.E(errs.OpConnect, cfg.Name, kind, err)
	// The caller's deadline may have passed a moment before its context
	// says so (the connection's deadline fired first): its time is up.
	pd, hasPD := parent.Deadline()
	callers := parent.Err() != nil || hasPD && !time.Now().Before(pd)
	if kind == errs.KindTransport && (callers || isNetTimeout(err)) {
		switch {
		case errors.Is(parent.Err(), context.Canceled):
			e.Kind = errs.KindCanceled
		case callers:
			e.Kind = errs.KindTimeout
		default:
			e.Err = fmt.Errorf("%w (no answer within connect timeout %s: TCP, handshake and auth, timed from its turn)", err, cfg.ConnectTimeout)
		}
	}
	var hk *HostKeyError
	if errors.As(err, &hk) {
		e.Err, e.Hint = hk, hk.hint() // drop x/crypto's "handshake failed" wrapping
		if !hk.Changed && hk.Refused == nil && d.FirstUseHint != "" {
			e.Hint += "   (or " + d.FirstUseHint + ")"
		}
	}
	if kind == errs.KindAuth {
		e.Hint = fmt.Sprintf("check that %s@%s accepts one of your keys (identity files: %s)", cfg.User, cfg.Host, strings.Join(cfg.IdentityFiles, ", "))
	}
	return e
}

// maxHandshakeTries bounds the retries of a handshake that sshd shed.
const maxHandshakeTries = 10

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// dialOnce makes one attempt, with left of the host's time once its turn
// has come; spent is how much of it the attempt used.
func (d *Dialer) dialOnce(parent context.Context, cfg *Config, sc *ssh.ClientConfig, left time.Duration) (_ *ssh.Client, spent time.Duration, _ error) {
	// The jump host's connection comes first, outside the handshake slot:
	// dialling it takes a slot of its own, so holding ours while waiting
	// for it would deadlock once every slot waits on the same jump host
	// (a bastion in front of more hosts than Fanout).
	var j *jumpConn
	if len(cfg.ProxyJump) > 0 {
		var err error
		if j, err = d.jump(parent, cfg, len(cfg.ProxyJump)); err != nil {
			return nil, 0, err
		}
	}
	if err := acquire(parent, d.sem); err != nil {
		return nil, 0, err
	}
	defer func() { <-d.sem }()
	if j != nil {
		// Handshakes through one jump host are limited to PerJump.
		if err := acquire(parent, j.sem); err != nil {
			return nil, 0, err
		}
		defer func() { <-j.sem }()
	}
	// The host's turn: its clock starts now.
	turn := time.Now()
	ctx, cancel := context.WithTimeout(parent, left)
	defer cancel()
	var conn net.Conn
	var err error
	if j != nil {
		conn, err = j.client.DialContext(ctx, "tcp", cfg.addr())
	} else {
		var nd net.Dialer
		conn, err = nd.DialContext(ctx, "tcp", cfg.addr())
	}
	if err == nil {
		var c *ssh.Client
		if c, err = handshake(ctx, conn, cfg.addr(), sc); err == nil {
			return c, time.Since(turn), nil
		}
	}
	if ctx.Err() != nil && parent.Err() == nil {
		err = fmt.Errorf("%w: %w", err, context.DeadlineExceeded) // the host's own time ran out
	}
	return nil, time.Since(turn), err
}

// acquire takes a place in sem, or fails when ctx ends first.
func acquire(ctx context.Context, sem chan struct{}) error {
	select {
	case sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for a handshake slot: %w", ctx.Err())
	}
}

// handshake runs the SSH handshake on conn, bounded by ctx's deadline and
// aborted by its cancellation.
func handshake(ctx context.Context, conn net.Conn, addr string, sc *ssh.ClientConfig) (*ssh.Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, sc)
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			c.Close()
			err = ctx.Err()
		}
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// jump returns the shared client for the first n hops of cfg.ProxyJump.
func (d *Dialer) jump(ctx context.Context, cfg *Config, n int) (*jumpConn, error) {
	hops := cfg.ProxyJump[:n]
	var key strings.Builder
	for _, h := range hops {
		fmt.Fprintf(&key, "%s@%s,", h.User, h.addr())
	}
	d.mu.Lock()
	j, ok := d.jumps[key.String()]
	if ok && j.lost.Load() {
		// The shared connection to the jump host died (a restart, a
		// partition): dial it anew rather than failing every host
		// behind it for good.
		delete(d.jumps, key.String())
		ok = false
	}
	if !ok {
		per := d.PerJump
		if per <= 0 {
			per = 8
		}
		j = &jumpConn{sem: make(chan struct{}, per)}
		d.jumps[key.String()] = j
	}
	d.mu.Unlock()
	j.once.Do(func() {
		hop := hops[n-1]
		hc := *cfg
		hc.Name = fmt.Sprintf("%s (jump host %s for %s)", hop.Host, hop.addr(), cfg.Name)
		hc.Host, hc.Port, hc.ProxyJump = hop.Host, hop.Port, hops[:n-1]
		if hc.Port == 0 {
			hc.Port = 22
		}
		if hop.User != "" {
			hc.User = hop.User
		}
		if len(hop.IdentityFiles) > 0 {
			hc.IdentityFiles = hop.IdentityFiles
		}
		j.client, j.err = d.dial(context.WithoutCancel(ctx), &hc)
		if j.err == nil {
			go func() { j.client.Wait(); j.lost.Store(true) }()
		}
	})
	if j.err != nil {
		// Let a later call try again rather than caching the failure.
		d.mu.Lock()
		if d.jumps[key.String()] == j {
			delete(d.jumps, key.String())
		}
		d.mu.Unlock()
		return nil, j.err
	}
	return j, nil
}

func classifyDial(err error) errs.Kind {
	var hk *HostKeyError
	switch {
	case errors.As(err, &hk):
		return errs.KindHostKey
	case strings.Contains(err.Error(), "unable to authenticate"), strings.Contains(err.Error(), "no supported methods remain"):
		return errs.KindAuth
	}
	var e *errs.Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return errs.KindTransport
}

// retryableHandshake reports errors that sshd's MaxStartups produces: the
// server drops the connection before or during key exchange.
func retryableHandshake(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "handshake failed: EOF")
}

// HostKeyError is a host key that is unknown or does not match known_hosts.
type HostKeyError struct {
	Host        string // "host:port" as dialled
	Changed     bool   // a different key is known: possible man-in-the-middle
	Key         ssh.PublicKey
	KnownHosts  []string
	Fingerprint string
	// Refused is why known_hosts refuses a key it knows of: revoked
	// (@revoked), or a certificate its @cert-authority does not vouch for.
	Refused error
}

func (e *HostKeyError) Error() string {
	if e.Refused != nil {
		return fmt.Sprintf("host key of %s refused: the server presented %s %s: %v (known_hosts: %s). Refusing to connect",
			e.Host, e.Key.Type(), e.Fingerprint, e.Refused, strings.Join(e.KnownHosts, ", "))
	}
	if e.Changed {
		return fmt.Sprintf("HOST KEY MISMATCH for %s: the server presented %s %s, which differs from known_hosts (%s). "+
			"Someone may be intercepting the connection, or the host was reinstalled. Refusing to connect",
			e.Host, e.Key.Type(), e.Fingerprint, strings.Join(e.KnownHosts, ", "))
	}
	return fmt.Sprintf("unknown host %s: its %s key %s is not in known_hosts (%s)",
		e.Host, e.Key.Type(), e.Fingerprint, strings.Join(e.KnownHosts, ", "))
}

func (e *HostKeyError) hint() string {
	host, port, err := net.SplitHostPort(e.Host)
	if err != nil {
		host, port = e.Host, "22"
	}
	host = strings.Trim(host, "[]")
	file := "~/.ssh/known_hosts"
	if len(e.KnownHosts) > 0 {
		file = e.KnownHosts[0]
	}
	if e.Refused != nil {
		return "the key is revoked or not vouched for by a trusted authority in known_hosts: this host is not trusted"
	}
	if e.Changed {
		return fmt.Sprintf("if the change is expected, remove the old entry with: ssh-keygen -R '%s' -f %s", e.Host, file)
	}
	kt := strings.TrimPrefix(e.Key.Type(), "ssh-")
	if strings.HasPrefix(kt, "ecdsa") {
		kt = "ecdsa"
	}
	return fmt.Sprintf("verify the fingerprint, then add it with: ssh-keyscan -p %s -t %s %s >> %s",
		port, kt, host, file)
}

// hostKeyCallback checks keys against cfg's known_hosts files. It also
// returns the HostKeyAlgorithms to offer: those of the keys known for the
// host, so that a host known by its ed25519 key is not asked for its rsa
// key and then refused (golang/go#29286).
func (d *Dialer) hostKeyCallback(cfg *Config) (ssh.HostKeyCallback, []string, error) {
	var files []string
	for _, f := range cfg.KnownHosts {
		if _, err := os.Stat(f); err == nil {
			files = append(files, f)
		}
	}
	var db *knownhosts.HostKeyDB
	if len(files) > 0 {
		key := strings.Join(files, "\x00")
		d.mu.Lock()
		db = d.dbs[key]
		if db == nil {
			var err error
			if db, err = knownhosts.NewDB(files...); err != nil {
				d.mu.Unlock()
				return nil, nil, fmt.Errorf("read known_hosts %s: %w", strings.Join(files, ", "), err)
			}
			d.dbs[key] = db
		}
		d.mu.Unlock()
	}
	algos := defaultHostKeyAlgos
	if db != nil {
		if known := db.HostKeyAlgorithms(cfg.addr()); len(known) > 0 {
			algos = known
		}
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		var err error = &xknownhosts.KeyError{}
		if db != nil {
			err = db.HostKeyCallback()(hostname, remote, key)
		}
		if err == nil {
			return nil
		}
		hk := &HostKeyError{Host: knownhosts.Normalize(hostname), Key: key, KnownHosts: cfg.KnownHosts, Fingerprint: ssh.FingerprintSHA256(key)}
		if knownhosts.IsHostKeyChanged(err) {
			hk.Changed = true
			return hk
		}
		if !knownhosts.IsHostUnknown(err) {
			// A revoked key, a certificate from the wrong authority: a
			// trust failure, refused once and never retried.
			hk.Refused = err
			return hk
		}
		return d.acceptNew(hk, hostname, remote, key)
	}
	return cb, algos, nil
}

// defaultHostKeyAlgos is OpenSSH's preference order, used for hosts with
// no known key: an unknown host is then shown, and accepted, by its
// ed25519 key as ssh would.
var defaultHostKeyAlgos = []string{
	ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// acceptNew records an unknown host's key when the Dialer allows it.
func (d *Dialer) acceptNew(hk *HostKeyError, hostname string, remote net.Addr, key ssh.PublicKey) error {
	d.khMu.Lock()
	defer d.khMu.Unlock()
	norm := knownhosts.Normalize(hostname)
	if k, ok := d.accepted[norm]; ok {
		if string(k.Marshal()) == string(key.Marshal()) {
			return nil
		}
		hk.Changed = true
		return hk
	}
	if !d.AcceptNew || len(hk.KnownHosts) == 0 {
		return hk
	}
	file := hk.KnownHosts[0]
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("accept-new: %w", err)
	}
	// A file whose last line has no newline would merge it with ours and
	// break both: end it first, as OpenSSH does.
	if fi, serr := f.Stat(); serr == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, rerr := f.ReadAt(last, fi.Size()-1); rerr == nil && last[0] != '\n' {
			_, err = f.Write([]byte("\n"))
		}
	}
	if err == nil {
		err = knownhosts.WriteKnownHost(f, hostname, remote, key)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("accept-new: write %s: %w", file, err)
	}
	d.accepted[norm] = key
	d.warn("accepted new host key for %s: %s %s (added to %s)", norm, key.Type(), ssh.FingerprintSHA256(key), file)
	return nil
}
