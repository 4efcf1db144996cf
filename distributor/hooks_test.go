package distributor

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

func count(cmds []string, s string) int {
	n := 0
	for _, c := range cmds {
		if c == s {
			n++
		}
	}
	return n
}

// A host that is lost and re-joins runs --setup again before it takes a
// job (what setup made may be gone with a reboot); --teardown runs once on
// each host at the end.
func TestEngineSetupAgainOnRejoin(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 2)
	f01, f02 := hs[0], hs[1]
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
	run := startFake(ctx, t, c, RunOptions{Setup: "set-up", Teardown: "tear-down"})
	const n = 12
	go run.submitShell(ctx, t, n)
	waitLive(t, f01, 2)
	var once sync.Once
	setupsAtRejoin := -1
	f01.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		once.Do(func() {
			setupsAtRejoin = count(f01.AdminCommands(), "set-up")
			close(rejoined)
		})
		return printJob(ctx, p)
	})
	f01.Lose()
	run.waitWarn(t, "host f01 lost")
	f01.Restore()
	_, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, n)
	if setupsAtRejoin != 2 {
		t.Errorf("f01 took its first job after re-joining with %d setups run, want 2", setupsAtRejoin)
	}
	for _, h := range hs {
		if got := count(h.AdminCommands(), "tear-down"); got != 1 {
			t.Errorf("%s: %d teardowns, want 1", h.Name(), got)
		}
	}
}

// A host whose setup fails takes no jobs: it is left out with the setup's
// exit status, recorded in run.json; the others run every job.
func TestEngineSetupFails(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 2)
	// f01's setup fails only after f02 has run every job and the run's
	// loop has ended: the failure must still be told.
	release := make(chan struct{})
	hs[0].SetAdmin(func(ctx context.Context, cmd *remote.Cmd) error {
		if cmd.Shell == "set-up" {
			<-release
			cmd.Stderr.Write([]byte("no space left\n"))
			return fakehost.Exit(3)
		}
		return nil
	})
	var done atomic.Int64
	run := startFake(ctx, t, c, RunOptions{Setup: "set-up", Teardown: "tear-down", OnResult: func(Result) {
		if done.Add(1) == 10 {
			close(release)
		}
	}})
	go run.submitShell(ctx, t, 10)
	st, res, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	wantSum(t, res, 10)
	jobs := map[string]int{}
	for _, h := range st.Hosts {
		jobs[h.Name] = h.Jobs
	}
	if jobs["f01"] != 0 || jobs["f02"] != 10 {
		t.Errorf("jobs per host: %v; want f01 0 and f02 10", jobs)
	}
	if !strings.Contains(run.warnings(), "setup on f01: exited 3: no space left") {
		t.Errorf("warnings:\n%s", run.warnings())
	}
	if got := count(hs[0].AdminCommands(), "tear-down"); got != 0 {
		t.Errorf("f01, never set up, was torn down %d times", got)
	}
	m, err := records.ReadManifest(records.RunDir(run.Dir()))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range m.Hosts {
		if h.Name == "f01" && (h.Setup == nil || h.Setup.Exit != 3 || h.Teardown != nil) {
			t.Errorf("run.json's f01: setup %+v, teardown %+v; want exit 3 and none", h.Setup, h.Teardown)
		}
	}
}
