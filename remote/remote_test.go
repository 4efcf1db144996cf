package remote_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/testenv"
)

// cluster is shared by the tests of this package; tests that inject faults
// restore the host before they end.
var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, 4, func(c *testenv.Cluster) { cluster = c }))
}

func needCluster(t *testing.T) {
	t.Helper()
	testenv.Require(t, cluster)
}

func hostConfig(t *testing.T, name string) remote.Config {
	t.Helper()
	h, err := cluster.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return remote.Config{
		Name: h.Name, Host: h.Addr, Port: h.Port, User: h.User,
		IdentityFiles: []string{cluster.KeyFile}, IdentitiesOnly: true,
		// Generous: CI runs every package's cluster at once on 2 cores, and
		// a handshake has been seen to take over 5 s there. Tests about
		// timeouts and keepalives set their own.
		KnownHosts: []string{cluster.KnownHosts}, ConnectTimeout: 20 * time.Second, Keepalive: 5 * time.Second,
	}
}

func newHost(t *testing.T, name string) *remote.SSHHost {
	t.Helper()
	needCluster(t)
	d := &remote.Dialer{NoAgent: true}
	h := d.Host(hostConfig(t, name))
	t.Cleanup(func() { h.Close() })
	return h
}

func run(t *testing.T, h remote.Host, c *remote.Cmd) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := h.Run(ctx, c)
	return out.String(), errb.String(), err
}

// randomArg draws from the characters that break naive quoting.
func randomArg(r *mrand.Rand) string {
	pieces := []string{"", " ", "'", `"`, "\\", "$(id)", "`id`", "$HOME", "${x}", "\n", "\t", ";", "&&", "|", "*", "?", "[a]",
		"~", "#", "!", "%s", "-n", "--", "é", "日本語", "🙂", "a b", "\r", "{}", "<", ">", "(", ")", "=", "\x01", "\x7f"}
	n := r.IntN(5)
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// TestArgvReachesProgramByteForByte is the quoting property test: random
// argv built from shell metacharacters, quotes, $(), newlines, empty
// strings and UTF-8 arrive at the remote program unchanged.
func TestArgvReachesProgramByteForByte(t *testing.T) {
	h := newHost(t, "h01")
	r := mrand.New(mrand.NewPCG(1, 2))
	for i := 0; i < 150; i++ {
		args := []string{randomArg(r), randomArg(r), randomArg(r)}
		if i == 0 {
			args = []string{"", "a b", "$(x)", "'", "\n"}
		}
		out, _, err := run(t, h, &remote.Cmd{Argv: append([]string{"printf", `%s\0`}, args...)})
		if err != nil {
			t.Fatalf("args %q: %v", args, err)
		}
		want := strings.Join(args, "\x00") + "\x00"
		if out != want {
			t.Fatalf("args %q arrived as %q", args, out)
		}
	}
}

func TestShellLineAndEnvAndDir(t *testing.T) {
	h := newHost(t, "h01")
	out, _, err := run(t, h, &remote.Cmd{Shell: `echo "$A|$B" | tr a-z A-Z; pwd`, Env: map[string]string{"A": "x y'$(z)", "B": "line1\nline2"}, Dir: "~"})
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := cluster.Host("h01")
	want := "X Y'$(Z)|LINE1\nLINE2\n" + "/home/" + h1.User + "\n"
	if c := cluster; c.Backend == testenv.Process {
		want = "X Y'$(Z)|LINE1\nLINE2\n" + h1.Home + "\n"
	}
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	if _, _, err := run(t, h, &remote.Cmd{Argv: []string{"true"}, Env: map[string]string{"BAD-NAME": "x"}}); errs.KindOf(err) != errs.KindConfig {
		t.Errorf("invalid env name: err = %v, want config error", err)
	}
}

func TestExitStatusSignalAndStreams(t *testing.T) {
	h := newHost(t, "h01")
	tests := []struct {
		name, shell     string
		status          int
		signal, out, er string
	}{
		{"ok", "echo out; echo err >&2", 0, "", "out\n", "err\n"},
		{"exit 3", "echo partial; exit 3", 3, "", "partial\n", ""},
		{"signal", "kill -s KILL $$", -1, "KILL", "", ""},
		{"stderr without newline", "printf abc >&2", 0, "", "", "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, er, err := run(t, h, &remote.Cmd{Shell: tt.shell})
			if got := remote.ExitStatus(err); got != tt.status {
				t.Errorf("status = %d (%v), want %d", got, err, tt.status)
			}
			var ee *remote.ExitError
			if tt.status != 0 {
				if !errors.As(err, &ee) || ee.Signal != tt.signal || errs.KindOf(err) != errs.KindRemoteExit {
					t.Errorf("err = %#v, want remote exit with signal %q", err, tt.signal)
				}
				if !strings.Contains(err.Error(), "on h01") {
					t.Errorf("error %q does not name the host", err)
				}
			}
			if out != tt.out || er != tt.er {
				t.Errorf("stdout %q stderr %q, want %q %q", out, er, tt.out, tt.er)
			}
		})
	}
}

// pgrep lists the host user's processes whose command line matches pat.
func pgrep(t *testing.T, host, pat string) string {
	t.Helper()
	h, _ := cluster.Host(host)
	out, _ := cluster.Exec(context.Background(), host, "pgrep", "-a", "-u", h.User, "-f", pat)
	return strings.TrimSpace(string(out))
}

// procs counts the processes matching pat on host.
func procs(t *testing.T, host, pat string) int {
	t.Helper()
	if out := pgrep(t, host, pat); out != "" {
		return len(strings.Split(out, "\n"))
	}
	return 0
}

// TestCancelKillsRemoteProcessGroup: cancelling the context kills the
// command and every process it started, not just the channel.
func TestCancelKillsRemoteProcessGroup(t *testing.T) {
	h := newHost(t, "h02")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- h.Run(ctx, &remote.Cmd{Shell: "sleep 311 & sleep 312 & sh -c 'sleep 313'; wait"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for pgrep(t, "h02", "sleep 31[123]") == "" || strings.Count(pgrep(t, "h02", "sleep 31[123]"), "\n") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("remote sleeps never started: %q", pgrep(t, "h02", "sleep 31"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	start := time.Now()
	cancel()
	err := <-errc
	if errs.KindOf(err) != errs.KindCanceled {
		t.Errorf("err = %v, want canceled", err)
	}
	t.Logf("cancel to killed: %s", time.Since(start).Round(time.Millisecond))
	if left := pgrep(t, "h02", "sleep 31[123]"); left != "" {
		t.Errorf("processes left on the host after cancel:\n%s", left)
	}
}

// TestKillOrphan: a command whose connection is lost keeps running on the
// host (closing a connection kills nothing); the error carries its process
// group, which KillOrphan kills over a new connection, but only if the
// group's leader shows the marker (the command's Dir) in its command line
// (a shell command) or as its working directory (an exec'd program).
func TestKillOrphan(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHost(t, "h03")
	dir := "/tmp/orphan-" + strconv.Itoa(os.Getpid())
	if _, _, err := run(t, h, &remote.Cmd{Argv: []string{"mkdir", "-p", dir}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cmd  remote.Cmd
		pat  string
		n    int // processes matching pat (the shell's own command line matches too)
	}{
		{"shell", remote.Cmd{Shell: "sleep 331 & sleep 331; wait", Dir: dir}, "sleep 331", 3},
		{"argv", remote.Cmd{Argv: []string{"sleep", "332"}, Dir: dir}, "sleep 332", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lost := (&remote.Dialer{NoAgent: true}).Host(hostConfig(t, "h03"))
			errc := make(chan error, 1)
			go func() { errc <- lost.Run(ctx, &tt.cmd) }()
			for deadline := time.Now().Add(10 * time.Second); procs(t, "h03", tt.pat) < tt.n; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("remote sleeps never started")
				}
			}
			time.Sleep(100 * time.Millisecond) // the process-group report precedes the sleeps, but travels separately
			lost.Close()                       // the connection is lost; the processes are not
			err := <-errc
			var re *errs.Error
			if !errors.As(err, &re) || re.Kind != errs.KindTransport || re.PGID <= 1 {
				t.Fatalf("err = %v (%+v), want a transport error with the process group", err, re)
			}
			time.Sleep(200 * time.Millisecond)
			if n := procs(t, "h03", tt.pat); n != tt.n {
				t.Fatalf("%d orphans running, want %d", n, tt.n)
			}
			found, err := h.KillOrphan(ctx, re.PGID, remote.Marker{Dir: "/tmp", Env: "DSUB_RUN=not-its-run"})
			if err != nil || found {
				t.Errorf("KillOrphan with a foreign marker: found %v, err %v; want the group left alone", found, err)
			}
			if n := procs(t, "h03", tt.pat); n != tt.n {
				t.Errorf("after a foreign marker %d processes remain, want %d", n, tt.n)
			}
			found, err = h.KillOrphan(ctx, re.PGID, remote.Marker{Dir: dir})
			if err != nil || !found {
				t.Errorf("KillOrphan: found %v, err %v", found, err)
			}
			if left := pgrep(t, "h03", tt.pat); left != "" {
				t.Errorf("orphans left: %s", left)
			}
			found, err = h.KillOrphan(ctx, re.PGID, remote.Marker{Dir: dir})
			if err != nil || found {
				t.Errorf("KillOrphan of a gone group: found %v, err %v", found, err)
			}
		})
	}
}

// TestKillMarked: KillMarked finds and kills, by an exact marker, process
// groups the caller has no number for: a command whose connection was
// lost, a background child that outlived its shell (both with the marker
// directory as their working directory), and a process elsewhere whose
// environment holds the marker entry. A process that merely names the
// directory in its arguments (a user's `tail -f DIR/x`) and one with a
// longer environment value are left running: no substring matches.
func TestKillMarked(t *testing.T) {
	needCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := newHost(t, "h03")
	id := strconv.Itoa(os.Getpid())
	dir, other := "/tmp/marked-"+id, "/tmp/other-"+id
	if _, _, err := run(t, h, &remote.Cmd{Argv: []string{"mkdir", "-p", dir, other}}); err != nil {
		t.Fatal(err)
	}
	mark := remote.Marker{Dir: dir, Env: "DSUB_RUN=" + id}
	lost := (&remote.Dialer{NoAgent: true}).Host(hostConfig(t, "h03"))
	for _, c := range []remote.Cmd{
		{Shell: "sleep 351 & sleep 351; wait", Dir: dir},
		{Shell: "sleep 354", Dir: other},
		{Argv: []string{"sh", "-c", "sleep 355; : " + dir + "/x", "tail"}, Dir: other}, // names dir in its arguments
		{Shell: "sleep 356", Dir: other, Env: map[string]string{"DSUB_RUN": id}},       // carries the marker elsewhere
		{Shell: "sleep 357", Dir: other, Env: map[string]string{"DSUB_RUN": id + "0"}}, // a longer value: not the marker
	} {
		go lost.Run(ctx, &c)
	}
	// A leader that exits at once, leaving its child in the group.
	if _, _, err := run(t, h, &remote.Cmd{Shell: "sleep 352 >/dev/null 2>&1 & exit 0", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"sleep 351", "sleep 352", "sleep 354", "sleep 355", "sleep 356", "sleep 357"} {
		for deadline := time.Now().Add(10 * time.Second); pgrep(t, "h03", p) == ""; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("remote %s never started: %s", p, pgrep(t, "h03", "sleep 35"))
			}
		}
	}
	lost.Close()
	time.Sleep(200 * time.Millisecond)
	n, err := h.KillMarked(ctx, mark)
	if err != nil || n != 3 {
		t.Errorf("KillMarked = %d, %v; want 3 groups", n, err)
	}
	if left := pgrep(t, "h03", "sleep 35[126]"); left != "" {
		t.Errorf("marked processes left: %s", left)
	}
	for _, p := range []string{"sleep 354", "sleep 355", "sleep 357"} {
		if pgrep(t, "h03", p) == "" {
			t.Errorf("%s, which does not carry the marker, was killed", p)
		}
	}
	if n, err := h.KillMarked(ctx, remote.Marker{Dir: other}); err != nil || n != 3 || pgrep(t, "h03", "sleep 35[457]") != "" {
		t.Errorf("KillMarked(other) = %d, %v; left %q", n, err, pgrep(t, "h03", "sleep 35[457]"))
	}
	if n, err := h.KillMarked(ctx, mark); err != nil || n != 0 {
		t.Errorf("KillMarked with nothing left = %d, %v", n, err)
	}
	for _, bad := range []remote.Marker{{Dir: "/"}, {}, {Dir: "~"}, {Env: "DSUB_RUN="}, {Env: "DSUB_RUN"}} {
		if _, err := h.KillMarked(ctx, bad); errs.KindOf(err) != errs.KindConfig {
			t.Errorf("KillMarked(%+v) = %v, want a config error", bad, err)
		}
	}
}

// TestTimeoutKillsRemoteProcess: a command whose deadline passes has its
// remote process group killed: TERM, then KILL for a group that ignores
// TERM (the escalation, timed and logged). The host is connected and the
// process seen running before the deadline is set, so the handshake is
// not part of it.
func TestTimeoutKillsRemoteProcess(t *testing.T) {
	for _, tt := range []struct {
		name, shell, pat string
	}{
		{"term", "sleep 321", "sleep 321"},
		{"term ignored", "trap '' TERM; sleep 323 & wait; sleep 323", "sleep 323"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHost(t, "h02")
			if err := h.Connect(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- h.Run(ctx, &remote.Cmd{Shell: tt.shell}) }()
			for deadline := time.Now().Add(20 * time.Second); pgrep(t, "h02", tt.pat) == ""; time.Sleep(50 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%s never started", tt.pat)
				}
			}
			start := time.Now()
			cancel(context.DeadlineExceeded) // the deadline passes now
			err := <-errc
			t.Logf("%s: killed in %s", tt.name, time.Since(start).Round(10*time.Millisecond))
			if err == nil {
				t.Errorf("err = nil, want the command interrupted")
			}
			if left := pgrep(t, "h02", tt.pat); left != "" {
				t.Errorf("process left after the deadline: %s", left)
			}
		})
	}
}

// TestManyConcurrentSessions: 20 sessions at once on one host, beyond
// sshd's MaxSessions of 10 per connection; none may fail.
// TestManyConcurrentSessions: more sessions than sshd's MaxSessions (10,
// stock) on one connection: sshd refuses the excess opens, and dsub backs
// off and retries them, so no command fails. The client is allowed 30
// sessions on a single connection, so refusals must happen (counted).
func TestManyConcurrentSessions(t *testing.T) {
	needCluster(t)
	cfg := hostConfig(t, "h03")
	cfg.MaxPerConn, cfg.MaxConns = 30, 1
	h := (&remote.Dialer{NoAgent: true}).Host(cfg)
	t.Cleanup(func() { h.Close() })
	var wg sync.WaitGroup
	errs := make([]error, 30)
	outs := make([]string, 30)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			errs[i] = h.Run(context.Background(), &remote.Cmd{Shell: fmt.Sprintf("sleep 0.5; echo %d", i), Stdout: &out})
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil || outs[i] != fmt.Sprintf("%d\n", i) {
			t.Errorf("session %d: %q, %v", i, outs[i], err)
		}
	}
	t.Logf("sshd refused %d session opens; every one was retried", h.Refused())
	if h.Refused() == 0 {
		t.Errorf("sshd refused no session: the test did not reach MaxSessions")
	}
	// High churn: 200 short sessions, 20 at a time.
	sem := make(chan struct{}, 20)
	var mu sync.Mutex
	var failed []error
	for i := 0; i < 200; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := h.Run(context.Background(), &remote.Cmd{Argv: []string{"true"}}); err != nil {
				mu.Lock()
				failed = append(failed, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Errorf("%d of 200 churn sessions failed; first: %v", len(failed), failed[0])
	}
}

func writeKnownHosts(t *testing.T, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostKeyChecking(t *testing.T) {
	needCluster(t)
	h1, _ := cluster.Host("h01")
	h2, _ := cluster.Host("h02")
	entry := fmt.Sprintf("[%s]:%d", h1.Addr, h1.Port)
	ctx := context.Background()

	t.Run("wrong key refused", func(t *testing.T) {
		cfg := hostConfig(t, "h01")
		cfg.KnownHosts = []string{writeKnownHosts(t, entry+" "+h2.HostKey)}
		d := &remote.Dialer{NoAgent: true, AcceptNew: true} // accept-new never overrides a mismatch
		err := d.Host(cfg).Run(ctx, &remote.Cmd{Argv: []string{"touch", "should-not-exist"}})
		var hk *remote.HostKeyError
		if errs.KindOf(err) != errs.KindHostKey || !errors.As(err, &hk) || !hk.Changed {
			t.Fatalf("err = %v, want host key mismatch", err)
		}
		if !strings.Contains(err.Error(), "HOST KEY MISMATCH") || !strings.Contains(err.Error(), "ssh-keygen -R") {
			t.Errorf("message not loud or lacks a hint: %v", err)
		}
		// Nothing ran: the file is absent.
		ok := newHost(t, "h01")
		if _, _, err := run(t, ok, &remote.Cmd{Argv: []string{"test", "!", "-e", "should-not-exist"}}); err != nil {
			t.Errorf("command ran on a host with a mismatched key: %v", err)
		}
	})
	t.Run("unknown refused then accept-new", func(t *testing.T) {
		cfg := hostConfig(t, "h01")
		kh := filepath.Join(t.TempDir(), "sub", "known_hosts") // does not exist yet
		cfg.KnownHosts = []string{kh}
		err := (&remote.Dialer{NoAgent: true, FirstUseHint: "trust it on first use"}).Host(cfg).Run(ctx, &remote.Cmd{Argv: []string{"true"}})
		if errs.KindOf(err) != errs.KindHostKey || !strings.Contains(err.Error(), "unknown host") ||
			!strings.Contains(err.Error(), "SHA256:") || !strings.Contains(err.Error(), "ssh-keyscan") || !strings.Contains(err.Error(), "(or trust it on first use)") {
			t.Fatalf("unknown host: err = %v", err)
		}
		var warned []string
		d := &remote.Dialer{NoAgent: true, AcceptNew: true, Warn: func(s string) { warned = append(warned, s) }}
		if _, _, err := run(t, d.Host(cfg), &remote.Cmd{Argv: []string{"true"}}); err != nil {
			t.Fatalf("accept-new: %v", err)
		}
		b, _ := os.ReadFile(kh)
		if !strings.Contains(string(b), entry) || len(warned) != 1 {
			t.Errorf("accept-new wrote %q, warned %q", b, warned)
		}
		// Now known: a fresh Dialer without accept-new connects.
		if _, _, err := run(t, (&remote.Dialer{NoAgent: true}).Host(cfg), &remote.Cmd{Argv: []string{"true"}}); err != nil {
			t.Errorf("after accept-new: %v", err)
		}
	})
	t.Run("accept-new after a last line without newline", func(t *testing.T) {
		cfg := hostConfig(t, "h01")
		kh := filepath.Join(t.TempDir(), "known_hosts")
		h2entry := fmt.Sprintf("[%s]:%d %s", h2.Addr, h2.Port, h2.HostKey)
		os.WriteFile(kh, []byte(h2entry), 0o600) // no trailing newline
		cfg.KnownHosts = []string{kh}
		if _, _, err := run(t, (&remote.Dialer{NoAgent: true, AcceptNew: true}).Host(cfg), &remote.Cmd{Argv: []string{"true"}}); err != nil {
			t.Fatalf("accept-new: %v", err)
		}
		b, _ := os.ReadFile(kh)
		if !strings.HasPrefix(string(b), h2entry+"\n") {
			t.Fatalf("the earlier line was merged with the new one: %q", b)
		}
		// Both lines still work, for a fresh Dialer without accept-new.
		for _, name := range []string{"h01", "h02"} {
			c := hostConfig(t, name)
			c.KnownHosts = []string{kh}
			if _, _, err := run(t, (&remote.Dialer{NoAgent: true}).Host(c), &remote.Cmd{Argv: []string{"true"}}); err != nil {
				t.Errorf("%s after accept-new: %v", name, err)
			}
		}
	})
	t.Run("revoked key refused as a trust error", func(t *testing.T) {
		cfg := hostConfig(t, "h01")
		cfg.KnownHosts = []string{writeKnownHosts(t, "@revoked "+entry+" "+h1.HostKey+"\n"+entry+" "+h1.HostKey)}
		d := &remote.Dialer{NoAgent: true, AcceptNew: true}
		err := d.Host(cfg).Run(ctx, &remote.Cmd{Argv: []string{"true"}})
		if errs.KindOf(err) != errs.KindHostKey || !strings.Contains(err.Error(), "refused") {
			t.Fatalf("revoked key: err = %v (kind %v), want a host key (trust) error", err, errs.KindOf(err))
		}
	})
	t.Run("global known hosts pin the key", func(t *testing.T) {
		// A user file that would accept anything new, and a global file
		// that pins h01 to h02's key: refused as a mismatch, never
		// re-accepted.
		cfg := hostConfig(t, "h01")
		cfg.KnownHosts = []string{filepath.Join(t.TempDir(), "user_known_hosts"), writeKnownHosts(t, entry+" "+h2.HostKey)}
		err := (&remote.Dialer{NoAgent: true, AcceptNew: true}).Host(cfg).Run(ctx, &remote.Cmd{Argv: []string{"true"}})
		var hk *remote.HostKeyError
		if !errors.As(err, &hk) || !hk.Changed {
			t.Fatalf("err = %v, want a mismatch against the global file", err)
		}
	})
	t.Run("only ed25519 known while server also has rsa", func(t *testing.T) {
		// The cluster's known_hosts holds only ed25519 keys (golang/go#29286).
		b, _ := os.ReadFile(cluster.KnownHosts)
		if strings.Contains(string(b), "ssh-rsa") {
			t.Fatal("known_hosts unexpectedly holds rsa keys")
		}
		if _, _, err := run(t, newHost(t, "h01"), &remote.Cmd{Argv: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("hashed entry", func(t *testing.T) {
		cfg := hostConfig(t, "h01")
		kh := writeKnownHosts(t, entry+" "+h1.HostKey)
		if out, err := execOut("ssh-keygen", "-H", "-f", kh); err != nil {
			t.Fatalf("ssh-keygen -H: %v %s", err, out)
		}
		b, _ := os.ReadFile(kh)
		if !strings.HasPrefix(string(b), "|1|") {
			t.Fatalf("not hashed: %q", b)
		}
		cfg.KnownHosts = []string{kh}
		if _, _, err := run(t, (&remote.Dialer{NoAgent: true}).Host(cfg), &remote.Cmd{Argv: []string{"true"}}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAuthErrors(t *testing.T) {
	needCluster(t)
	dir := t.TempDir()
	// A key the hosts do not accept.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ := ssh.MarshalPrivateKey(priv, "")
	other := filepath.Join(dir, "other")
	os.WriteFile(other, pem.EncodeToMemory(blk), 0o600)
	// A passphrase-protected key, with no agent.
	blk, _ = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	locked := filepath.Join(dir, "locked")
	os.WriteFile(locked, pem.EncodeToMemory(blk), 0o600)
	// The cluster's own key, readable by others: OpenSSH ignores it.
	key, _ := os.ReadFile(cluster.KeyFile)
	openKey := filepath.Join(dir, "open")
	os.WriteFile(openKey, key, 0o644)
	os.Chmod(openKey, 0o644)

	tests := []struct {
		name  string
		files []string
		kind  errs.Kind
		want  string
	}{
		{"wrong key", []string{other}, errs.KindAuth, "unable to authenticate"},
		// No usable key at all is the configuration's fault (exit 2).
		{"passphrase", []string{locked}, errs.KindConfig, "passphrase-protected and no ssh-agent holds it"},
		{"missing", []string{filepath.Join(dir, "nope")}, errs.KindConfig, "not found"},
		{"readable by others", []string{openKey}, errs.KindConfig, "UNPROTECTED PRIVATE KEY FILE! Permissions 0644"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := hostConfig(t, "h01")
			cfg.IdentityFiles = tt.files
			err := (&remote.Dialer{NoAgent: true}).Host(cfg).Run(context.Background(), &remote.Cmd{Argv: []string{"true"}})
			if errs.KindOf(err) != tt.kind || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v (kind %v), want %v containing %q", err, errs.KindOf(err), tt.kind, tt.want)
			}
		})
	}
}

// TestPausedHostTimesOut: a hung host costs the caller its timeout, not
// forever, and other hosts are unaffected.
func TestPausedHostTimesOut(t *testing.T) {
	needCluster(t)
	ctx := context.Background()
	if err := cluster.Pause(ctx, "h04"); err != nil {
		t.Fatal(err)
	}
	defer cluster.Unpause(ctx, "h04")
	cfg := hostConfig(t, "h04")
	h := (&remote.Dialer{NoAgent: true}).Host(cfg)
	defer h.Close()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	err := h.Run(tctx, &remote.Cmd{Argv: []string{"true"}})
	if k := errs.KindOf(err); k != errs.KindTimeout {
		t.Errorf("err = %v (kind %v), want timeout", err, k)
	}
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("took %s", d)
	}
	if _, _, err := run(t, newHost(t, "h03"), &remote.Cmd{Argv: []string{"true"}}); err != nil {
		t.Errorf("other host: %v", err)
	}
}

// TestKeepaliveDetectsHungConnection: an established, idle connection to
// a host that hangs is declared dead after three missed keepalives (1s
// apart here), and a command on the hung host fails as a transport error.
func TestKeepaliveDetectsHungConnection(t *testing.T) {
	needCluster(t)
	cfg := hostConfig(t, "h04")
	cfg.ConnectTimeout = 5 * time.Second // the reconnect below must time out
	cfg.Keepalive = time.Second
	h := (&remote.Dialer{NoAgent: true}).Host(cfg)
	defer h.Close()
	ctx := context.Background()
	if err := h.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if h.Conns() != 1 {
		t.Fatalf("Conns() = %d after Connect", h.Conns())
	}
	if err := cluster.Pause(ctx, "h04"); err != nil {
		t.Fatal(err)
	}
	defer cluster.Unpause(ctx, "h04")
	start := time.Now()
	for h.Conns() > 0 {
		if time.Since(start) > 30*time.Second {
			t.Fatal("hung connection never declared dead")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("hung connection declared dead after %s (keepalive 1s, 3 misses)", time.Since(start).Round(time.Millisecond))
	err := h.Run(ctx, &remote.Cmd{Argv: []string{"true"}})
	if errs.KindOf(err) != errs.KindTransport || !strings.Contains(err.Error(), "connect timeout") {
		t.Errorf("err = %v (kind %v), want transport with connect timeout", err, errs.KindOf(err))
	}
}

func TestFileOperations(t *testing.T) {
	h := newHost(t, "h01")
	ctx := context.Background()
	data := make([]byte, 5<<20+123)
	rand.Read(data)
	base := fmt.Sprintf("~/files-%d", time.Now().UnixNano())
	n, err := h.Upload(ctx, base+"/a/b/blob", bytes.NewReader(data), 0o750)
	if err != nil || n != int64(len(data)) {
		t.Fatalf("upload: %d, %v", n, err)
	}
	fi, err := h.Stat(ctx, base+"/a/b/blob")
	if err != nil || fi.Size() != int64(len(data)) || fi.Mode().Perm() != 0o750 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	var got bytes.Buffer
	if _, err := h.Download(ctx, base+"/a/b/blob", &got); err != nil || !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("download: %d bytes, %v", got.Len(), err)
	}
	// No temp files left beside it.
	ents, err := h.ReadDir(ctx, base+"/a/b")
	if err != nil || len(ents) != 1 || ents[0].Name() != "blob" {
		t.Errorf("readdir: %v %v", ents, err)
	}
	steps := []struct {
		name string
		f    func() error
	}{
		{"mkdir", func() error { return h.MkdirAll(ctx, base+"/x/y") }},
		{"write", func() error { return h.WriteFile(ctx, base+"/x/y/f", []byte("hello\n"), 0o600) }},
		{"chmod", func() error { return h.Chmod(ctx, base+"/x/y/f", 0o644) }},
		{"symlink", func() error { return h.Symlink(ctx, "f", base+"/x/y/l") }},
		{"rename", func() error { return h.Rename(ctx, base+"/x/y/f", base+"/x/y/g") }},
	}
	for _, s := range steps {
		if err := s.f(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if b, err := h.ReadFile(ctx, base+"/x/y/g"); err != nil || string(b) != "hello\n" {
		t.Errorf("read: %q %v", b, err)
	}
	if b, err := h.ReadFile(ctx, base+"/x/y/l"); err == nil {
		t.Errorf("symlink to renamed file should dangle, read %q", b)
	}
	if fi, err := h.Stat(ctx, base+"/x/y/g"); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("chmod: %v %v", fi, err)
	}
	if err := h.Remove(ctx, base+"/x/y/l"); err != nil {
		t.Error(err)
	}
	_, err = h.Stat(ctx, base+"/nope")
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "stat files-") || !strings.Contains(err.Error(), "on h01") {
		t.Errorf("stat missing: %v", err)
	}
	if err := h.RemoveAll(ctx, base); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Stat(ctx, base); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after RemoveAll: %v", err)
	}
	if err := h.RemoveAll(ctx, "~"); errs.KindOf(err) != errs.KindConfig {
		t.Errorf("RemoveAll(~) = %v, want refusal", err)
	}
}

// TestProxyJump reaches h03 through h01.
func TestProxyJump(t *testing.T) {
	needCluster(t)
	h3, _ := cluster.Host("h03")
	cfg := hostConfig(t, "h03")
	j, _ := cluster.Host("h01")
	cfg.ProxyJump = []remote.Jump{{User: j.User, Host: j.Addr, Port: j.Port}}
	if cluster.Backend == testenv.Docker {
		// From inside h01, h03 is reachable by name on the cluster network.
		cfg.Host, cfg.Port = "h03", 22
		cfg.KnownHosts = []string{writeKnownHosts(t,
			fmt.Sprintf("[%s]:%d %s", j.Addr, j.Port, j.HostKey), "h03 "+h3.HostKey)}
	}
	cfg.ConnectTimeout = 30 * time.Second // two handshakes, on a loaded machine
	// Fanout 1: the jump host's handshake must not wait for the slot the
	// target's holds.
	d := &remote.Dialer{NoAgent: true, Fanout: 1}
	defer d.Close()
	out, _, err := run(t, d.Host(cfg), &remote.Cmd{Argv: []string{"uname", "-n"}})
	if err != nil {
		t.Fatal(err)
	}
	if cluster.Backend == testenv.Docker && strings.TrimSpace(out) != "h03" {
		t.Errorf("uname -n via jump = %q", out)
	}
	// The shared connection to the jump host dies (its sshd processes for
	// the user are killed): the next connection through it re-dials the
	// jump host instead of failing for good.
	if out, err := cluster.Exec(context.Background(), j.Name, "pkill", "-u", j.User, "sshd"); err != nil {
		t.Fatalf("kill the jump connection: %v %s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, _, err = run(t, d.Host(cfg), &remote.Cmd{Argv: []string{"true"}})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("through the jump host after its connection died: %v", err)
	}
}

func TestProbe(t *testing.T) {
	h := newHost(t, "h01")
	info, err := remote.Probe(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if info.OS != "linux" || info.Arch == "" || info.CPUs < 1 || info.RTT <= 0 {
		t.Errorf("probe = %+v", info)
	}
}

var _ io.Writer = (*bytes.Buffer)(nil)

// A host that waits for its turn is not a dead one: its connect timeout
// runs from when it gets a handshake slot, not while others hold them.
// One slot (Fanout 1) is held by a paused host for its whole timeout,
// 6 s; the hosts queued behind it, with 3 s each, still connect once it
// gives the slot up.
func TestQueuedHostIsNotTimedOut(t *testing.T) {
	needCluster(t)
	ctx := context.Background()
	if err := cluster.Pause(ctx, "h04"); err != nil {
		t.Fatal(err)
	}
	defer cluster.Unpause(ctx, "h04")
	d := &remote.Dialer{NoAgent: true, Fanout: 1}
	dial := func(name string, timeout time.Duration) <-chan error {
		cfg := hostConfig(t, name)
		cfg.ConnectTimeout = timeout
		h := d.Host(cfg)
		t.Cleanup(func() { h.Close() })
		errc := make(chan error, 1)
		go func() { errc <- h.Connect(ctx) }()
		return errc
	}
	paused := dial("h04", 6*time.Second)
	time.Sleep(300 * time.Millisecond) // h04 takes the one slot
	var queued []<-chan error
	for _, name := range []string{"h01", "h02", "h03"} {
		queued = append(queued, dial(name, 3*time.Second))
	}
	if err := <-paused; errs.KindOf(err) != errs.KindTransport || !strings.Contains(err.Error(), "connect timeout") {
		t.Errorf("paused h04: %v, want its own connect timeout", err)
	}
	for i, errc := range queued {
		if err := <-errc; err != nil {
			t.Errorf("h0%d, queued behind h04: %v; want connected once its turn came", i+1, err)
		}
	}
}

// Through a jump host the same holds: a host waiting for one of the jump
// host's handshake places (PerJump) is not timed out while it waits. One
// place (PerJump 1) is held by a paused target for its whole 6 s; the
// targets queued behind it, with 3 s each, connect once it is free
// (through a jump host 50 ms away, 350 of 500 hosts once failed so).
func TestQueuedBehindJumpIsNotTimedOut(t *testing.T) {
	needCluster(t)
	ctx := context.Background()
	if err := cluster.Pause(ctx, "h04"); err != nil {
		t.Fatal(err)
	}
	defer cluster.Unpause(ctx, "h04")
	j, _ := cluster.Host("h01")
	d := &remote.Dialer{NoAgent: true, PerJump: 1}
	defer d.Close()
	dial := func(name string, timeout time.Duration) <-chan error {
		h, _ := cluster.Host(name)
		cfg := hostConfig(t, name)
		cfg.ProxyJump = []remote.Jump{{User: j.User, Host: j.Addr, Port: j.Port}}
		if cluster.Backend == testenv.Docker {
			cfg.Host, cfg.Port = name, 22 // by name on the cluster network
			cfg.KnownHosts = []string{writeKnownHosts(t, fmt.Sprintf("[%s]:%d %s", j.Addr, j.Port, j.HostKey), name+" "+h.HostKey)}
		}
		cfg.ConnectTimeout = timeout
		rh := d.Host(cfg)
		t.Cleanup(func() { rh.Close() })
		errc := make(chan error, 1)
		go func() { errc <- rh.Connect(ctx) }()
		return errc
	}
	// The jump host's own connection first, so that the paused target
	// is what holds the one place.
	if err := <-dial("h02", 30*time.Second); err != nil {
		t.Fatalf("h02 through h01: %v", err)
	}
	paused := dial("h04", 6*time.Second)
	time.Sleep(300 * time.Millisecond) // h04 takes the one place
	queued := []<-chan error{dial("h03", 3*time.Second)}
	if err := <-paused; err == nil {
		t.Errorf("paused h04 through h01 connected")
	}
	for _, errc := range queued {
		if err := <-errc; err != nil {
			t.Errorf("h03, queued behind h04 at the jump host: %v; want connected once its turn came", err)
		}
	}
}
