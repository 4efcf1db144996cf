package monitor

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// ServerOptions configure a live monitor.
type ServerOptions struct {
	// Addr is where it listens; default 127.0.0.1:0 (loopback, any
	// port). Wherever it is bound, every request needs the token that
	// URL carries.
	Addr string
	// Stop, if set, lets the page stop the run, as Ctrl-C does, and
	// CancelJob cancel one job (--ui-control); without them the page is
	// read-only.
	Stop      func()
	CancelJob func(ctx context.Context, job int) error
}

// Server serves a Model's page and state over HTTP.
type Server struct {
	m     *Model
	opts  ServerOptions
	ln    net.Listener
	srv   *http.Server
	token string // every request's ?token=
	url   string
}

// Serve starts serving m's page.
func Serve(m *Model, opts ServerOptions) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	s := &Server{m: m, opts: opts, ln: ln}
	// Every request needs the token, on loopback too: another user of
	// this machine can reach a loopback port as well as the run's owner.
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		ln.Close()
		return nil, err
	}
	s.token = hex.EncodeToString(b)
	ap := ln.Addr().(*net.TCPAddr)
	host := ap.IP.String()
	if ap.IP.IsUnspecified() {
		host = "127.0.0.1"
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	s.url = "http://" + net.JoinHostPort(host, strconv.Itoa(ap.Port)) + "/?token=" + s.token
	m.mu.Lock()
	m.control = opts.Stop != nil
	m.mu.Unlock()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/state", s.state)
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("POST /api/stop", s.stop)
	mux.HandleFunc("POST /api/cancel", s.cancel)
	// Bounded: a slow or idle client is dropped, and at most maxConns
	// connections are open at once (a flood of them waits in the
	// backlog instead of holding the master's memory).
	s.srv = &http.Server{Handler: s.guard(mux), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 30 * time.Second}
	go func() { _ = s.srv.Serve(limitListener(ln, maxConns)) }()
	return s, nil
}

// URL is the page's address, with its token if it needs one.
func (s *Server) URL() string { return s.url }

// Close stops serving.
func (s *Server) Close() error { return s.srv.Close() }

// Linger gives pages that were watching the run up to max to be given
// its final state, so that they show how it ended once dsub has exited.
// A stream sends it the moment the run ends: most often Linger returns
// at once.
func (s *Server) Linger(ctx context.Context, max time.Duration) {
	if time.Since(s.m.lastPoll()) > 5*time.Second {
		return // nobody watching
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(max)
	for !s.m.endGiven() {
		select {
		case <-tick.C:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// guard refuses requests without the token, and, on loopback, requests
// for any other host name: a web page elsewhere cannot read the monitor
// by pointing a name of its own at 127.0.0.1 (the token already stops
// it; this is a second wall).
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Cache-Control", "no-store")
		query := r.URL.Query().Get("token")
		token := query
		if c, err := r.Cookie(tokenCookie); err == nil && token == "" {
			token = c.Value
		}
		if subtle.ConstantTimeCompare([]byte(token), []byte(s.token)) != 1 {
			w.Header().Set("Connection", "close") // nothing more to say to it
			http.Error(w, "forbidden: this monitor needs the token in the URL that dsub printed", http.StatusForbidden)
			return
		}
		if query != "" && r.Method == http.MethodGet && r.URL.Path == "/" {
			// The page keeps the token in a cookie, not in its address:
			// history, bookmarks and screenshots do not carry it.
			http.SetCookie(w, &http.Cookie{Name: tokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		if s.loopback() && !loopbackHost(r.Host) {
			http.Error(w, "forbidden: host "+r.Host, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenCookie holds the token once the page has been opened with it.
const tokenCookie = "dsub_token"

// maxConns bounds the monitor's open connections.
const maxConns = 64

// limitListener accepts at most n connections at once (x/net's
// netutil.LimitListener, without the module).
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, sem: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	sem chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (s *Server) loopback() bool { return s.ln.Addr().(*net.TCPAddr).IP.IsLoopback() }

func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", csp)
	_ = WritePage(w, nil)
}

// state answers one request for the state (the page itself streams it:
// events): ?epoch=E&after=ID asks for the bars after ID of timeline
// epoch E (after=-1: all of them).
func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	epoch, err1 := strconv.Atoi(q.Get("epoch"))
	after, err2 := strconv.Atoi(q.Get("after"))
	if errors.Join(err1, err2) != nil {
		epoch, after = -1, -1
	}
	st := s.m.State(epoch, after)
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(append(appendState(nil, &st), '\n')); err == nil && http.NewResponseController(w).Flush() == nil {
		s.m.delivered(&st)
	}
}

// control reports whether r may change the run: only with --ui-control,
// and only with a header that a form on another site cannot send, so a
// cross-site request is refused.
func (s *Server) control(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Stop == nil {
		http.Error(w, "forbidden: the monitor is read-only (the run was not started with control from the page)", http.StatusForbidden)
		return false
	}
	if r.Header.Get("X-Dsub-Control") != "1" {
		http.Error(w, "forbidden: missing X-Dsub-Control header", http.StatusForbidden)
		return false
	}
	return true
}

// stop stops the run as Ctrl-C would.
func (s *Server) stop(w http.ResponseWriter, r *http.Request) {
	if !s.control(w, r) {
		return
	}
	s.m.Warn("stop requested from the monitor page")
	s.opts.Stop()
	w.WriteHeader(http.StatusNoContent)
}

// cancel cancels job ?job=N: it fails, and the run goes on.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	if !s.control(w, r) {
		return
	}
	job, err := strconv.Atoi(r.URL.Query().Get("job"))
	if err != nil || job < 1 || s.opts.CancelJob == nil {
		http.Error(w, "bad request: want ?job=N", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	if err := s.opts.CancelJob(ctx, job); err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
