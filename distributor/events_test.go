package distributor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// Each execution reports Sent (only where a host queues jobs), Started
// and Ended, once each and in that order; Ended carries its joblog
// outcome, and a failure its stderr tail and log. The host reports
// Prepared once, before its first execution starts.
func TestEngineEvents(t *testing.T) {
	for _, queues := range []bool{false, true} {
		t.Run(fmt.Sprint("queues=", queues), func(t *testing.T) {
			ctx := testCtx(t)
			slots := 0
			if queues {
				slots = 2
			}
			h := fakehost.New("f01", fakehost.Options{Slots: slots, Job: func(ctx context.Context, p *fakehost.Proc) error {
				if p.Job == 2 {
					fmt.Fprintln(p.Cmd.Stderr, "no good")
					return fakehost.Exit(3)
				}
				return printJob(ctx, p)
			}})
			c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 2), Host: h, Timeout: time.Second}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var mu sync.Mutex
			kinds := map[int][]EventKind{}
			ended := map[int]Event{}
			var prepared []Event
			startedBeforePrepared := false
			run := startFake(ctx, t, c, RunOptions{OnEvent: func(e Event) {
				mu.Lock()
				defer mu.Unlock()
				if e.Kind == Prepared {
					prepared = append(prepared, e)
					return
				}
				if len(prepared) == 0 {
					startedBeforePrepared = true
				}
				kinds[e.Seq] = append(kinds[e.Seq], e.Kind)
				if e.Kind == Ended {
					ended[e.Job] = e
				}
			}})
			run.submitShell(ctx, t, 10)
			if st, _, err := run.Wait(); err != nil || st.Failed != 1 {
				t.Fatalf("run: %v, %d failed; want job 2 failed", err, st.Failed)
			}
			want := []EventKind{Started, Ended}
			if queues {
				want = []EventKind{Sent, Started, Ended}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(kinds) != 10 {
				t.Errorf("%d executions reported, want 10", len(kinds))
			}
			if len(prepared) != 1 || prepared[0].Host != "f01" || startedBeforePrepared {
				t.Errorf("prepared %+v (an execution before it: %v); want f01 once, first", prepared, startedBeforePrepared)
			}
			for seq, ks := range kinds {
				if !slices.Equal(ks, want) {
					t.Errorf("execution %d: %v, want %v", seq, ks, want)
				}
			}
			if e := ended[2]; e.Outcome != "gave-up" || e.Exit != 3 || !strings.Contains(e.StderrTail, "no good") || !strings.Contains(readOutput(t, run.dir, e.Output, records.Stderr), "no good") {
				t.Errorf("job 2 ended %+v: want gave-up, exit 3, its stderr and log", e)
			}
			if e := ended[1]; e.Outcome != "recorded" || e.Duration <= 0 {
				t.Errorf("job 1 ended %+v: want recorded, with its duration", e)
			}
		})
	}
}

// records.ReadJoblog reads back what the joblog wrote, and leaves out a torn
// last line.
func TestReadJoblog(t *testing.T) {
	d := records.RunDir(t.TempDir())
	p := d.Joblog()
	l, err := records.OpenJoblog(d, "", false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.UnixMilli(1_790_000_000_123)
	rows := []records.JoblogRow{
		{Job: 1, Host: "h1", Start: start, Runtime: 1500 * time.Millisecond, Send: 3, Receive: 4, Exit: 0, Command: "echo a\tb", Outcome: "recorded"},
		{Job: 2, Host: "h2", Start: start, Runtime: time.Second, Exit: -1, Signal: "KILL", Command: "sleep 9", Outcome: "gave-up: timed out"},
	}
	for _, r := range rows {
		l.Write(r, true)
	}
	l.Close()
	f, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("3\th1\t17900") // torn
	f.Close()
	got, bad, err := records.ReadJoblog(p)
	if err != nil || bad != 0 || len(got) != 2 {
		t.Fatalf("ReadJoblog: %d rows, %d bad, %v", len(got), bad, err)
	}
	rows[0].Command = "echo a b" // tabs are written as spaces
	rows[1].Signal = "9"         // the signal's number, as parallel's
	for i := range rows {
		g, w := got[i], rows[i]
		if g.Job != w.Job || g.Host != w.Host || !g.Start.Equal(w.Start) || g.Runtime != w.Runtime || g.Exit != w.Exit ||
			g.Signal != w.Signal || g.Command != w.Command || g.Outcome != w.Outcome || g.Send != w.Send || g.Receive != w.Receive {
			t.Errorf("row %d: %+v, want %+v", i, g, w)
		}
	}
}

// CancelJob fails a running job (its process killed) and a waiting one,
// each with ErrCanceled, and the run goes on; a finished job cannot be
// cancelled.
func TestEngineCancelJob(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 1, 2)
	release := make(chan struct{})
	killed := make(chan int, 10)
	hs[0].SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		select {
		case <-release:
			return printJob(ctx, p)
		case <-ctx.Done():
			killed <- p.Job
			return fakehost.Exit(143)
		}
	})
	run := startFake(ctx, t, c, RunOptions{Retries: 2})
	go run.submitShell(ctx, t, 6)
	waitLive(t, hs[0], 2) // jobs 1 and 2 run; 3..6 wait
	if err := run.CancelJob(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if j := <-killed; j != 1 {
		t.Fatalf("job %d killed, want 1", j)
	}
	waitLive(t, hs[0], 2) // job 3 took its slot
	if err := run.CancelJob(ctx, 6); err != nil {
		t.Fatal(err)
	}
	close(release)
	st, _, err := run.Wait()
	if err != nil || st.Failed != 2 || st.Succeeded != 4 {
		t.Fatalf("run: %v, %d failed, %d succeeded; want 2 and 4", err, st.Failed, st.Succeeded)
	}
	run.mu.Lock()
	for _, j := range []int{1, 6} {
		if r := run.results[j]; !errors.Is(r.Err, ErrCanceled) || errs.KindOf(r.Err) != errs.KindCanceled {
			t.Errorf("job %d: %v, want ErrCanceled of KindCanceled", j, r.Err)
		}
	}
	run.mu.Unlock()
	if !strings.Contains(run.warnings(), "job 1 cancelled by the user") {
		t.Errorf("warnings:\n%s", run.warnings())
	}
	if err := run.CancelJob(ctx, 2); err == nil {
		t.Error("a finished job cancelled")
	}
	if hs[0].Started() != 5 {
		t.Errorf("%d jobs started, want 5 (job 6 never, job 1 not again)", hs[0].Started())
	}
}
