package distributor

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/queue"
)

// TestSpeculatorPick covers which stragglers get a backup: with no job
// waiting and a slot idle, jobs running once for longer than the floor and
// twice the median, oldest first, as many as slots allow.
func TestSpeculatorPick(t *testing.T) {
	now := time.Unix(1000, 0)
	tests := []struct {
		name    string
		after   time.Duration
		done    []time.Duration // run times recorded so far
		ages    []time.Duration // jobs 1.. running on host a, this old
		pending int             // extra jobs waiting
		bSlots  int             // idle slots on host b
		want    string          // backed-up jobs in launch order
	}{
		{"older than twice the median", 0, secs(1, 1, 2), secs(1.5, 2.5, 10), 0, 4, "3 2"},
		{"floor above the median rule", 5 * time.Second, secs(1, 1, 2), secs(1.5, 2.5, 10), 0, 4, "3"},
		{"floor alone with nothing done", 5 * time.Second, nil, secs(6, 1), 0, 4, "1"},
		{"nothing done and no floor", 0, nil, secs(60), 0, 4, ""},
		{"not while jobs wait", 0, secs(1), secs(60), 1, 4, ""},
		{"no idle slot", 0, secs(1), secs(60), 0, 0, ""},
		{"oldest first, as slots allow", 0, secs(1), secs(3, 9, 5, 7), 0, 2, "2 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := queue.New(queue.Options{})
			q.AddHost("a", len(tt.ages))
			sp := &speculator{on: true, after: tt.after}
			for _, d := range tt.done {
				sp.done(d, false)
			}
			for i := range tt.ages {
				q.Add(&queue.Job{ID: i + 1})
			}
			running := map[int]*execState{}
			for _, e := range q.Assign() {
				if e.Host != "a" {
					t.Fatalf("job %d went to %s", e.Job.ID, e.Host)
				}
				running[e.Seq] = &execState{host: e.Host, job: e.Job.ID, start: now.Add(-tt.ages[e.Job.ID-1])}
			}
			if tt.bSlots > 0 {
				q.AddHost("b", tt.bSlots)
			}
			for i := 0; i < tt.pending; i++ {
				q.Add(&queue.Job{ID: 100 + i, Pin: "a"})
			}
			var got []string
			for _, b := range sp.pick(q, running, now) {
				if b.e.Host != "b" || b.host != "a" || b.e.Attempt != 2 {
					t.Errorf("backup %+v", b)
				}
				got = append(got, strconv.Itoa(b.e.Job.ID))
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("picked %q, want %q", g, tt.want)
			}
			if sp.started != len(got) {
				t.Errorf("started %d, picked %d", sp.started, len(got))
			}
		})
	}
}

func secs(s ...float64) []time.Duration {
	var out []time.Duration
	for _, x := range s {
		out = append(out, time.Duration(x*float64(time.Second)))
	}
	return out
}
