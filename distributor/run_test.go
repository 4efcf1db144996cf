package distributor_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, 3, func(c *testenv.Cluster) { cluster = c }))
}

func newCluster(t *testing.T) *distributor.Cluster {
	t.Helper()
	return clusterFrom(t, func(hostsToml string) string { return hostsToml })
}

// clusterFrom builds a Cluster from the shared cluster's hosts.toml as
// edit rewrites it.
func clusterFrom(t *testing.T, edit func(string) string) *distributor.Cluster {
	t.Helper()
	testenv.Require(t, cluster)
	b, err := os.ReadFile(cluster.HostsFile)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "hosts.toml")
	if err := os.WriteFile(p, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
	hosts, err := inventory.Load(p, inventory.Options{SSHConfig: "none"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := distributor.NewCluster(hosts, distributor.ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// warnings returns the warnings so far, one per line.
func (c *collected) warnings() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.warns, "\n")
}

type collected struct {
	mu      sync.Mutex
	results map[int]distributor.Result
	warns   []string
}

func (c *collected) opts(o distributor.RunOptions) distributor.RunOptions {
	c.results = map[int]distributor.Result{}
	o.OnResult = func(r distributor.Result) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, dup := c.results[r.Job]; dup {
			panic(fmt.Sprintf("job %d reported twice", r.Job))
		}
		c.results[r.Job] = r
	}
	o.Warn = func(s string) { c.mu.Lock(); c.warns = append(c.warns, s); c.mu.Unlock() }
	return o
}

// runJobs submits specs and waits.
func runJobs(t *testing.T, c *distributor.Cluster, o distributor.RunOptions, specs []distributor.JobSpec) (*distributor.Run, *records.Stats, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if o.LogsDir == "" {
		o.LogsDir = t.TempDir()
	}
	run, err := c.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	// Deterministic placement for these tests: every host in place first.
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if err := run.Submit(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	run.Close()
	st, res, err := run.Wait()
	return run, st, res, err
}

func shards(n int, args func(i int) []string) []distributor.JobSpec {
	var out []distributor.JobSpec
	for i := 0; i < n; i++ {
		out = append(out, distributor.JobSpec{Args: args(i), Shard: i, Shards: n})
	}
	return out
}

func buildPrimes(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "primes")
	cmd := exec.Command("go", "build", "-o", p, "../examples/primes")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build primes: %v\n%s", err, out)
	}
	return p
}

func readRunJSON(t *testing.T, dir string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func uploaded(t *testing.T, dir string) float64 {
	t.Helper()
	total := 0.0
	for _, h := range readRunJSON(t, dir)["hosts"].([]any) {
		total += h.(map[string]any)["bytes_uploaded"].(float64)
	}
	return total
}

// TestBinaryShardsSumAndUploadSkip: the README's job, 16 shards of primes,
// sums to π(10^7); a second run ships 0 bytes.
func TestBinaryShardsSumAndUploadSkip(t *testing.T) {
	c := newCluster(t)
	bin := buildPrimes(t)
	red, _ := distributor.NewReducer("sum")
	var col collected
	specs := shards(16, func(i int) []string {
		return []string{"count", "--shard", fmt.Sprint(i), "--of", "16", "--upto", "10000000"}
	})
	run, st, res, err := runJobs(t, c, col.opts(distributor.RunOptions{Binary: bin, Reducer: red}), specs)
	if err != nil || res != "664579" {
		t.Fatalf("result %q, err %v", res, err)
	}
	if st.Jobs != 16 || st.Succeeded != 16 || st.Failed != 0 || len(col.results) != 16 {
		t.Errorf("stats %+v, %d results", st, len(col.results))
	}
	if up := uploaded(t, run.Dir()); up == 0 {
		t.Errorf("first run uploaded nothing")
	}
	// run.json holds hosts, binary hash, timings.
	rj := readRunJSON(t, run.Dir())
	if rj["binary"].(map[string]any)["sha256"] == "" || rj["finished"] == nil || len(rj["hosts"].([]any)) != 3 {
		t.Errorf("run.json = %v", rj)
	}
	// joblog: header plus one row per execution; results.jsonl: 16 records.
	jl, _ := os.ReadFile(filepath.Join(run.Dir(), "joblog.tsv"))
	if rows := strings.Count(string(jl), "\n"); rows != 17 || !strings.Contains(string(jl), "primes count --shard 0 --of 16") {
		t.Errorf("joblog has %d lines:\n%s", rows, jl)
	}
	rl, _ := os.ReadFile(filepath.Join(run.Dir(), "results.jsonl"))
	if strings.Count(string(rl), "\n") != 16 {
		t.Errorf("results.jsonl:\n%s", rl)
	}
	recs, _ := records.ReadJournal(filepath.Join(run.Dir(), "results.jsonl"))
	var out strings.Builder
	if _, err := records.RunDir(run.Dir()).ReadOutput(recs[1].Output, records.Stdout, &out); err != nil || strings.TrimSpace(out.String()) == "" {
		t.Errorf("job 1's output: %q, %v", out.String(), err)
	}

	red2, _ := distributor.NewReducer("sum")
	var col2 collected
	run2, _, res2, err := runJobs(t, c, col2.opts(distributor.RunOptions{Binary: bin, Reducer: red2}), specs)
	if err != nil || res2 != "664579" {
		t.Fatalf("second run: %q %v", res2, err)
	}
	if up := uploaded(t, run2.Dir()); up != 0 {
		t.Errorf("second run uploaded %v bytes, want 0", up)
	}
}

func TestBuildPerPlatform(t *testing.T) {
	c := newCluster(t)
	red, _ := distributor.NewReducer("sum")
	var col collected
	_, _, res, err := runJobs(t, c, col.opts(distributor.RunOptions{Build: "../examples/primes", Reducer: red}),
		shards(4, func(i int) []string {
			return []string{"count", "--shard", fmt.Sprint(i), "--of", "4", "--upto", "1000000"}
		}))
	if err != nil || res != "78498" {
		t.Fatalf("--build: %q %v", res, err)
	}
}

func TestCommandsAndReduces(t *testing.T) {
	c := newCluster(t)
	big := "9223372036854775807" // 2^63-1: three of them exceed 2^63
	tests := []struct {
		reduce string
		lines  []string
		want   string
	}{
		{"sum", []string{"echo " + big, "echo " + big, "echo " + big}, "27670116110564327421"},
		{"sum", []string{"echo 0.5", "echo 1.25"}, "1.75"},
		{"min", []string{"echo 5", "echo -3", "echo 9"}, "-3"},
		{"max", []string{"echo 5", "echo 123456789012345678901234567890", "echo 9"}, "123456789012345678901234567890"},
		{"count", []string{"echo a", "echo b", "echo c", "echo d"}, "4"},
		{"concat", []string{"echo -n x; echo; echo a", "echo b", "echo c"}, "abc"},
		{"list", []string{`echo '{"k":1}'`, "echo plain text", "echo 3"}, `[{"k":1},"plain text",3]`},
	}
	for _, tt := range tests {
		t.Run(tt.reduce, func(t *testing.T) {
			red, _ := distributor.NewReducer(tt.reduce)
			var specs []distributor.JobSpec
			for _, l := range tt.lines {
				specs = append(specs, distributor.JobSpec{Shell: l})
			}
			var col collected
			_, _, res, err := runJobs(t, c, col.opts(distributor.RunOptions{Reducer: red}), specs)
			if err != nil || res != tt.want {
				t.Errorf("%s = %q, %v; want %q", tt.reduce, res, err, tt.want)
			}
		})
	}
}

func TestEnvironmentAndPinning(t *testing.T) {
	c := newCluster(t)
	var col collected
	var specs []distributor.JobSpec
	for i := 0; i < 6; i++ {
		specs = append(specs, distributor.JobSpec{Shell: `echo "$DSUB_JOB $DSUB_SHARD $DSUB_SHARDS $DSUB_HOST $(uname -n) $X"; echo "$DSUB_RUN" >&2`,
			Shard: i, Shards: 6, Pin: "h02", Env: map[string]string{"X": "it's", "DSUB_RUN": "overridden?"}})
	}
	run, _, _, err := runJobs(t, c, col.opts(distributor.RunOptions{}), specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(col.results) != 6 {
		t.Fatalf("%d results, want 6", len(col.results))
	}
	for job, r := range col.results {
		// Every job carries the run's marker, which no job's Env overrides.
		if r.StderrTail != run.ID() {
			t.Errorf("job %d: DSUB_RUN = %q, want the run id %s", job, r.StderrTail, run.ID())
		}
	}
	for job, r := range col.results {
		want := fmt.Sprintf("%d %d 6 h02 h02 it's", job, job-1)
		if cluster.Backend != testenv.Docker {
			want = fmt.Sprintf("%d %d 6 h02", job, job-1)
		}
		if got := distributor.TextOf(r.Value); !strings.HasPrefix(got, want) || r.Host != "h02" {
			t.Errorf("job %d on %s: %q, want %q", job, r.Host, got, want)
		}
	}
}

func TestFailureAndRetries(t *testing.T) {
	c := newCluster(t)
	// Fails on its first attempt, wherever that runs.
	flaky := `if [ "$DSUB_ATTEMPT" = 1 ]; then echo "no luck on $(uname -n)" >&2; exit 7; fi; echo ok`
	var col collected
	specs := []distributor.JobSpec{{Shell: flaky}, {Shell: "echo fine"}, {Shell: "echo broken >&2; exit 3"}, {Shell: "echo -n"}}
	run, st, _, err := runJobs(t, c, col.opts(distributor.RunOptions{Retries: 1}), specs)
	if err != nil {
		t.Fatal(err)
	}
	// The retry ran on another host than the failed attempt.
	jl, _ := os.ReadFile(records.RunDir(run.Dir()).Executions())
	var hostsOf1 []string
	for _, l := range strings.Split(string(jl), "\n") {
		if cols := strings.Split(l, "\t"); len(cols) > 9 && cols[0] == "1" {
			hostsOf1 = append(hostsOf1, cols[1])
		}
	}
	if len(hostsOf1) != 2 || hostsOf1[0] == hostsOf1[1] {
		t.Errorf("job 1 ran on %v, want two different hosts", hostsOf1)
	}
	if r := col.results[1]; r.Err != nil || r.Attempt != 2 || distributor.TextOf(r.Value) != "ok" {
		t.Errorf("flaky job: %+v", r)
	}
	if r := col.results[3]; r.Err == nil || r.Exit != 3 || !strings.Contains(r.StderrTail, "broken") || r.Attempt != 2 {
		t.Errorf("failing job: %+v", r)
	}
	// Without a reduce that needs results, a job that exits 0 and prints
	// nothing succeeds, as with GNU parallel (run_commands.txtar covers a
	// reduce that needs one).
	if r := col.results[4]; r.Err != nil || r.Value != nil {
		t.Errorf("job without output: %+v", r)
	}
	if st.Succeeded != 3 || st.Failed != 1 {
		t.Errorf("stats %+v", st)
	}
	warned := strings.Join(col.warns, "\n")
	if !strings.Contains(warned, "job 1 failed on") || !strings.Contains(warned, "retrying (attempt 2 of 2)") {
		t.Errorf("warnings: %s", warned)
	}
}

func TestTimeoutKillsJob(t *testing.T) { forEachLaunch(t, timeoutKillsJob) }

func timeoutKillsJob(t *testing.T, o distributor.RunOptions) {
	c := newCluster(t)
	var col collected
	o.Timeout = time.Second
	_, st, _, err := runJobs(t, c, col.opts(o), []distributor.JobSpec{{Shell: "sleep 333 & sleep 334; echo late", Pin: "h01"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := col.results[1]; r.Err == nil || !strings.Contains(r.Err.Error(), "timed out after 1s") || st.Failed != 1 {
		t.Errorf("result %+v", r)
	}
	if err := cluster.WaitNoProcesses(context.Background(), "sleep 333", 5*time.Second); err != nil {
		t.Error(err)
	}
}

func TestFilesAndRemoteCleanup(t *testing.T) {
	c := newCluster(t)
	in := filepath.Join(t.TempDir(), "input.txt")
	os.WriteFile(in, []byte("hello from input\n"), 0o644)
	var col collected
	run, _, _, err := runJobs(t, c, col.opts(distributor.RunOptions{Files: []string{in}}),
		[]distributor.JobSpec{{Shell: "cat input.txt; pwd"}})
	if err != nil {
		t.Fatal(err)
	}
	r := col.results[1]
	var ob strings.Builder
	_, _ = records.RunDir(run.Dir()).ReadOutput(r.Output, records.Stdout, &ob)
	out := ob.String()
	if !strings.HasPrefix(out, "hello from input\n") {
		t.Fatalf("job stdout: %q", out)
	}
	remoteDir := distributor.TextOf(r.Value)
	if !strings.Contains(remoteDir, run.ID()) {
		t.Errorf("job ran in %s, not the run directory", remoteDir)
	}
	var buf strings.Builder
	for _, m := range c.Members() {
		if _, err := m.Host.Stat(context.Background(), remoteDir); err == nil {
			fmt.Fprintf(&buf, "%s still has %s; ", m.Name(), remoteDir)
		}
	}
	if buf.Len() > 0 {
		t.Error(buf.String())
	}
}

// TestHugeStreamingInput: Submit blocks while the queue is full, so a
// producer never runs ahead of the hosts by more than a bounded window.
func TestSubmitBackpressure(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var col collected
	run, err := c.Start(ctx, col.opts(distributor.RunOptions{LogsDir: t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	submitted := 0
	blocked := false
	for i := 0; i < 1000 && !blocked; i++ {
		sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
		err := run.Submit(sctx, distributor.JobSpec{Shell: "sleep 30; echo x"})
		scancel()
		if err != nil {
			blocked = true
			break
		}
		submitted++
	}
	// The dispatcher takes jobs while fewer than max(2 x slots, 64) wait:
	// some are accepted, then Submit blocks.
	if !blocked || submitted < 64 || submitted > 200 {
		t.Errorf("Submit accepted %d sleeping jobs (blocked: %v); want 64 to 200, then blocking", submitted, blocked)
	}
	cancel()
	run.Close()
	run.Wait()
}

// executions.tsv has a row for every execution; joblog.tsv, as GNU
// parallel's with --retries, only the attempt that settled the job.
func TestJoblogCountsEveryExecution(t *testing.T) {
	c := newCluster(t)
	var col collected
	run, _, _, _ := runJobs(t, c, col.opts(distributor.RunOptions{Retries: 2}), []distributor.JobSpec{{Shell: "exit 5"}})
	rd := records.RunDir(run.Dir())
	for _, tc := range []struct{ path, want string }{
		{rd.Executions(), "5:requeued,5:requeued,5:gave-up"},
		{rd.Joblog(), "5:gave-up"},
	} {
		rows, _, err := records.ReadJoblog(tc.path)
		var outcomes []string
		for _, r := range rows {
			outcomes = append(outcomes, strconv.Itoa(r.Exit)+":"+r.Outcome)
		}
		if got := strings.Join(outcomes, ","); got != tc.want || err != nil {
			t.Errorf("%s outcomes = %s (%v), want %s", filepath.Base(tc.path), got, err, tc.want)
		}
	}
	// Every attempt's output is kept, in its host's stream.
	var attempts []int
	streams, _ := filepath.Glob(filepath.Join(rd.Output(), "*.dso"))
	for _, s := range streams {
		_ = records.ScanEnds(s, func(e records.End) error { attempts = append(attempts, e.Attempt); return nil })
	}
	if slices.Sort(attempts); fmt.Sprint(attempts) != "[1 2 3]" {
		t.Errorf("attempts with output kept: %v, want [1 2 3]", attempts)
	}
}

// TestCleanKeepsRunsInProgress: Clean while a run's jobs execute keeps that
// run's directory and program on every host (and says so); the run
// finishes unharmed; a Clean after it removes everything.
func TestCleanKeepsRunsInProgress(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prog := filepath.Join(t.TempDir(), "slow.sh")
	os.WriteFile(prog, []byte("#!/bin/sh\nsleep 8.25; echo \"$1\"\n"), 0o755)
	run, _ := startSum(ctx, t, c, distributor.RunOptions{Binary: prog})
	slots := 2 * len(c.Members()) // one round of Assign puts 2 on each host
	go func() {
		for i := 1; i <= slots; i++ {
			run.Submit(ctx, distributor.JobSpec{Args: []string{fmt.Sprint(i)}})
		}
		run.Close()
	}()
	// Assigned is not yet running: wait for the job processes themselves.
	// The jobs last long enough for this check (three docker execs, slow
	// on a loaded machine) to see them all at once.
	running := func() int {
		n := 0
		for _, h := range cluster.Hosts {
			if out, _ := cluster.Exec(ctx, h.Name, "pgrep", "-u", h.User, "-f", "sleep 8.25"); strings.TrimSpace(string(out)) != "" {
				n++
			}
		}
		return n
	}
	for deadline := time.Now().Add(30 * time.Second); running() < len(cluster.Hosts); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("jobs run on only %d of %d hosts", running(), len(cluster.Hosts))
		}
	}
	for _, r := range c.Clean(ctx, true) {
		kept := strings.Join(r.Kept, " ")
		if r.Err != nil || !strings.Contains(kept, "/runs/"+run.ID()) || !strings.Contains(kept, "/bin/"+progSHA(t, prog)) {
			t.Errorf("%s: clean during the run kept %q, err %v; want its run dir and program", r.Host, kept, r.Err)
		}
	}
	st, res, err := run.Wait()
	if err != nil || res != sumTo(slots) || st.Succeeded != slots {
		t.Fatalf("run after a clean: %v, result %s (want %s)", err, res, sumTo(slots))
	}
	cleanedAfter(ctx, t, c, run, prog)
}

// progSHA is the name of prog in the hosts' program cache.
func progSHA(t *testing.T, prog string) string {
	t.Helper()
	b, err := os.ReadFile(prog)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// cleanedAfter checks that a Clean after run has ended removes its run
// directory and its program from every host. (Other tests' runs may leave
// directories of their own: a run that could not reach a host it faulted
// cannot clean it, and its liveness file keeps it for 3 minutes.)
func cleanedAfter(ctx context.Context, t *testing.T, c *distributor.Cluster, run *distributor.Run, prog string) {
	t.Helper()
	sha := progSHA(t, prog)
	for _, r := range c.Clean(ctx, true) {
		if kept := strings.Join(r.Kept, " "); r.Err != nil || strings.Contains(kept, run.ID()) || strings.Contains(kept, sha) {
			t.Errorf("%s: clean after the run: kept %v, err %v", r.Host, r.Kept, r.Err)
		}
	}
	for _, m := range c.Members() {
		if _, err := m.Host.Stat(ctx, m.Inv.Workdir); err != nil {
			t.Errorf("%s: stat the workdir: %v", m.Name(), err)
		}
		for _, p := range []string{path.Join(m.Inv.Workdir, "bin", sha), path.Join(m.Inv.Workdir, "runs", run.ID())} {
			if _, err := m.Host.Stat(ctx, p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: %s after clean: stat = %v, want it gone", m.Name(), p, err)
			}
		}
	}
}

// TestLeftoverChildrenKilledAtEnd: a job that exits leaving a background
// child behind (in its run directory, as children start) does not leave it
// on the host once the run is over.
func TestLeftoverChildrenKilledAtEnd(t *testing.T) {
	c := newCluster(t)
	var col collected
	var specs []distributor.JobSpec
	for i := 1; i <= 4; i++ {
		specs = append(specs, distributor.JobSpec{Shell: fmt.Sprintf("(sleep 125 >/dev/null 2>&1 &); echo %d", i)})
	}
	red, _ := distributor.NewReducer("sum")
	_, st, res, err := runJobs(t, c, col.opts(distributor.RunOptions{Reducer: red}), specs)
	if err != nil || res != "10" || st.Succeeded != 4 {
		t.Fatalf("run: %v, result %q, %d succeeded", err, res, st.Succeeded)
	}
	killed := 0
	for _, w := range col.warns {
		var host, dir string
		var n int
		if _, err := fmt.Sscanf(w, "host %s killed %d process groups that jobs left running in %s", &host, &n, &dir); err == nil {
			killed += n
		}
	}
	if killed != 4 {
		t.Errorf("warnings report %d leftover groups killed, want 4: %q", killed, col.warns)
	}
	if err := cluster.WaitNoProcesses(context.Background(), "^sleep 125", 5*time.Second); err != nil {
		t.Error(err)
	}
}

// TestCleanKeepsIdleRunAndRemovesStale: between jobs a run has no process
// on a host, yet Clean keeps its run directory and program there (the
// master's liveness file says the run is on), and the jobs submitted after
// the clean succeed. A run directory whose liveness file is stale (its
// master died) is removed.
func TestCleanKeepsIdleRunAndRemovesStale(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prog := filepath.Join(t.TempDir(), "echo.sh")
	os.WriteFile(prog, []byte("#!/bin/sh\necho \"$1\"\n"), 0o755)
	run, _ := startSum(ctx, t, c, distributor.RunOptions{Binary: prog}) // every host prepared; nothing runs
	stale := path.Join(c.Members()[0].Inv.Workdir, "runs", "20000101-000000-dead")
	m0 := c.Members()[0]
	if err := m0.Host.Run(ctx, &remote.Cmd{Shell: "mkdir -p " + remote.QuotePath(stale) + " && cd " + remote.QuotePath(stale) +
		" && echo /nonexistent > .dsub-live && touch -d '10 minutes ago' .dsub-live"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.Clean(ctx, true) {
		kept := strings.Join(r.Kept, " ")
		if r.Err != nil || !strings.Contains(kept, "/runs/"+run.ID()) || !strings.Contains(kept, "/bin/"+progSHA(t, prog)) || strings.Contains(kept, "dead") {
			t.Errorf("%s: clean of an idle run kept %q, err %v; want its run dir and program, not the stale run", r.Host, kept, r.Err)
		}
	}
	if _, err := m0.Host.Stat(ctx, stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale run dir: stat = %v, want it removed", err)
	}
	for i := 1; i <= 8; i++ {
		run.Submit(ctx, distributor.JobSpec{Args: []string{fmt.Sprint(i)}})
	}
	run.Close()
	st, res, err := run.Wait()
	if err != nil || res != sumTo(8) || st.Succeeded != 8 {
		t.Fatalf("run after a clean: %v, result %s (want %s)", err, res, sumTo(8))
	}
	cleanedAfter(ctx, t, c, run, prog)
}

// A big program ships gzip'd where the host has gzip: the agent (dsub
// itself) costs each fresh host well under its size, and runs (so it was
// unpacked whole). A fresh workdir makes every host fresh.
func TestAgentShipsCompressed(t *testing.T) {
	wd := fmt.Sprintf("~/.dsub-gz-%d", time.Now().UnixNano())
	c := clusterFrom(t, func(s string) string {
		return strings.Replace(s, "connect_timeout = \"10s\"", "connect_timeout = \"10s\"\nworkdir = \""+wd+"\"", 1)
	})
	agent := agentBinary(t)
	fi, err := os.Stat(agent)
	if err != nil {
		t.Fatal(err)
	}
	var col collected
	run, st, _, err := runJobs(t, c, col.opts(distributor.RunOptions{Launch: distributor.LaunchAgent, Agent: agent}), []distributor.JobSpec{{Shell: "echo 1"}, {Shell: "echo 2"}})
	if err != nil || st.Failed != 0 || st.Succeeded != 2 {
		t.Fatalf("run: %v, %+v", err, st)
	}
	for _, h := range readRunJSON(t, run.Dir())["hosts"].([]any) {
		hm := h.(map[string]any)
		sent, launcher := hm["bytes_uploaded"].(float64), hm["launcher"]
		if launcher != "agent" || sent == 0 || sent > 0.6*float64(fi.Size()) {
			t.Errorf("host %s: launcher %v, %v bytes uploaded for a %d-byte agent; want it gzip'd", hm["name"], launcher, sent, fi.Size())
		}
		t.Logf("host %s: %.0f bytes for the %d-byte agent", hm["name"], sent, fi.Size())
	}
	c.Exec(context.Background(), remote.Cmd{Shell: "rm -rf " + wd}, 30*time.Second, func(string) (io.Reader, io.Writer, io.Writer) { return nil, nil, nil })
}

// An admin command across many hosts holds no connection to a host once
// its part there is done, as pdsh's exiting ssh processes hold none: a
// thousand hosts behind one sshd once ran it out of file descriptors.
// The next command dials again.
func TestAdminReleasesConnections(t *testing.T) {
	c := newCluster(t)
	none := func(string) (io.Reader, io.Writer, io.Writer) { return nil, nil, nil }
	for round := range 2 {
		for _, r := range c.Exec(context.Background(), remote.Cmd{Argv: []string{"true"}}, time.Minute, none) {
			if r.Err != nil {
				t.Fatalf("round %d: %s: %v", round, r.Host, r.Err)
			}
		}
		for _, m := range c.Members() {
			if n := m.Host.(*remote.SSHHost).Conns(); n != 0 {
				t.Errorf("round %d: %s holds %d connections after its command", round, m.Name(), n)
			}
		}
	}
}
