package testenv_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/dsub-dev/dsub/testenv"
)

// sshRun runs cmd on host with the system's OpenSSH client and the
// cluster's ssh_config (StrictHostKeyChecking yes).
func sshRun(t *testing.T, c *testenv.Cluster, host, cmd string) (string, error) {
	t.Helper()
	// Generous bounds: under CI every package's cluster shares 2 cores.
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	ssh := exec.CommandContext(ctx, "ssh", "-F", c.SSHConfig, "-o", "ConnectTimeout=20", host, cmd)
	ssh.Stdout, ssh.Stderr = &out, &errb
	err := ssh.Run()
	if err != nil {
		return out.String(), errors.New(err.Error() + ": " + errb.String())
	}
	return out.String(), nil
}

// dial opens an authenticated x/crypto connection that checks host keys
// strictly against the cluster's known_hosts.
func dial(t *testing.T, c *testenv.Cluster, h *testenv.Host) (*ssh.Client, error) {
	t.Helper()
	key, err := os.ReadFile(c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := knownhosts.New(c.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", h.HostPort(), &ssh.ClientConfig{
		User:              h.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   cb,
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           5 * time.Second,
	})
}

// probe classifies what a client sees at addr within d: "refused",
// "timeout-connect" (no TCP), "timeout-banner" (TCP but silence) or "ok".
func probe(addr string, d time.Duration) string {
	conn, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return "refused"
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout-connect"
		}
		return "error: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4)
	if _, err := conn.Read(buf); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout-banner"
		}
		return "closed" // the proxy accepted, then found no sshd behind it
	}
	if string(buf) == "SSH-" {
		return "ok"
	}
	return "garbage"
}

// sessionWorks reports whether a session on an existing connection
// completes within d.
func sessionWorks(cl *ssh.Client, d time.Duration) bool {
	done := make(chan error, 1)
	go func() {
		s, err := cl.NewSession()
		if err != nil {
			done <- err
			return
		}
		defer s.Close()
		done <- s.Run("true")
	}()
	select {
	case err := <-done:
		return err == nil
	case <-time.After(d):
		return false
	}
}

func TestUpWritesUsableState(t *testing.T) {
	c := testenv.Start(t, 4)
	t.Logf("backend: %s", c.Backend)
	if c.Backend == testenv.Docker {
		t.Logf("image: %s", c.Image)
	}
	kh, err := os.ReadFile(c.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(kh)), "\n")
	if len(lines) != 4 {
		t.Fatalf("known_hosts has %d lines, want 4:\n%s", len(lines), kh)
	}
	for _, l := range lines {
		if f := strings.Fields(l); len(f) != 3 || f[1] != "ssh-ed25519" || !strings.HasPrefix(f[0], "[") {
			t.Errorf("known_hosts line %q: want `[addr]:port ssh-ed25519 KEY`", l)
		}
	}
	// WaitNoProcesses fails when pgrep cannot answer (here: a bad
	// pattern; likewise a missing pgrep), instead of reporting "clean".
	if err := c.WaitNoProcesses(context.Background(), "(", time.Second); err == nil {
		t.Error("WaitNoProcesses reported no processes for a pattern pgrep refuses")
	}
	dead, cancel := context.WithCancel(context.Background())
	cancel() // every look fails, with no output at all
	if err := c.WaitNoProcesses(dead, "sleep", time.Second); err == nil {
		t.Error("WaitNoProcesses reported no processes when it could not look")
	}
	if err := c.WaitNoProcesses(context.Background(), "no-such-process-dsub-xyz", time.Second); err != nil {
		t.Errorf("WaitNoProcesses with nothing matching: %v", err)
	}
	seenName := map[string]bool{}
	seenKey := map[string]bool{}
	for _, h := range c.Hosts {
		out, err := sshRun(t, c, h.Name, "id -un; uname -n")
		if err != nil {
			t.Fatalf("ssh %s: %v", h.Name, err)
		}
		f := strings.Fields(out)
		if len(f) != 2 || f[0] != h.User {
			t.Errorf("ssh %s: id -un; uname -n = %q, want user %s", h.Name, out, h.User)
			continue
		}
		if c.Backend == testenv.Docker {
			if f[1] != h.Name {
				t.Errorf("%s: hostname %q, want %q", h.Name, f[1], h.Name)
			}
			if seenName[f[1]] {
				t.Errorf("%s: hostname %q not distinct", h.Name, f[1])
			}
		}
		seenName[f[1]] = true
		if seenKey[h.HostKey] {
			t.Errorf("%s: host key shared with another host", h.Name)
		}
		seenKey[h.HostKey] = true
	}
	// The image serves both ed25519 and rsa host keys; known_hosts holds
	// only ed25519, so a client restricted to rsa must be refused.
	if c.Backend == testenv.Docker {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ssh-keyscan", "-t", "rsa", "-p", strconv.Itoa(c.Hosts[0].Port), c.Hosts[0].Addr).Output()
		if err != nil || !strings.Contains(string(out), "ssh-rsa") {
			t.Errorf("host %s serves no rsa host key: %v %q", c.Hosts[0].Name, err, out)
		}
	}
	// Load sees the same cluster.
	l, err := testenv.Load(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(l.Names(), ","), "h01,h02,h03,h04"; got != want {
		t.Errorf("Load: hosts %s, want %s", got, want)
	}
}

// TestFaults checks each fault against what a client observes.
func TestFaults(t *testing.T) {
	testFaults(t, testenv.Start(t, 3))
}

// TestFaultsProcessBackend runs the same scenario on plain sshd processes.
func TestFaultsProcessBackend(t *testing.T) {
	if testing.Short() {
		testenv.Require(t, nil)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: the process backend test needs root")
		}
		t.Skip("the process backend needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := testenv.StartBackend(ctx, 3, testenv.Process, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Down(context.Background()); err != nil {
			t.Error(err)
		}
	})
	testFaults(t, c)
}

func testFaults(t *testing.T, c *testenv.Cluster) {
	t.Logf("backend: %s", c.Backend)
	ctx := context.Background()
	killed, paused, cut := c.Hosts[0], c.Hosts[1], c.Hosts[2]

	pre := map[string]*ssh.Client{}
	for _, h := range c.Hosts {
		cl, err := dial(t, c, h)
		if err != nil {
			t.Fatalf("dial %s: %v", h.Name, err)
		}
		defer cl.Close()
		pre[h.Name] = cl
	}

	t.Run("kill", func(t *testing.T) {
		if err := c.Kill(ctx, killed.Name); err != nil {
			t.Fatal(err)
		}
		if got := probe(killed.HostPort(), 2*time.Second); got != "refused" && got != "closed" {
			t.Errorf("after kill: %s, want refused", got)
		}
		if _, err := sshRun(t, c, killed.Name, "true"); err == nil {
			t.Error("after kill: ssh succeeded")
		}
	})
	t.Run("restart keeps host keys", func(t *testing.T) {
		if err := c.Restart(ctx, killed.Name); err != nil {
			t.Fatal(err)
		}
		// Strict checking against the known_hosts written at Up proves
		// the key is unchanged.
		cl, err := dial(t, c, killed)
		if err != nil {
			t.Fatalf("after restart: %v", err)
		}
		cl.Close()
		if out, err := sshRun(t, c, killed.Name, "echo back"); err != nil || strings.TrimSpace(out) != "back" {
			t.Errorf("after restart: ssh = %q, %v", out, err)
		}
	})
	t.Run("pause hangs with TCP open", func(t *testing.T) {
		if err := c.Pause(ctx, paused.Name); err != nil {
			t.Fatal(err)
		}
		if got := probe(paused.HostPort(), 2*time.Second); got != "timeout-banner" {
			t.Errorf("paused: %s, want timeout-banner", got)
		}
		if sessionWorks(pre[paused.Name], 2*time.Second) {
			t.Error("paused: a session on an existing connection completed")
		}
		if err := c.Unpause(ctx, paused.Name); err != nil {
			t.Fatal(err)
		}
		if got := probe(paused.HostPort(), 20*time.Second); got != "ok" {
			t.Errorf("unpaused: %s, want ok", got)
		}
	})
	t.Run("partition cuts, heal restores", func(t *testing.T) {
		if err := c.Partition(ctx, cut.Name); err != nil {
			t.Fatal(err)
		}
		if got := probe(cut.HostPort(), 2*time.Second); got != "timeout-connect" {
			t.Errorf("partitioned: %s, want timeout-connect", got)
		}
		if sessionWorks(pre[cut.Name], 2*time.Second) {
			t.Error("partitioned: a session on an existing connection completed")
		}
		// The other hosts are unaffected.
		if !sessionWorks(pre[paused.Name], 10*time.Second) {
			t.Errorf("partition of %s disturbed %s", cut.Name, paused.Name)
		}
		if err := c.Heal(ctx, cut.Name); err != nil {
			t.Fatal(err)
		}
		if got := probe(cut.HostPort(), 20*time.Second); got != "ok" {
			t.Errorf("healed: %s, want ok", got)
		}
		if _, err := sshRun(t, c, cut.Name, "true"); err != nil {
			t.Errorf("healed: ssh: %v", err)
		}
	})
}

// WithSlots replaces the slots line testenv writes, or adds one.
func TestWithSlots(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"[defaults]\nuser = \"dsub\"\nslots = 2\n\n[[host]]\nname = \"h01\"\n", "[defaults]\nuser = \"dsub\"\nslots = 64\n\n[[host]]\nname = \"h01\"\n"},
		{"[defaults]\nuser = \"dsub\"\n", "[defaults]\nslots = 64\nuser = \"dsub\"\n"},
	} {
		if got := testenv.WithSlots(tc.in, 64); got != tc.want {
			t.Errorf("WithSlots(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
