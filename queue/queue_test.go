package queue

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func newQ(t *testing.T, opts Options, hosts ...string) *Queue {
	t.Helper()
	q := New(opts)
	for _, h := range hosts {
		name, slots := h, 1
		if i := strings.IndexByte(h, '*'); i >= 0 {
			name = h[:i]
			fmt.Sscan(h[i+1:], &slots)
		}
		if err := q.AddHost(name, slots); err != nil {
			t.Fatal(err)
		}
	}
	return q
}

func addJobs(t *testing.T, q *Queue, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		if err := q.Add(&Job{ID: i}); err != nil {
			t.Fatal(err)
		}
	}
}

func show(es []Exec) string {
	var s []string
	for _, e := range es {
		s = append(s, fmt.Sprintf("%d@%s", e.Job.ID, e.Host))
	}
	return strings.Join(s, " ")
}

func TestAssignRoundRobinAcrossSlots(t *testing.T) {
	q := newQ(t, Options{}, "a*2", "b*1", "c*3")
	addJobs(t, q, 10)
	// One slot per host per round, each round starting one host later:
	// a b c | (b full) c a | c.
	if got, want := show(q.Assign()), "1@a 2@b 3@c 4@c 5@a 6@c"; got != want {
		t.Errorf("assignment %s, want %s", got, want)
	}
	if q.Running() != 6 || q.Pending() != 4 || q.FreeSlots() != 0 {
		t.Errorf("running %d pending %d free %d, want 6 4 0", q.Running(), q.Pending(), q.FreeSlots())
	}
}

func TestAssignIsDeterministic(t *testing.T) {
	run := func() string {
		q := newQ(t, Options{}, "a*2", "b*1", "c*3")
		addJobs(t, q, 10)
		return show(q.Assign())
	}
	first := run()
	if first != "1@a 2@b 3@c 4@c 5@a 6@c" {
		t.Errorf("assignment = %s", first)
	}
	for i := 0; i < 20; i++ {
		if got := run(); got != first {
			t.Fatalf("run %d: %s, want %s", i, got, first)
		}
	}
}

// TestFastHostDoesMore simulates a host that finishes jobs three times as
// fast as the other: a free slot takes the next job, so it does ~3x more.
func TestFastHostDoesMore(t *testing.T) {
	q := newQ(t, Options{}, "fast", "slow")
	addJobs(t, q, 40)
	q.Close()
	type inflight struct {
		e    Exec
		left int
	}
	var run []inflight
	for tick := 0; !q.Done(); tick++ {
		for _, e := range q.Assign() {
			d := 3
			if e.Host == "fast" {
				d = 1
			}
			run = append(run, inflight{e, d})
		}
		var still []inflight
		for _, r := range run {
			if r.left--; r.left == 0 {
				if q.Finish(r.e, Succeeded) != Recorded {
					t.Fatal("not recorded")
				}
			} else {
				still = append(still, r)
			}
		}
		run = still
		if tick > 1000 {
			t.Fatal("never done")
		}
	}
	f, s := q.Stats("fast").Succeeded, q.Stats("slow").Succeeded
	if f+s != 40 || f < 2*s {
		t.Errorf("fast did %d, slow %d: want fast ≈ 3x slow", f, s)
	}
}

func TestPinnedJobsRunOnlyOnTheirHost(t *testing.T) {
	q := newQ(t, Options{}, "a", "b")
	q.Add(&Job{ID: 1, Pin: "b"})
	q.Add(&Job{ID: 2, Pin: "b"})
	q.Add(&Job{ID: 3})
	if got := show(q.Assign()); got != "3@a 1@b" {
		t.Fatalf("assign = %s", got)
	}
	if err := q.Add(&Job{ID: 4, Pin: "zz"}); err == nil {
		t.Error("pin to unknown host accepted")
	}
}

func TestFailureRetriesOnAnotherHost(t *testing.T) {
	q := newQ(t, Options{Retries: 1}, "a", "b")
	addJobs(t, q, 1)
	q.Close()
	e := q.Assign()
	if show(e) != "1@a" {
		t.Fatalf("assign = %s", show(e))
	}
	if d := q.Finish(e[0], Failed); d != Requeued {
		t.Fatalf("first failure: %v", d)
	}
	e = q.Assign()
	if show(e) != "1@b" || e[0].Attempt != 2 {
		t.Fatalf("retry went to %s attempt %d, want b attempt 2", show(e), e[0].Attempt)
	}
	if d := q.Finish(e[0], Failed); d != GaveUp {
		t.Fatalf("second failure with Retries=1: %v", d)
	}
	if !q.Done() || q.GaveUp() != 1 || q.Succeeded() != 0 {
		t.Errorf("done %v gaveUp %d", q.Done(), q.GaveUp())
	}
}

func TestRetryOnSameHostWhenItIsTheOnlyOne(t *testing.T) {
	q := newQ(t, Options{Retries: 2}, "a")
	addJobs(t, q, 1)
	e := q.Assign()
	q.Finish(e[0], Failed)
	if e = q.Assign(); show(e) != "1@a" {
		t.Fatalf("retry = %s", show(e))
	}
}

func TestLostIsRequeuedWithoutConsumingRetries(t *testing.T) {
	q := newQ(t, Options{Retries: 0}, "a", "b")
	addJobs(t, q, 3)
	q.Close()
	es := q.Assign() // 1@a 2@b
	q.SetHostState("a", Down)
	if d := q.Finish(es[0], Lost); d != Requeued {
		t.Fatalf("lost: %v", d)
	}
	q.Finish(es[1], Succeeded)
	// Job 1 goes first (front of queue), to b: a is down.
	if got := show(q.Assign()); got != "1@b" {
		t.Fatalf("after loss: %s", got)
	}
	if q.Stats("a").Lost != 1 {
		t.Errorf("lost not counted: %+v", q.Stats("a"))
	}
}

func TestDuplicateSuccessIsDiscarded(t *testing.T) {
	q := newQ(t, Options{}, "a", "b")
	q.Add(&Job{ID: 1})
	q.Close()
	e1 := q.Assign()[0]
	// Host a hangs; the job is declared lost and rerun on b.
	q.SetHostState("a", Down)
	q.Finish(e1, Lost)
	e2 := q.Assign()[0]
	if d := q.Finish(e2, Succeeded); d != Recorded {
		t.Fatalf("first success: %v", d)
	}
	// a wakes up and reports a result for the same job: counted nowhere.
	q.byName["a"].running++ // a's execution was still physically running
	if d := q.Finish(e1, Succeeded); d != Discarded {
		t.Fatalf("late success: %v", d)
	}
	if q.Succeeded() != 1 || !q.Done() {
		t.Errorf("succeeded %d done %v", q.Succeeded(), q.Done())
	}
}

func TestQuarantine(t *testing.T) {
	q := newQ(t, Options{Retries: 5, QuarantineAfter: 2}, "bad", "good")
	addJobs(t, q, 4)
	q.Close()
	es := q.Assign() // 1@bad 2@good
	q.Finish(es[0], Failed)
	q.Finish(es[1], Succeeded)
	es = q.Assign() // 3@bad? job 1 avoids bad → 1@good; bad takes 3
	for _, e := range es {
		if e.Host == "bad" {
			q.Finish(e, Failed)
		} else {
			q.Finish(e, Succeeded)
		}
	}
	if q.HostState("bad") != Quarantined {
		t.Fatalf("bad is %v after 2 consecutive failures", q.HostState("bad"))
	}
	q.SetHostState("bad", Up) // quarantine lasts
	for !q.Done() {
		es := q.Assign()
		if len(es) == 0 {
			t.Fatal("stalled")
		}
		for _, e := range es {
			if e.Host == "bad" {
				t.Fatalf("quarantined host got job %d", e.Job.ID)
			}
			q.Finish(e, Succeeded)
		}
	}
}

func TestStuck(t *testing.T) {
	q := newQ(t, Options{QuarantineAfter: 1, Retries: 3}, "a")
	addJobs(t, q, 2)
	q.Close()
	e := q.Assign()[0]
	q.Finish(e, Failed)
	if !q.Stuck() {
		t.Error("all hosts quarantined with jobs pending: not stuck")
	}
	q2 := newQ(t, Options{}, "a")
	addJobs(t, q2, 1)
	q2.SetHostState("a", Down)
	if q2.Stuck() {
		t.Error("a down host may come back: not stuck")
	}
}

func TestCanceledDropsJob(t *testing.T) {
	q := newQ(t, Options{}, "a")
	addJobs(t, q, 2)
	q.Close()
	e := q.Assign()[0]
	if d := q.Finish(e, Canceled); d != Dropped {
		t.Fatalf("canceled: %v", d)
	}
	if q.Pending() != 1 || q.Running() != 0 {
		t.Errorf("pending %d running %d", q.Pending(), q.Running())
	}
}

func TestAddHostErrors(t *testing.T) {
	q := New(Options{})
	if err := q.AddHost("a", 0); err == nil {
		t.Error("0 slots accepted")
	}
	q.AddHost("a", 1)
	if err := q.AddHost("a", 1); err == nil {
		t.Error("duplicate host accepted")
	}
	q.Add(&Job{ID: 1})
	if err := q.Add(&Job{ID: 1}); err == nil {
		t.Error("duplicate job accepted")
	}
	q.Close()
	if err := q.Add(&Job{ID: 2}); err == nil {
		t.Error("Add after Close accepted")
	}
}

func TestLostTooOftenGivesUp(t *testing.T) {
	q := newQ(t, Options{MaxLost: 2}, "a")
	addJobs(t, q, 1)
	q.Close()
	var d Disposition
	for i := 0; i < 3; i++ {
		e := q.Assign()
		if len(e) != 1 {
			t.Fatalf("round %d: %d assignments", i, len(e))
		}
		d = q.Finish(e[0], Lost)
	}
	if d != GaveUp || !q.Done() || q.GaveUp() != 1 {
		t.Errorf("after 3 losses with MaxLost 2: %v, done %v", d, q.Done())
	}
}

func TestHostsKnownBeforeTheyAreReady(t *testing.T) {
	q := newQ(t, Options{}, "a", "b")
	q.SetHostState("b", Down) // still preparing
	q.Add(&Job{ID: 1, Pin: "b"})
	q.Add(&Job{ID: 2, Pin: "b"})
	q.Add(&Job{ID: 3})
	if got := show(q.Assign()); got != "3@a" {
		t.Fatalf("assign = %s", got)
	}
	q.SetSlots("b", 2)
	q.SetHostState("b", Up)
	if got := show(q.Assign()); got != "1@b 2@b" {
		t.Fatalf("after b is ready: %s", got)
	}
	q2 := newQ(t, Options{}, "a", "b")
	q2.SetHostState("b", Quarantined) // failed to prepare
	q2.Add(&Job{ID: 1, Pin: "b"})
	q2.Add(&Job{ID: 2})
	q2.Close()
	if failed := q2.FailPinned("b"); len(failed) != 1 || failed[0].ID != 1 || q2.GaveUp() != 1 {
		t.Fatalf("FailPinned = %v", failed)
	}
	e := q2.Assign()
	q2.Finish(e[0], Succeeded)
	if !q2.Done() {
		t.Error("not done after the pinned job failed and the other succeeded")
	}
}

// TestBackup covers when a speculative execution is allowed and where it
// goes.
func TestBackup(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) (*Queue, int)
		want  string // "job@host", or "" when declined
	}{
		{"idle host takes the backup", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b*2")
			addJobs(t, q, 1)
			q.Assign() // 1@a
			return q, 1
		}, "1@b"},
		{"declined while jobs wait", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b")
			addJobs(t, q, 3)
			q.Assign() // 1@a 2@b, 3 waits
			q.SetSlots("b", 2)
			return q, 1
		}, ""},
		{"declined for a job not running", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b")
			addJobs(t, q, 1)
			return q, 1
		}, ""},
		{"declined for an unknown or finished job", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b")
			addJobs(t, q, 1)
			q.Finish(q.Assign()[0], Succeeded)
			return q, 1
		}, ""},
		{"never a third execution", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b", "c")
			addJobs(t, q, 1)
			q.Assign()
			if _, ok := q.Backup(1); !ok {
				t.Fatal("first backup declined")
			}
			return q, 1
		}, ""},
		{"not on the host already running it", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a*4")
			addJobs(t, q, 1)
			q.Assign()
			return q, 1
		}, ""},
		{"not on a host it failed on", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{Retries: 1}, "a", "b")
			addJobs(t, q, 1)
			q.Finish(q.Assign()[0], Failed) // failed on a
			if got := show(q.Assign()); got != "1@b" {
				t.Fatalf("retry went to %s", got)
			}
			return q, 1
		}, ""},
		{"not on a down host", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b")
			addJobs(t, q, 1)
			q.Assign()
			q.SetHostState("b", Down)
			return q, 1
		}, ""},
		{"not for a pinned job", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b")
			if err := q.Add(&Job{ID: 1, Pin: "a"}); err != nil {
				t.Fatal(err)
			}
			q.Assign()
			return q, 1
		}, ""},
		{"the host with most free slots", func(t *testing.T) (*Queue, int) {
			q := newQ(t, Options{}, "a", "b*2", "c*3")
			addJobs(t, q, 3)
			q.Assign() // 1@a 2@b 3@c
			return q, 1
		}, "1@c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, job := tt.setup(t)
			e, ok := q.Backup(job)
			got := ""
			if ok {
				got = show([]Exec{e})
			}
			if got != tt.want {
				t.Errorf("Backup(%d) = %q, want %q", job, got, tt.want)
			}
		})
	}
}

// TestBackupFirstSuccessWins: whichever execution succeeds first is
// recorded; the other is discarded, and the job is counted once.
func TestBackupFirstSuccessWins(t *testing.T) {
	for _, backupWins := range []bool{false, true} {
		q := newQ(t, Options{}, "a", "b")
		addJobs(t, q, 1)
		q.Close()
		orig := q.Assign()[0]
		backup, ok := q.Backup(1)
		if !ok || backup.Attempt != 2 || backup.Host != "b" {
			t.Fatalf("backup %+v ok=%v", backup, ok)
		}
		first, second := orig, backup
		if backupWins {
			first, second = backup, orig
		}
		if d := q.Finish(first, Succeeded); d != Recorded {
			t.Errorf("winner: %v", d)
		}
		if !q.Done() {
			t.Error("queue not done after the winner")
		}
		if d := q.Finish(second, Canceled); d != Discarded {
			t.Errorf("loser: %v, want discarded", d)
		}
		if q.Succeeded() != 1 || q.Running() != 0 {
			t.Errorf("succeeded %d running %d", q.Succeeded(), q.Running())
		}
	}
}

// TestBackupSurvivesTheOriginalsLoss: when the original's host is lost,
// the running backup carries the job; it is not requeued a third time.
func TestBackupSurvivesTheOriginalsLoss(t *testing.T) {
	q := newQ(t, Options{}, "a", "b", "c")
	addJobs(t, q, 1)
	q.Close()
	orig := q.Assign()[0]
	backup, _ := q.Backup(1)
	if d := q.Finish(orig, Lost); d != Requeued {
		t.Errorf("lost original: %v", d)
	}
	if got := q.Assign(); len(got) != 0 || q.Pending() != 0 {
		t.Errorf("job queued again while its backup runs: %s", show(got))
	}
	if d := q.Finish(backup, Succeeded); d != Recorded || !q.Done() {
		t.Errorf("backup: %v, done %v", d, q.Done())
	}
}

// A job taken back from a host's window before it started is requeued at
// the front, costs no retry (Retries is 0), is not an attempt, and goes
// to another host.
func TestReturnedJobGoesElsewhere(t *testing.T) {
	q := New(Options{Retries: 0})
	q.AddHost("a", 2)
	q.AddHost("b", 1)
	for i := 1; i <= 3; i++ {
		q.Add(&Job{ID: i})
	}
	q.Close()
	var onA []Exec
	var onB Exec
	for _, e := range q.Assign() {
		if e.Host == "a" {
			onA = append(onA, e)
		} else {
			onB = e
		}
	}
	if len(onA) != 2 || onB.Host != "b" {
		t.Fatalf("assigned %v and %v", onA, onB)
	}
	if d := q.Finish(onA[1], Returned); d != Requeued {
		t.Fatalf("Returned: %v, want requeued", d)
	}
	if q.Pending() != 1 {
		t.Fatalf("%d pending, want 1", q.Pending())
	}
	// a has a free slot again, but the job avoids it while b can take it.
	if es := q.Assign(); len(es) != 0 {
		t.Fatalf("assigned %+v: the returned job should wait for b", es)
	}
	if d := q.Finish(onB, Succeeded); d != Recorded {
		t.Fatal(d)
	}
	es := q.Assign()
	// It is still its first attempt: the one taken back never ran
	// (a job that reads DSUB_ATTEMPT must see 1).
	if len(es) != 1 || es[0].Host != "b" || es[0].Job.ID != onA[1].Job.ID || es[0].Attempt != 1 {
		t.Fatalf("then assigned %+v, want job %d on b, attempt 1", es, onA[1].Job.ID)
	}
	if d := q.Finish(es[0], Succeeded); d != Recorded {
		t.Fatal(d)
	}
}

// Cancel gives up a waiting job at once, and a running one when its
// execution ends, however it ends (a retry left or not) unless it
// succeeded first; a job done or unknown cannot be cancelled.
func TestCancel(t *testing.T) {
	q := newQ(t, Options{Retries: 3}, "a")
	addJobs(t, q, 3)
	q.Close()
	e := q.Assign() // job 1 runs; 2 and 3 wait
	if running, ok := q.Cancel(3); running || !ok || q.Pending() != 1 || q.GaveUp() != 1 {
		t.Fatalf("cancel waiting job 3: running %v ok %v, pending %d, gave up %d", running, ok, q.Pending(), q.GaveUp())
	}
	if running, ok := q.Cancel(1); !running || !ok {
		t.Fatalf("cancel running job 1: running %v ok %v", running, ok)
	}
	if d := q.Finish(e[0], Canceled); d != GaveUp {
		t.Errorf("job 1 killed by the cancel: %v, want GaveUp (not dropped, not retried)", d)
	}
	if _, ok := q.Cancel(1); ok {
		t.Error("job 1 cancelled twice")
	}
	e = q.Assign()
	if show(e) != "2@a" {
		t.Fatalf("assign after cancels = %s, want job 2 only", show(e))
	}
	q.Cancel(2)
	if d := q.Finish(e[0], Succeeded); d != Recorded {
		t.Errorf("job 2 succeeded before its cancel landed: %v, want Recorded", d)
	}
	if !q.Done() || q.GaveUp() != 2 || q.Succeeded() != 1 {
		t.Errorf("done %v, gave up %d, succeeded %d; want true 2 1", q.Done(), q.GaveUp(), q.Succeeded())
	}
	if _, ok := q.Cancel(99); ok {
		t.Error("unknown job 99 cancelled")
	}
}

// UpSlots, kept as states and slots change, is always the sum it names,
// whatever happens to the hosts.
func TestUpSlotsIsTheSum(t *testing.T) {
	q := New(Options{QuarantineAfter: 2, Retries: 100})
	rng := rand.New(rand.NewPCG(7, 7))
	names := []string{"a", "b", "c", "d"}
	for i, n := range names {
		q.AddHost(n, i+1)
	}
	for i := 1; i <= 50; i++ {
		q.Add(&Job{ID: i})
	}
	sum := func() int {
		n := 0
		for _, h := range q.hosts {
			if h.state == Up {
				n += h.slots
			}
		}
		return n
	}
	for step := 0; step < 2000; step++ {
		n := names[rng.IntN(len(names))]
		switch rng.IntN(4) {
		case 0:
			q.SetHostState(n, HostState(rng.IntN(3)))
		case 1:
			q.SetSlots(n, rng.IntN(5))
		default:
			for _, e := range q.Assign() {
				q.Finish(e, []Outcome{Succeeded, Failed, Lost}[rng.IntN(3)])
			}
		}
		if got, want := q.UpSlots(), sum(); got != want {
			t.Fatalf("step %d: UpSlots %d, the sum is %d", step, got, want)
		}
	}
}

// assignScan is Assign as a scan of every host: what Assign, which looks
// only at the hosts with a free slot, must agree with.
func (q *Queue) assignScan() []Exec {
	var out []Exec
	n := len(q.hosts)
	for {
		progress := false
		for i := 0; i < n; i++ {
			h := q.hosts[(q.rr+i)%n]
			if h.state != Up || h.running >= h.slots {
				continue
			}
			js := q.take(h)
			if js == nil {
				continue
			}
			out = append(out, q.start(js, h))
			progress = true
		}
		q.rr = (q.rr + 1) % max(n, 1)
		if !progress {
			return out
		}
	}
}

// Two queues given the same random events, one assigning by its free
// hosts and one by a scan of every host, hand out the same executions in
// the same order, and agree on Running and UpSlots throughout.
func TestAssignByFreeHostsMatchesScan(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 3))
		a, b := New(Options{Retries: 3, QuarantineAfter: 4}), New(Options{Retries: 3, QuarantineAfter: 4})
		hosts := 1 + rng.IntN(12)
		for i := 0; i < hosts; i++ {
			s := 1 + rng.IntN(4)
			a.AddHost(fmt.Sprint("h", i), s)
			b.AddHost(fmt.Sprint("h", i), s)
		}
		var runA, runB []Exec
		next := 1
		for step := 0; step < 400; step++ {
			switch rng.IntN(5) {
			case 0:
				for k := rng.IntN(6); k > 0; k-- {
					pin := ""
					if rng.IntN(8) == 0 {
						pin = fmt.Sprint("h", rng.IntN(hosts))
					}
					a.Add(&Job{ID: next, Pin: pin})
					b.Add(&Job{ID: next, Pin: pin})
					next++
				}
			case 1:
				n, s := fmt.Sprint("h", rng.IntN(hosts)), HostState(rng.IntN(2))
				a.SetHostState(n, s)
				b.SetHostState(n, s)
			case 2:
				if len(runA) > 0 {
					i := rng.IntN(len(runA))
					o := []Outcome{Succeeded, Failed, Lost}[rng.IntN(3)]
					if da, db := a.Finish(runA[i], o), b.Finish(runB[i], o); da != db {
						t.Fatalf("seed %d step %d: Finish %v vs %v", seed, step, da, db)
					}
					runA, runB = slices.Delete(runA, i, i+1), slices.Delete(runB, i, i+1)
				}
			default:
				ea, eb := a.Assign(), b.assignScan()
				if execsString(ea) != execsString(eb) {
					t.Fatalf("seed %d step %d: Assign\n %s\nthe scan\n %s", seed, step, execsString(ea), execsString(eb))
				}
				runA, runB = append(runA, ea...), append(runB, eb...)
			}
			if a.Running() != b.Running() || a.UpSlots() != b.UpSlots() {
				t.Fatalf("seed %d step %d: running %d/%d, up slots %d/%d", seed, step, a.Running(), b.Running(), a.UpSlots(), b.UpSlots())
			}
		}
	}
}

func execsString(es []Exec) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%d:job%d@%s#%d ", e.Seq, e.Job.ID, e.Host, e.Attempt)
	}
	return b.String()
}
