package monitor

import (
	"encoding/json"
	"io"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/distributor"
)

// The monitor's cost to the master per job: the three events of one
// execution (Started, Ended; Sent at an agent host).
func BenchmarkModelEvents(b *testing.B) {
	m := NewModel("bench")
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		e := distributor.Event{Seq: i, Job: i, Host: "h01", Attempt: 1, Time: now, Command: "echo 1"}
		e.Kind = distributor.Sent
		m.Event(e)
		e.Kind = distributor.Started
		m.Event(e)
		e.Kind, e.Outcome, e.Duration = distributor.Ended, "recorded", time.Millisecond
		m.Event(e)
	}
}

// One page's poll, answered over HTTP, in a run of 1,000 jobs at 100
// jobs/s: 100 new bars since the last poll, 16 running, 4 hosts.
func BenchmarkPoll(b *testing.B) {
	r := newBenchRun()
	m := r.m
	srv := &Server{m: m}
	st := m.State(-1, -1)
	epoch, after := st.Timeline.Epoch, lastID(st.Timeline.Ended)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r.add(100)
		b.StartTimer()
		rec := httptest.NewRecorder()
		srv.state(rec, httptest.NewRequest("GET", "/api/state?epoch="+itoa(epoch)+"&after="+itoa(after), nil))
		var got State
		b.StopTimer()
		if err := json.NewDecoder(io.TeeReader(rec.Body, io.Discard)).Decode(&got); err != nil || !got.Timeline.Full && len(got.Timeline.Ended) < 100 {
			b.Fatalf("%v: %d bars", err, len(got.Timeline.Ended))
		}
		epoch, after = got.Timeline.Epoch, lastID(got.Timeline.Ended)
		b.StartTimer()
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// benchRun feeds a Model the run of the benchmarks: 1,000 tiny jobs on 4
// hosts to start with; add adds n more (100 is a second at 100 jobs/s).
type benchRun struct {
	m   *Model
	now time.Time
	seq int
}

func newBenchRun() *benchRun {
	r := &benchRun{m: NewModel("bench"), now: time.Now()}
	r.add(1000)
	return r
}

func (r *benchRun) add(n int) {
	for i := 0; i < n; i++ {
		e := distributor.Event{Kind: distributor.Started, Seq: r.seq, Job: r.seq, Host: []string{"h1", "h2", "h3", "h4"}[r.seq%4], Time: r.now, Command: "echo 1", Outcome: "recorded"}
		r.m.Event(e)
		e.Kind = distributor.Ended
		r.m.Event(e)
		r.seq++
	}
}

// One message of a page's stream in the same run: the state since the
// page's last message (100 new bars), encoded into the stream's buffer.
// This is the monitor's cost per second while a page watches.
func BenchmarkStreamMessage(b *testing.B) {
	r := newBenchRun()
	m := r.m
	for i := 1; i <= 16; i++ { // running all along
		m.Event(distributor.Event{Kind: distributor.Started, Seq: -i, Job: -i, Host: "h1", Time: r.now, Command: "sleep 1"})
	}
	have := parseCursor("")
	st := m.state(&have)
	buf := appendState(nil, &st)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		r.add(100)
		b.StartTimer()
		st := m.state(&have)
		buf = appendState(buf[:0], &st)
		b.StopTimer()
		if !st.Timeline.Full && len(st.Timeline.Ended) != 100 || len(st.Timeline.Running) != 16 {
			b.Fatalf("%d bars (full %v), %d running: want the 100 new ones (unless merged) and 16", len(st.Timeline.Ended), st.Timeline.Full, len(st.Timeline.Running))
		}
		b.StartTimer()
	}
}
