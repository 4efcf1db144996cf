package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// logWriter forwards progress lines to t.Log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Start brings up an n-host cluster for the calling test and removes it
// with t.Cleanup. Each call gets a unique name and fresh ports, so parallel
// tests and packages do not collide. The backend comes from ChooseBackend:
// when CI=true a missing Docker engine fails the test; elsewhere, a machine
// with neither Docker nor root for the process backend skips it, saying why.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test against real sshd; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if os.Getenv("CI") != "true" {
		if b, err := ChooseBackend(ctx, ""); err == nil && b == Process && os.Geteuid() != 0 {
			t.Skip("testenv: no Docker engine, and the process backend needs root")
		}
	}
	c, err := StartUnique(ctx, n, logWriter{t})
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := c.Down(ctx); err != nil {
			t.Errorf("testenv down: %v", err)
		}
	})
	return c
}

// StartUnique brings up an n-host cluster with a unique name in a fresh
// temporary state directory. It is Start for TestMain, benchmarks and demos,
// where no testing.TB exists; the caller must Down the cluster. It logs the
// backend used and how long start-up took.
func StartUnique(ctx context.Context, n int, log io.Writer) (*Cluster, error) {
	return StartBackend(ctx, n, "", log)
}

// StartBackend is StartUnique with an explicit backend ("" chooses).
func StartBackend(ctx context.Context, n int, b Backend, log io.Writer) (*Cluster, error) {
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := "t" + hex.EncodeToString(rnd[:])
	dir, err := os.MkdirTemp("", "dsub-testenv-"+name+"-")
	if err != nil {
		return nil, err
	}
	start := time.Now()
	c, err := Up(ctx, Options{N: n, Name: name, Dir: dir, Backend: b, Log: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	fmt.Fprintf(log, "testenv: cluster %s up: %d hosts, backend=%s, in %s (state %s)\n",
		c.Name, n, c.Backend, time.Since(start).Round(time.Millisecond), c.Dir)
	return c, nil
}

// Main runs a package's tests around one shared n-host cluster: call it
// from TestMain as os.Exit(testenv.Main(m, 4, func(c *Cluster) { cluster = c })).
// In -short mode no cluster is started and set is not called, so
// integration tests can skip. A cluster that cannot start fails the run.
func Main(m interface{ Run() int }, n int, set func(*Cluster)) int {
	// (Fuzzing starts no cluster: its workers re-run TestMain and are
	// killed without running the teardown, which would leak clusters;
	// fuzz targets are local.)
	flag.Parse()
	if testing.Short() || fuzzing() {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	c, err := StartUnique(ctx, n, os.Stderr)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	set(c)
	code := m.Run()
	if err := c.Down(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "testenv down:", err)
	}
	return code
}

// WaitNoProcesses waits up to timeout until no process of each host's
// login user matches pattern (pgrep -f), and reports those left.
func (c *Cluster) WaitNoProcesses(ctx context.Context, pattern string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, h := range c.Hosts {
			out, err := c.Exec(ctx, h.Name, "pgrep", "-a", "-u", h.User, "-f", pattern)
			if err != nil && !noMatch(err) {
				// pgrep exits 1 for "no process": anything else (no
				// pgrep, a bad pattern, no host) is not "clean".
				return fmt.Errorf("looking for processes matching %q on %s: %v: %s", pattern, h.Name, err, bytes.TrimSpace(out))
			}
			if s := strings.TrimSpace(string(out)); s != "" {
				left = append(left, h.Name+": "+s)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes matching %q left after %s:\n%s", pattern, timeout, strings.Join(left, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Require skips an integration test when no shared cluster was started
// (go test -short), and fails it instead when CI=true: in CI every
// integration test must run against real sshd.
func Require(t testing.TB, c *Cluster) {
	t.Helper()
	if c != nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true: this integration test needs the testenv cluster; do not run CI with -short")
	}
	t.Skip("integration test against real sshd; run without -short")
}

// fuzzing reports whether the test binary runs as a fuzzing coordinator
// or worker (go test -fuzz).
func fuzzing() bool {
	for _, name := range []string{"test.fuzz", "test.fuzzworker"} {
		if f := flag.Lookup(name); f != nil && f.Value.String() != "" && f.Value.String() != "false" {
			return true
		}
	}
	return false
}

// noMatch reports whether err is pgrep's exit status 1: no process
// matched.
func noMatch(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && ee.ExitCode() == 1
}
