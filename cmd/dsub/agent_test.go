package main

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/agent"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/testenv"
)

// Agent mode gives the same result as session mode, says so in run.json,
// and records each job's resource usage.
func TestAgentModeMatchesSession(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	const jobs = 60
	var cmds strings.Builder
	for i := 1; i <= jobs; i++ {
		fmt.Fprintf(&cmds, "echo %d; echo noise >&2\n", i*i)
	}
	cf := filepath.Join(dir, "cmds.txt")
	os.WriteFile(cf, []byte(cmds.String()), 0o600)
	results := map[string]string{}
	for _, launch := range []string{"session", "agent"} {
		logs := filepath.Join(dir, launch)
		cmd := exec.Command(bin, "run", "--hosts", cluster.HostsFile, "--logs", logs, "--commands", cf, "--reduce", "sum", "--launch", launch)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", launch, err, errb.String())
		}
		results[launch] = strings.TrimSpace(string(out))
		rd := runDir(t, logs)
		m, err := records.ReadManifest(records.RunDir(rd))
		if err != nil {
			t.Fatal(err)
		}
		// Every host that ran jobs says how (a host still receiving the
		// agent when the last job ended took no part).
		took := 0
		for _, h := range m.Stats.Hosts {
			if h.Jobs > 0 {
				took++
				if h.Launcher != launch {
					t.Errorf("%s run: host %s launcher %q", launch, h.Name, h.Launcher)
				}
			}
		}
		if took == 0 {
			t.Errorf("%s run: no host ran jobs: %+v", launch, m.Stats)
		}
		journal, _ := os.ReadFile(records.RunDir(rd).Journal())
		if got := strings.Count(string(journal), `"max_rss_kb"`); launch == "agent" && got != jobs {
			t.Errorf("agent run: %d of %d journal records have resource usage", got, jobs)
		}
		recs, _ := records.ReadJournal(records.RunDir(rd).Journal())
		var b strings.Builder
		if _, err := records.RunDir(rd).ReadOutput(recs[7].Output, records.Stderr, &b); b.String() != "noise\n" {
			t.Errorf("%s run: job 7's stderr %q (%v)", launch, b.String(), err)
		}
	}
	if want := fmt.Sprint(jobs * (jobs + 1) * (2*jobs + 1) / 6); results["session"] != want || results["agent"] != want {
		t.Errorf("results %v, want %s both", results, want)
	}
}

// The agent never outlives its master: a master SIGKILLed mid-run leaves
// no job process on any host within 5 s (the agent sees its session end
// and kills its jobs), with no resume to sweep them.
func TestAgentMasterKilledLeavesNoJobs(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	var cmds strings.Builder
	for i := 1; i <= 16; i++ {
		// Jobs that would run for minutes, with a child of their own.
		fmt.Fprintf(&cmds, "sleep 388.5 & sleep 389.5; echo %d\n", i)
	}
	cf := filepath.Join(dir, "cmds.txt")
	os.WriteFile(cf, []byte(cmds.String()), 0o600)
	logs := filepath.Join(dir, "logs")
	cmd := exec.Command(bin, "run", "--hosts", cluster.HostsFile, "--logs", logs, "--commands", cf, "--reduce", "sum", "--launch", "agent")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// Wait until every host runs jobs.
	ctx := context.Background()
	deadline := time.Now().Add(60 * time.Second)
	for running := 0; running < len(cluster.Hosts); {
		if time.Now().After(deadline) {
			t.Fatalf("jobs never ran on every host:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
		running = 0
		for _, h := range cluster.Hosts {
			if out, _ := cluster.Exec(ctx, h.Name, "pgrep", "-u", h.User, "-f", "sleep 389.5"); len(bytes.TrimSpace(out)) > 0 {
				running++
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	killed := time.Now()
	if err := cluster.WaitNoProcesses(ctx, "sleep 38[89].5", 5*time.Second); err != nil {
		t.Fatalf("after the master's SIGKILL: %v", err)
	}
	t.Logf("no job process on any host %.2f s after the master's SIGKILL", time.Since(killed).Seconds())
	// And the agents themselves are gone.
	if err := cluster.WaitNoProcesses(ctx, " agent --keepalive", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// agentFor finds dsub-GOOS-GOARCH beside the running program, else
// cross-builds dsub for the platform (here: in its own source tree) into
// the user's cache directory, else says how to provide one.
func TestAgentForOtherPlatform(t *testing.T) {
	ctx := context.Background()
	// The agents' cache moves to a temporary directory; Go's build cache,
	// also under the user cache directory by default, stays where it is.
	if gocache, err := exec.Command("go", "env", "GOCACHE").Output(); err == nil {
		t.Setenv("GOCACHE", strings.TrimSpace(string(gocache)))
	}
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	self := filepath.Join(dir, "dsub")
	beside := filepath.Join(dir, "dsub-linux-arm64")
	os.WriteFile(self, []byte("self"), 0o755)
	os.WriteFile(beside, []byte("arm64"), 0o755)
	if got, err := agentFor(self)(ctx, "linux", "arm64"); err != nil || got != beside {
		t.Errorf("with %s beside dsub: %q, %v", beside, got, err)
	}

	t.Run("no go", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir())
		_, err := agentFor(self)(ctx, "linux", "riscv64")
		if err == nil || !strings.Contains(err.Error(), "no dsub-linux-riscv64 beside "+self) || !strings.Contains(err.Error(), "no Go toolchain") {
			t.Errorf("err = %v, want it to name the missing file and Go", err)
		}
	})

	t.Run("cross-build", func(t *testing.T) {
		if testing.Short() {
			t.Skip("-short: cross-building dsub takes a while")
		}
		os.Remove(beside)
		got, err := agentFor(self)(ctx, "linux", "arm64")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, os.Getenv("XDG_CACHE_HOME")) {
			t.Errorf("built at %s, want it in the user's cache directory", got)
		}
		ef, err := elf.Open(got)
		if err != nil {
			t.Fatal(err)
		}
		defer ef.Close()
		if ef.Machine != elf.EM_AARCH64 {
			t.Errorf("%s is built for %v, want arm64", got, ef.Machine)
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s is dynamically linked: a host may not have its loader", got)
			}
		}
	})
}

// An agent whose way back to its master breaks (the session torn down,
// its stdout a broken pipe) while its stdin stays open must still kill
// its jobs: a write to the broken pipe would otherwise kill the agent
// itself (SIGPIPE), before its shutdown, and leave its jobs running.
func TestAgentBrokenPipeKillsJobs(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "agent", "--keepalive", "3s", "--grace", "1s")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	w, r := agent.NewWriter(stdin), agent.NewReader(stdout)
	w.WriteJSON(agent.THello, 0, agent.HelloMsg{Version: agent.Version})
	w.WriteJSON(agent.TStart, 1, agent.StartMsg{Shell: "sleep 371 & sleep 372; wait"})
	pgid := 0
	for pgid == 0 {
		f, err := r.Read()
		if err != nil {
			t.Fatalf("reading the agent: %v", err)
		}
		if f.Type == agent.TStarted {
			pgid = int(binary.BigEndian.Uint32(f.Payload))
		}
	}
	defer syscall.Kill(-pgid, syscall.SIGKILL)
	// The master keeps talking (no silence, no EOF), but can no longer
	// hear: the agent's next ping, a second away, meets a broken pipe.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
				w.Write(agent.Frame{Type: agent.TPing})
			}
		}
	}()
	stdout.Close()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("the agent did not stop when its master could no longer hear it")
	}
	for i := 0; syscall.Kill(-pgid, 0) == nil; i++ {
		if i > 500 {
			t.Fatalf("the job's group %d is alive 5 s after its agent stopped", pgid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Through an agent a host's slots are not capped by sshd's MaxSessions
// (10 here): one host with slots = 64 runs 64 jobs at once over its one
// session. Each job waits at a barrier until all 64 have arrived there,
// so a cap below 64 leaves the barrier unmet: the first job to give up
// (after a minute) halts the run. No timing is asserted.
func TestAgentSixtyFourSlots(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	hosts := hostsWithSlots(t, dir, 64)
	const n = 64
	barrier := fmt.Sprintf("/tmp/dsub-barrier-%d", time.Now().UnixNano())
	var cmds strings.Builder
	for i := 1; i <= n; i++ {
		// Shell builtins only while waiting, but for sleep: 64 jobs
		// forking fast would starve a small machine.
		fmt.Fprintf(&cmds, `mkdir -p %[1]s && touch %[1]s/%[2]d && i=0 && while set -- %[1]s/*; [ $# -lt %[3]d ]; do i=$((i+1)); [ $i -gt 60 ] && echo "barrier: $# of %[3]d" >&2 && exit 3; sleep 1; done; echo 1`+"\n", barrier, i, n)
	}
	cf := filepath.Join(dir, "cmds.txt")
	os.WriteFile(cf, []byte(cmds.String()), 0o600)
	host := cluster.Hosts[0].Name
	logs := filepath.Join(dir, "logs")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--hosts", hosts, "--on", host, "--logs", logs, "--commands", cf, "--reduce", "sum", "--launch", "agent",
		"--retries", "0", "--halt", "now,fail=1")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errb.String())
	}
	if got := strings.TrimSpace(string(out)); got != fmt.Sprint(n) {
		t.Errorf("sum %q, want %d (every job past the barrier)", got, n)
	}
	m, err := records.ReadManifest(records.RunDir(runDir(t, logs)))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Stats.Hosts) != 1 || m.Stats.Hosts[0].Launcher != "agent" || m.Stats.Hosts[0].Slots != n || m.Stats.Hosts[0].Jobs != n {
		t.Errorf("host stats %+v, want one agent host with %d slots and %d jobs", m.Stats.Hosts, n, n)
	}
}
