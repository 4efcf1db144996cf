package distributor

// Engine tests: the dispatcher's logic against fakehost hosts, with no
// sshd. They run under -short, deterministically: faults are injected at
// known points (a job that blocks until the test acts), and the only
// timing is the bounds the run itself is configured with.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// fakeCluster makes n fake hosts f01.. with slots each.
func fakeCluster(t *testing.T, n, slots int) (*Cluster, []*fakehost.Host) {
	t.Helper()
	var ms []*Member
	var hs []*fakehost.Host
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("f%02d", i)
		h := fakehost.New(name, fakehost.Options{Job: printJob})
		hs = append(hs, h)
		ms = append(ms, &Member{Inv: &inventory.Host{Name: name, Address: name, Slots: slots, Workdir: "~/.dsub"}, Host: h, Timeout: time.Second})
	}
	c, err := NewClusterOf(ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, hs
}

// printJob prints the job's number: the sum of n jobs is n(n+1)/2.
func printJob(ctx context.Context, p *fakehost.Proc) error {
	p.Printf("%d\n", p.Job)
	return nil
}

// blockJob runs until it is killed.
func blockJob(ctx context.Context, p *fakehost.Proc) error {
	<-ctx.Done()
	return fakehost.Exit(143)
}

// fakeRun is a run on fake hosts and what it reported.
type fakeRun struct {
	*Run
	mu      sync.Mutex
	results map[int]Result
	dups    int
	warns   []string
	warned  chan string // every warning, unbuffered reads optional
}

func (f *fakeRun) warnings() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.warns, "\n")
}

// waitWarn waits for a warning containing s.
func (f *fakeRun) waitWarn(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case w := <-f.warned:
			if strings.Contains(w, s) {
				return
			}
		case <-deadline:
			t.Fatalf("no warning %q; got:\n%s", s, f.warnings())
		}
	}
}

// startFake starts a run with fast reconnects, recording what it reports.
func startFake(ctx context.Context, t *testing.T, c *Cluster, o RunOptions) *fakeRun {
	t.Helper()
	f := &fakeRun{results: map[int]Result{}, warned: make(chan string, 1024)}
	if o.LogsDir == "" {
		o.LogsDir = t.TempDir()
	}
	if o.Reducer == nil {
		o.Reducer, _ = NewReducer("sum")
	}
	also := o.OnResult
	o.OnResult = func(r Result) {
		if also != nil {
			also(r)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, dup := f.results[r.Job]; dup {
			f.dups++
		}
		f.results[r.Job] = r
	}
	o.Warn = func(s string) {
		f.mu.Lock()
		f.warns = append(f.warns, s)
		f.mu.Unlock()
		select {
		case f.warned <- s:
		default:
		}
	}
	hook := o.testHook
	o.testHook = func(d *dispatcher) {
		d.r.retryMin = 10 * time.Millisecond
		if hook != nil {
			hook(d)
		}
	}
	run, err := c.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	f.Run = run
	return f
}

// submitShell submits n shell jobs and closes the run. It may run in its
// own goroutine; a run that ends early refuses the rest.
func (f *fakeRun) submitShell(ctx context.Context, t *testing.T, n int) {
	defer f.Close()
	for i := 0; i < n; i++ {
		if err := f.Submit(ctx, JobSpec{Shell: "job", Shard: i, Shards: n}); err != nil {
			return
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// outcomesOf counts a run's executions' outcomes on host ("" for all),
// from executions.tsv.
func outcomesOf(t *testing.T, dir records.RunDir, host string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(dir.Executions())
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for i, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(l, "\t")
		if i == 0 || len(f) < 10 || host != "" && f[1] != host {
			continue
		}
		n[f[len(f)-1]]++
	}
	return n
}

func wantSum(t *testing.T, res string, n int) {
	t.Helper()
	if want := fmt.Sprint(n * (n + 1) / 2); res != want {
		t.Errorf("result %q, want %s", res, want)
	}
}

// waitLive waits until h has n live processes.
func waitLive(t *testing.T, h *fakehost.Host, n int) {
	t.Helper()
	for i := 0; len(h.Live()) < n; i++ {
		if i > 3000 {
			t.Fatalf("%s has %d live processes, want %d", h.Name(), len(h.Live()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A host lost mid-job: its executions go to the other host without
// using a retry (Retries is 0), the host re-joins when it answers, and
// what the lost executions left running there is swept before it takes a
// job again.
func TestEngineHostLostMidJob(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 2)
	f01, f02 := hs[0], hs[1]
	// f01's first executions are lost with it, still running. f02 holds
	// its jobs until f01 is back and has taken one, so that f01's return
	// is part of the run.
	f01.SetJob(blockJob)
	rejoined := make(chan struct{})
	f02.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		select {
		case <-rejoined:
			return printJob(ctx, p)
		case <-ctx.Done():
			return fakehost.Exit(143)
		}
	})
	run := startFake(ctx, t, c, RunOptions{Retries: 0})
	const n = 20
	go run.submitShell(ctx, t, n)
	waitLive(t, f01, 2)
	orphans := f01.Live()
	var liveAtRejoin atomic.Int64
	liveAtRejoin.Store(-1)
	f01.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		alive := 0
		for _, o := range orphans {
			select {
			case <-o.Killed():
			default:
				alive++
			}
		}
		if liveAtRejoin.CompareAndSwap(-1, int64(alive)) {
			close(rejoined)
		}
		return printJob(ctx, p)
	})
	f01.Lose()
	run.waitWarn(t, "host f01 lost")
	f01.Restore()
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if st.Failed != 0 || run.dups != 0 {
		t.Errorf("%d failed, %d reported twice", st.Failed, run.dups)
	}
	if got := outcomesOf(t, run.dir, "f01")["lost"]; got != 2 {
		t.Errorf("joblog: %d lost executions on f01, want 2", got)
	}
	for _, p := range orphans {
		select {
		case <-p.Killed():
		default:
			t.Errorf("lost job %d (process group %d) still runs on f01", p.Job, p.PGID)
		}
	}
	// f01 took jobs after the loss only once the sweep had killed the
	// lost executions (it is the only moment they could be seen).
	if got := liveAtRejoin.Load(); got != 0 {
		t.Errorf("f01 took a job with %d lost executions still running (-1: it took none)", got)
	}
	if !strings.Contains(run.warnings(), "killed the processes of 2 lost jobs") {
		t.Errorf("no sweep reported:\n%s", run.warnings())
	}
}

// A hung host (it stops answering; the transport notices after its
// window) is declared lost and its jobs are requeued.
func TestEngineHungHost(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 2)
	release := make(chan struct{})
	held := func(ctx context.Context, p *fakehost.Proc) error {
		select {
		case <-release: // on f01, finishes, but the hung host never says so
		case <-ctx.Done():
		}
		return printJob(ctx, p)
	}
	// f02's jobs wait too: had they been instant, f02 could run all of
	// them before f01 was ready (seen under load), and f01 never hold two.
	hs[0].SetJob(held)
	hs[1].SetJob(held)
	run := startFake(ctx, t, c, RunOptions{})
	const n = 12
	go run.submitShell(ctx, t, n)
	waitLive(t, hs[0], 2)
	hs[0].Hang()
	close(release)
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if got := outcomesOf(t, run.dir, "f01")["lost"]; got != 2 || st.Failed != 0 {
		t.Errorf("%d lost on f01 (want 2), %d failed", got, st.Failed)
	}
	if !strings.Contains(run.warnings(), "host f01 lost") {
		t.Errorf("warnings:\n%s", run.warnings())
	}
}

// A host whose jobs keep failing is quarantined; its jobs succeed
// elsewhere.
func TestEngineQuarantine(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 1)
	// f02 waits until f01 has failed three jobs, so that f01 cannot go
	// idle before the quarantine is due.
	gate := make(chan struct{})
	var failures atomic.Int64
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if failures.Add(1) == 3 {
			close(gate)
		}
		return fakehost.Exit(3)
	})
	hs[1].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		select {
		case <-gate:
			return printJob(ctx, p)
		case <-ctx.Done():
			return fakehost.Exit(143)
		}
	})
	run := startFake(ctx, t, c, RunOptions{Retries: 5, QuarantineAfter: 3})
	const n = 10
	go run.submitShell(ctx, t, n)
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if hs[0].Started() != 3 {
		t.Errorf("f01 ran %d jobs, want 3 (then quarantined)", hs[0].Started())
	}
	if st.Hosts[0].State != "quarantined" || !strings.Contains(run.warnings(), "host f01 quarantined after 3") {
		t.Errorf("f01 state %q; warnings:\n%s", st.Hosts[0].State, run.warnings())
	}
}

// --halt now kills the running jobs; --halt soon lets them finish. Either
// way no job starts after the halt.
func TestEngineHalt(t *testing.T) {
	for _, now := range []bool{true, false} {
		t.Run(fmt.Sprint("now=", now), func(t *testing.T) {
			ctx := testCtx(t)
			c, hs := fakeCluster(t, 1, 4)
			release := make(chan struct{})
			var killed, finished atomic.Int64
			hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
				if p.Job == 4 {
					<-time.After(10 * time.Millisecond)
					return fakehost.Exit(1)
				}
				select {
				case <-ctx.Done():
					killed.Add(1)
					return fakehost.Exit(143)
				case <-release:
					finished.Add(1)
					return printJob(ctx, p)
				}
			})
			run := startFake(ctx, t, c, RunOptions{HaltAfter: 1, HaltNow: now})
			go run.submitShell(ctx, t, 50)
			run.waitWarn(t, "halting")
			if now {
				// Killed by the halt, not by the end of the test: the
				// jobs would otherwise wait for release for ever.
				for i := 0; len(hs[0].Live()) > 0; i++ {
					if i > 3000 {
						t.Fatalf("halt now: %d jobs still run 30 s after the halt", len(hs[0].Live()))
					}
					time.Sleep(10 * time.Millisecond)
				}
			} else {
				close(release)
			}
			st, _, err := run.Wait()
			if !errors.Is(err, ErrHalted) {
				t.Fatalf("err = %v, want ErrHalted", err)
			}
			if now && (killed.Load() != 3 || finished.Load() != 0) {
				t.Errorf("halt now: %d running jobs killed, %d finished; want 3 killed", killed.Load(), finished.Load())
			}
			if !now && (finished.Load() != 3 || killed.Load() != 0) {
				t.Errorf("halt soon: %d running jobs finished, %d killed; want 3 finished", finished.Load(), killed.Load())
			}
			if hs[0].Started() != 4 || st.Failed != 1 {
				t.Errorf("%d jobs started (want 4: none after the halt), %d failed", hs[0].Started(), st.Failed)
			}
		})
	}
}

// Speculation: a straggler is backed up on an idle host; the first
// result wins and the other execution is killed. With late, the
// straggler ignores the kill and finishes anyway: its result arrives
// after the winner's and is discarded.
func TestEngineSpeculation(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprint("late=", late), func(t *testing.T) {
			ctx := testCtx(t)
			c, hs := fakeCluster(t, 2, 1)
			var original *fakehost.Proc
			var killed atomic.Bool
			hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
				if p.Job != 1 {
					return printJob(ctx, p)
				}
				original = p
				<-ctx.Done() // a straggler: it ends only when killed
				killed.Store(true)
				if late {
					return printJob(ctx, p) // finished before the kill landed
				}
				return fakehost.Exit(143)
			})
			run := startFake(ctx, t, c, RunOptions{Speculate: true, SpeculateAfter: 50 * time.Millisecond})
			if err := run.Ready(ctx); err != nil {
				t.Fatal(err)
			}
			const n = 6
			run.submitShell(ctx, t, n)
			st, res, err := run.Wait()
			if err != nil {
				t.Fatal(err)
			}
			wantSum(t, res, n)
			if original == nil || !killed.Load() {
				t.Fatalf("the straggler on f01 was not killed when its backup won")
			}
			if st.Backups != 1 || st.BackupsWon != 1 || run.dups != 0 {
				t.Errorf("%d backups, %d won, %d results reported twice", st.Backups, st.BackupsWon, run.dups)
			}
			want := "superseded"
			if late {
				want = "discarded"
			}
			if got := outcomesOf(t, run.dir, "f01"); got[want] != 1 {
				t.Errorf("joblog outcomes on f01: %v, want one %s", got, want)
			}
			if r := run.results[1]; r.Host != "f02" {
				t.Errorf("job 1 recorded from %s, want the backup's f02", r.Host)
			}
		})
	}
}

// With every host lost and none coming back, the run ends after
// NoHostTimeout, keeping what it recorded.
func TestEngineNoUsableHost(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 1, 1)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job == 3 {
			hs[0].Lose() // and it never comes back
			<-ctx.Done()
		}
		return printJob(ctx, p)
	})
	// The dispatcher's clock is the test's: an hour of waiting passes
	// when the test says so, not in real time.
	clock := &testClock{}
	clock.set(time.Unix(1e9, 0))
	run := startFake(ctx, t, c, RunOptions{NoHostTimeout: time.Hour, testHook: func(d *dispatcher) { d.now = clock.now }})
	go run.submitShell(ctx, t, 5)
	run.waitWarn(t, "host f01 lost")
	time.Sleep(500 * time.Millisecond) // a few ticks: still waiting for f01
	select {
	case <-run.done:
		t.Fatal("the run gave up before its NoHostTimeout passed")
	default:
	}
	clock.set(time.Unix(1e9, 0).Add(2 * time.Hour))
	st, _, err := run.Wait()
	if !errors.Is(err, ErrNoHosts) || !strings.Contains(err.Error(), "waited 1h0m0s for f01") {
		t.Fatalf("err = %v, want ErrNoHosts naming f01", err)
	}
	if st.Succeeded != 2 || len(run.results) != 2 {
		t.Errorf("%d succeeded, %d reported; want jobs 1 and 2", st.Succeeded, len(run.results))
	}
	recs, _ := records.ReadJournal(run.dir.Journal())
	if len(recs) != 2 {
		t.Errorf("journal holds %d records, want 2", len(recs))
	}
}

// testClock is a clock the test sets.
type testClock struct{ t atomic.Int64 }

func (c *testClock) set(t time.Time) { c.t.Store(t.UnixNano()) }
func (c *testClock) now() time.Time  { return time.Unix(0, c.t.Load()) }

// A job pinned to a host that never comes up does not hold the run
// forever: it ends after NoHostTimeout, naming why.
func TestEnginePinnedToAbsentHost(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 1)
	hs[1].Down()
	run := startFake(ctx, t, c, RunOptions{NoHostTimeout: 200 * time.Millisecond})
	for i := 0; i < 4; i++ {
		spec := JobSpec{Shell: "job"}
		if i == 2 {
			spec.Pin = "f02"
		}
		if err := run.Submit(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	run.Close()
	st, _, err := run.Wait()
	if !errors.Is(err, ErrNoHosts) || !strings.Contains(err.Error(), "pinned to hosts that are not up") {
		t.Fatalf("err = %v", err)
	}
	if st.Succeeded != 3 || !strings.Contains(run.warnings(), "host f02 unreachable") {
		t.Errorf("%d succeeded (want 3); warnings:\n%s", st.Succeeded, run.warnings())
	}
}

// A result is reported (and reduced) only once the journal holding it
// is on disk: OnResult finds its record in results.jsonl.
func TestEngineResultCountsAfterJournal(t *testing.T) {
	ctx := testCtx(t)
	c, _ := fakeCluster(t, 2, 2)
	var missing []int
	var dir records.RunDir // set before the first job is submitted
	run := startFake(ctx, t, c, RunOptions{OnResult: func(r Result) {
		recs, err := records.ReadJournal(dir.Journal())
		if _, ok := recs[r.Job]; err != nil || !ok {
			missing = append(missing, r.Job)
		}
	}})
	dir = run.dir
	run.submitShell(ctx, t, 40)
	if _, _, err := run.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(run.results) != 40 || len(missing) > 0 {
		t.Errorf("%d results; reported before the journal held them: %v", len(run.results), missing)
	}
}

// Resume takes recorded jobs from the journal and runs only the others;
// a changed job or binary is refused before anything runs.
func TestEngineResume(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 1, 2)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job == 7 {
			return fakehost.Exit(1)
		}
		return printJob(ctx, p)
	})
	const n = 10
	first := startFake(ctx, t, c, RunOptions{})
	first.submitShell(ctx, t, n)
	if st, _, _ := first.Wait(); st.Failed != 1 || hs[0].Started() != n {
		t.Fatalf("first run: %d failed, %d started", st.Failed, hs[0].Started())
	}
	// Without ResumeFailed nothing runs again; with it, only job 7.
	for _, failed := range []bool{false, true} {
		before := hs[0].Started()
		hs[0].SetJob(printJob)
		run := startFake(ctx, t, c, RunOptions{ResumeDir: string(first.dir), ResumeFailed: failed})
		run.submitShell(ctx, t, n)
		st, res, err := run.Wait()
		ran := hs[0].Started() - before
		if !failed {
			if ran != 0 || st.Resumed != n || st.Failed != 1 || res != "" {
				t.Errorf("resume: %d ran, %d resumed, %d failed, result %q; want 0, 10, 1, none", ran, st.Resumed, st.Failed, res)
			}
			continue
		}
		if err != nil || ran != 1 || st.Resumed != n-1 || run.results[7].Err != nil {
			t.Errorf("resume --failed: %d ran (want 1), %d resumed, err %v", ran, st.Resumed, err)
		}
		wantSum(t, res, n)
		if run.ID() != first.ID() {
			t.Errorf("resumed run id %s, want the recorded %s", run.ID(), first.ID())
		}
	}
	// A changed job is refused.
	run := startFake(ctx, t, c, RunOptions{ResumeDir: string(first.dir)})
	if err := run.Verify(3, JobSpec{Shell: "another job"}); err == nil || !strings.Contains(err.Error(), "job 3: refusing") {
		t.Errorf("Verify of a changed job: %v", err)
	}
	run.Submit(ctx, JobSpec{Shell: "another job"})
	run.Close()
	if _, _, err := run.Wait(); err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Errorf("a changed job was not refused: %v", err)
	}
}

// Cancelling the caller's context kills the running jobs; what was done
// stays recorded for a resume.
func TestEngineInterrupt(t *testing.T) {
	ctx, cancel := context.WithCancel(testCtx(t))
	c, hs := fakeCluster(t, 1, 2)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job > 3 {
			<-ctx.Done()
			return fakehost.Exit(143)
		}
		return printJob(ctx, p)
	})
	run := startFake(ctx, t, c, RunOptions{})
	go run.submitShell(ctx, t, 10)
	waitLive(t, hs[0], 2)
	for len(outcomesOf(t, run.dir, "")) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	st, _, err := run.Wait()
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("err = %v", err)
	}
	if live := hs[0].Live(); len(live) != 0 {
		t.Errorf("%d jobs still run after the interrupt", len(live))
	}
	recs, _ := records.ReadJournal(run.dir.Journal())
	if st.Succeeded != 3 || len(recs) != 3 {
		t.Errorf("%d succeeded, %d journaled; want 3", st.Succeeded, len(recs))
	}
}

// A job past its timeout is killed and fails; the others are unaffected.
func TestEngineTimeout(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 1, 2)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job == 2 {
			<-ctx.Done()
			return fakehost.Exit(143)
		}
		return printJob(ctx, p)
	})
	run := startFake(ctx, t, c, RunOptions{Timeout: 50 * time.Millisecond})
	run.submitShell(ctx, t, 4)
	st, _, _ := run.Wait()
	if st.Failed != 1 || !strings.Contains(fmt.Sprint(run.results[2].Err), "timed out after 50ms") {
		t.Errorf("%d failed; job 2: %v", st.Failed, run.results[2].Err)
	}
	if got := outcomesOf(t, run.dir, "")["gave-up: timed out"]; got != 1 {
		t.Errorf("joblog: %v", outcomesOf(t, run.dir, ""))
	}
}

// A host that queues jobs (an agent) gets a window of jobs beyond its
// slots. When nothing else waits and another host is idle, a job waiting
// behind a slow one in that window is taken back, without a retry, and
// runs on the idle host; the slow job is left alone.
func TestEngineWindowTakeBack(t *testing.T) {
	ctx := testCtx(t)
	var ms []*Member
	var hs []*fakehost.Host
	for _, name := range []string{"f01", "f02"} {
		h := fakehost.New(name, fakehost.Options{Job: printJob, Slots: 2})
		hs = append(hs, h)
		ms = append(ms, &Member{Inv: fakeInv(name, 2), Host: h, Timeout: time.Second})
	}
	c, err := NewClusterOf(ms)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var slowKilled atomic.Bool
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		select { // f01 is slow: its jobs end when the test says
		case <-release:
			return printJob(ctx, p)
		case <-ctx.Done():
			slowKilled.Store(true)
			return fakehost.Exit(143)
		}
	})
	var tookOver sync.Once
	tookOverCh := make(chan struct{})
	var onF02 atomic.Int64
	var notFirst atomic.Int64 // a job taken back never ran: its next run is still attempt 1
	run := startFake(ctx, t, c, RunOptions{Retries: 0, OnResult: func(r Result) {
		if r.Attempt != 1 {
			notFirst.Store(int64(r.Job))
		}
		// f02 runs its 3 (2 slots and a window of 1), then the 2 more;
		// a 6th can only be one taken back from f01's window.
		if r.Host == "f02" && onF02.Add(1) == 6 {
			tookOver.Do(func() { close(tookOverCh) })
		}
	}})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 8 // 2 × (2 slots + a window of 1) = 6 placed at once, then 2 more
	run.submitShell(ctx, t, n)
	select {
	case <-tookOverCh:
	case <-time.After(20 * time.Second):
		t.Error("no job waiting in f01's window was taken back to idle f02")
	}
	close(release)
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if st.Failed != 0 || slowKilled.Load() {
		t.Errorf("%d failed; a running slow job killed: %v", st.Failed, slowKilled.Load())
	}
	if j := notFirst.Load(); j != 0 {
		t.Errorf("job %d succeeded as a later attempt: the execution taken back counted as one (DSUB_ATTEMPT)", j)
	}
	// The execution taken back never started: no row, in the joblog
	// (as GNU parallel's) nor in executions.tsv.
	for _, rec := range []string{run.dir.Executions(), run.dir.Joblog()} {
		rows, _, err := records.ReadJoblog(rec)
		if err != nil || len(rows) != n {
			t.Errorf("%s: %d rows for %d jobs (%v), want one each: %v", filepath.Base(rec), len(rows), n, err, outcomesOf(t, run.dir, ""))
		}
	}
}

// Hosts that took no part in a run are named in its stats with their
// state: one still being prepared when the jobs ran out, one unreachable.
func TestEngineUnusedHosts(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 3, 2)
	// f02's preparation ends once the run has stopped taking events
	// (the run's end would otherwise wait 30 s for it): too late to
	// count.
	loopDone := make(chan chan struct{}, 1)
	hs[1].SetAdmin(func(ctx context.Context, cmd *remote.Cmd) error {
		select {
		case done := <-loopDone:
			loopDone <- done
			<-done
		case <-ctx.Done():
		}
		return nil
	})
	hs[2].Down()
	run := startFake(ctx, t, c, RunOptions{})
	loopDone <- run.loopDone
	// The jobs come once f03 is known to be down: six jobs on f01 can
	// end the run before its failed connect is even reported.
	for w := range run.warned {
		if strings.Contains(w, "f03 unreachable") {
			break
		}
	}
	const n = 6
	go run.submitShell(ctx, t, n)
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if len(st.Hosts) != 1 || st.Hosts[0].Name != "f01" {
		t.Errorf("hosts in the table: %+v, want f01 alone", st.Hosts)
	}
	want := []records.UnusedHost{{Name: "f02", State: "preparing"}, {Name: "f03", State: "down"}}
	if !slices.Equal(st.Unused, want) {
		t.Errorf("unused hosts %+v, want %+v", st.Unused, want)
	}
}

// "running" counts only executions that have started: those sent to a
// host and waiting in its window for a slot are counted as queued, in
// the snapshot and per host (12 running on 8 slots was once shown).
func TestSnapshotRunningIsStarted(t *testing.T) {
	ctx := testCtx(t)
	h := fakehost.New("f01", fakehost.Options{Job: blockJob, Slots: 2})
	c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 2), Host: h, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	run := startFake(ctx, t, c, RunOptions{})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run.submitShell(ctx, t, 6) // 2 slots and a window of 1: 3 placed
	var s Snapshot
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s = run.Snapshot()
		if s.Running+s.Queued == 3 || time.Now().After(deadline) {
			break
		}
	}
	if s.Running != 2 || s.Queued != 1 || len(s.Hosts) != 1 || s.Hosts[0].Running != 2 || s.Hosts[0].Queued != 1 {
		t.Errorf("snapshot: %d running, %d queued, hosts %+v; want 2 running (its slots) and 1 queued", s.Running, s.Queued, s.Hosts)
	}
	run.Close()
	run.Wait()
}

// The snapshot a run ends with has every result reduced: the final page
// shows what the successes reduce to, not a value from before the last
// commit (a page kept "78930" where the 399 successes summed to 80123).
func TestFinalSnapshotIsReduced(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 2)
	for _, h := range hs {
		h.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
			if p.Job == 7 {
				return fakehost.Exit(3)
			}
			return printJob(ctx, p)
		})
	}
	run := startFake(ctx, t, c, RunOptions{})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	const n = 40
	run.submitShell(ctx, t, n)
	st, _, _ := run.Wait()
	if st.Failed != 1 {
		t.Fatalf("%d failed, want job 7", st.Failed)
	}
	want := fmt.Sprint(n*(n+1)/2 - 7)
	if got := run.Snapshot().Reduced; got != want {
		t.Errorf("final snapshot: reduced %q, want %s (every success)", got, want)
	}
}

// A host's measured run time is taken only within what it can be: an
// agent claiming its job ran 100 hours is not believed; the master's
// own clock stands.
func TestHostRunTimeIsBounded(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 1, 1)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		if p.Cmd.Usage != nil {
			*p.Cmd.Usage = remote.Usage{Wall: 100 * time.Hour}
		}
		return printJob(ctx, p)
	})
	run := startFake(ctx, t, c, RunOptions{})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run.submitShell(ctx, t, 2)
	if _, _, err := run.Wait(); err != nil {
		t.Fatal(err)
	}
	recs, err := records.ReadJournal(run.dir.Journal())
	if err != nil || len(recs) != 2 {
		t.Fatalf("journal: %d records, %v", len(recs), err)
	}
	for _, r := range recs {
		if r.Duration > 60 {
			t.Errorf("job %d recorded as %.0f s: the host's claim was believed", r.Job, r.Duration)
		}
	}
}

// readOutput is stream s of the execution loc locates in dir's output.
func readOutput(t *testing.T, dir records.RunDir, loc records.Locator, s records.Stream) string {
	t.Helper()
	var b strings.Builder
	if _, err := dir.ReadOutput(loc, s, &b); err != nil {
		t.Errorf("output at %+v: %v", loc, err)
	}
	return b.String()
}
