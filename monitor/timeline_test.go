package monitor

import (
	"fmt"
	"testing"
)

// However many executions end, the timeline holds at most maxEnded bars,
// they still count every execution, and failures keep bars of their own
// while there are few of them.
func TestTimelineDownsamples(t *testing.T) {
	for _, tc := range []struct {
		n, lanes, failEvery int
		wantMerged          bool
	}{
		{n: 100, lanes: 4},
		{n: maxEnded, lanes: 8},
		{n: maxEnded + 1, lanes: 8, wantMerged: true},
		{n: 100_000, lanes: 32, failEvery: 1000, wantMerged: true},
		{n: 100_000, lanes: 32, failEvery: 50, wantMerged: true}, // 2,000 failures: they merge too
	} {
		t.Run(fmt.Sprintf("%d/%d/%d", tc.n, tc.lanes, tc.failEvery), func(t *testing.T) {
			tl := newTimeline()
			fails := 0
			for i := 0; i < tc.n; i++ {
				host := fmt.Sprintf("h%d", i%tc.lanes)
				start := int64(i/tc.lanes) * 10
				tl.start(i, host, i+1, start, "job")
				kind := "ok"
				if tc.failEvery > 0 && i%tc.failEvery == 0 {
					kind, fails = "fail", fails+1
				}
				tl.end(i, Segment{Start: start, End: start + 9, Job: i + 1, Kind: kind, Host: host, Tail: "boom"})
				if len(tl.ended) > maxEnded {
					t.Fatalf("after %d: %d bars, over %d", i+1, len(tl.ended), maxEnded)
				}
			}
			n, failBars, failN := 0, 0, 0
			for _, s := range tl.ended {
				n += s.N
				failN += s.F
				if s.Kind == "fail" && s.N == 1 {
					failBars++
				}
			}
			if n != tc.n || failN != fails {
				t.Errorf("bars count %d executions (%d failed), want %d (%d)", n, failN, tc.n, fails)
			}
			if merged := tl.merged > 0; merged != tc.wantMerged {
				t.Errorf("merged %d executions; want merging: %v", tl.merged, tc.wantMerged)
			}
			if fails <= keepFailed && failBars != fails {
				t.Errorf("%d failures drawn as %d bars: each should keep its own", fails, failBars)
			}
			if len(tl.lanes) != tc.lanes {
				t.Errorf("%d lanes, want %d (one per host: one job at a time each)", len(tl.lanes), tc.lanes)
			}
		})
	}
}

// A page that has the bars up to some ID gets only the later ones, and
// all of them again after the bars were merged.
func TestTimelineView(t *testing.T) {
	tl := newTimeline()
	tl.start(1, "a", 1, 0, "sleep 1")
	tl.start(2, "a", 2, 0, "sleep 2")
	v := tl.view(-1, -1, 0, 50)
	if len(v.Running) != 2 || v.Running[0].Lane == v.Running[1].Lane || v.Running[0].End != 50 {
		t.Fatalf("running %+v: want two bars on two lanes, drawn up to now", v.Running)
	}
	tl.end(1, Segment{Start: 0, End: 60, Job: 1, Kind: "ok", Host: "a"})
	v = tl.view(-1, -1, 0, 70)
	if !v.Full || len(v.Ended) != 1 || len(v.Running) != 1 || v.Ended[0].Cmd != "sleep 1" {
		t.Fatalf("view %+v: want job 1 ended (with its command) and job 2 running", v)
	}
	last := v.Ended[0].ID
	tl.start(3, "a", 3, 60, "sleep 3") // takes the lane job 1 freed
	if tl.run[3].Lane != v.Ended[0].Lane {
		t.Errorf("job 3 on lane %d, want the freed lane %d", tl.run[3].Lane, v.Ended[0].Lane)
	}
	tl.end(3, Segment{Start: 60, End: 80, Job: 3, Kind: "fail", Host: "a"})
	v = tl.view(v.Epoch, last, 0, 90)
	if v.Full || len(v.Ended) != 1 || v.Ended[0].Job != 3 {
		t.Fatalf("delta %+v: want only job 3", v.Ended)
	}
	v = tl.view(v.Epoch+1, last, 0, 90) // an old epoch: everything
	if !v.Full || len(v.Ended) != 2 {
		t.Fatalf("stale epoch: %d bars, full %v; want both", len(v.Ended), v.Full)
	}
	// Lanes: a page that has the first two is sent only a new third.
	tl.reserve("b", 1)
	for _, tc := range []struct{ have, from, n int }{{0, 0, 3}, {2, 2, 1}, {3, 3, 0}, {4, 0, 3}, {-1, 0, 3}} {
		v = tl.view(v.Epoch, last, tc.have, 90)
		if v.LanesFrom != tc.from || len(v.Lanes) != tc.n {
			t.Errorf("page with %d lanes: sent %d from %d, want %d from %d", tc.have, len(v.Lanes), v.LanesFrom, tc.n, tc.from)
		}
	}
	if v.Lanes[2] != (Lane{Host: "b", Slot: 1}) {
		t.Errorf("lane 3 is %+v, want b's slot 1", v.Lanes[2])
	}
}

func TestKindOf(t *testing.T) {
	for outcome, want := range map[string]string{
		"recorded": "ok", "gave-up": "fail", "gave-up: no result line": "fail", "requeued": "fail",
		"lost": "lost", "superseded": "killed", "discarded": "killed", "dropped": "killed", "returned": "killed",
	} {
		if got := kindOf(outcome); got != want {
			t.Errorf("kindOf(%q) = %q, want %q", outcome, got, want)
		}
	}
}

// A host with 2 slots has 2 lanes, even when an agent's start of the
// next job is told before the end of the one whose slot it took (a third
// lane, busy, was once drawn); without known slots, lanes grow as needed.
func TestTimelineLanesAreSlots(t *testing.T) {
	tl := newTimeline()
	tl.reserve("h1", 2)
	tl.start(1, "h1", 1, 0, "a")
	tl.start(2, "h1", 2, 0, "b")
	tl.start(3, "h1", 3, 100, "c") // job 1 ended at 99: told later
	tl.end(1, Segment{Start: 0, End: 99, Job: 1, Kind: "ok", Host: "h1"})
	tl.start(4, "h1", 4, 120, "d") // job 3's end not yet told either
	tl.end(2, Segment{Start: 0, End: 110, Job: 2, Kind: "ok", Host: "h1"})
	tl.end(3, Segment{Start: 100, End: 130, Job: 3, Kind: "ok", Host: "h1"})
	tl.end(4, Segment{Start: 120, End: 200, Job: 4, Kind: "ok", Host: "h1"})
	if len(tl.lanes) != 2 {
		t.Errorf("%d lanes for a host with 2 slots: %v", len(tl.lanes), tl.lanes)
	}
	for l, b := range tl.busy {
		if b != 0 {
			t.Errorf("lane %d still busy (%d) with nothing running", l, b)
		}
	}
	tl.start(5, "h2", 5, 0, "e") // no slots known: lanes as needed
	tl.start(6, "h2", 6, 0, "f")
	if n := len(tl.byHost["h2"]); n != 2 {
		t.Errorf("h2, slots unknown: %d lanes for 2 running, want 2", n)
	}
}
