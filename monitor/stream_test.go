package monitor

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// message is one server-sent event: its id and its State.
type message struct {
	id string
	st State
}

// openStream opens the page's event stream, from cursor id if not "", and
// sends its messages to the returned channel until the stream ends.
func openStream(t *testing.T, srv *Server, id string) <-chan message {
	t.Helper()
	req, _ := http.NewRequest("GET", at(srv, "api/events"), nil)
	if id != "" {
		req.Header.Set("Last-Event-ID", id)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("api/events: %d %s", resp.StatusCode, ct)
	}
	ch := make(chan message)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<24)
		var m message
		var data string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				m.id = line[4:]
			case strings.HasPrefix(line, "data: "):
				data = line[6:]
			case line == "" && data != "":
				if err := json.Unmarshal([]byte(data), &m.st); err != nil {
					t.Errorf("message %s: %v: %s", m.id, err, data)
					return
				}
				ch <- m
				m, data = message{}, ""
			}
		}
	}()
	return ch
}

// The stream sends each bar once, lanes once, a failure in the message
// after it happened and not again, and ends with the run's end; a
// reconnecting page is sent only what came after its last message.
func TestStream(t *testing.T) {
	f := startFakeRun(t, 8)
	srv, err := Serve(f.m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ch := openStream(t, srv, "")
	bars := map[int]Segment{} // every ended bar sent, by ID
	take := func(m message) {
		for _, s := range m.st.Timeline.Ended {
			if _, dup := bars[s.ID]; dup {
				t.Errorf("message %s: bar %d sent again", m.id, s.ID)
			}
			bars[s.ID] = s
		}
	}
	first := <-ch
	take(first)
	if !first.st.Timeline.Full || first.st.Timeline.LanesFrom != 0 {
		t.Errorf("first message: full %v, lanes from %d: want everything", first.st.Timeline.Full, first.st.Timeline.LanesFrom)
	}
	// Two messages in the blocked state (4 running, job 3 failed): the
	// failure is sent in the first of them or before, and not again.
	deadline := time.After(time.Minute)
	recv := func() (message, bool) {
		select {
		case m, ok := <-ch:
			return m, ok
		case <-deadline:
			t.Fatal("no end of the stream after a minute")
		}
		return message{}, false
	}
	failureSent, lanes := len(first.st.Failures), len(first.st.Timeline.Lanes)
	var mid message
	for blocked := 0; blocked < 2; {
		m, ok := recv()
		if !ok {
			t.Fatal("the stream ended before the run reached 4 running jobs and 1 failure")
		}
		take(m)
		if m.st.Timeline.LanesFrom != lanes {
			t.Errorf("message %s: lanes from %d, but the page has %d", m.id, m.st.Timeline.LanesFrom, lanes)
		}
		lanes += len(m.st.Timeline.Lanes)
		failureSent += len(m.st.Failures)
		if m.st.Failed == 1 && len(m.st.Timeline.Running) == 4 {
			if blocked++; blocked == 1 {
				mid = m
			}
		}
	}
	if lanes != 4 {
		t.Errorf("%d lanes sent, want 4 (2 hosts of 2 slots), each once", lanes)
	}
	f.releaseAll(t)
	f.wait(t)
	var last message
	for m, ok := recv(); ok; m, ok = recv() { // ends after the run's end
		take(m)
		failureSent += len(m.st.Failures)
		last = m
	}
	if !last.st.Done || last.st.Succeeded != 7 || last.st.Failed != 1 {
		t.Fatalf("last message: done %v, %d succeeded, %d failed", last.st.Done, last.st.Succeeded, last.st.Failed)
	}
	if failureSent != 1 {
		t.Errorf("the failure was sent %d times, want once", failureSent)
	}
	n := 0
	for _, s := range bars {
		n += s.N
	}
	if n != 8 {
		t.Errorf("the stream sent bars for %d executions, want 8", n)
	}
	// A page that reconnects with mid's id gets the bars after it only,
	// and the failure again (its list is whole in each message).
	again := <-openStream(t, srv, mid.id)
	after := parseCursor(mid.id).after
	want := 0
	for id := range bars {
		if id > after {
			want++
		}
	}
	if again.st.Timeline.Full || len(again.st.Timeline.Ended) != want || len(again.st.Failures) != 1 || !again.st.Done {
		t.Errorf("reconnected at %s: full %v, %d bars (want %d), %d failures (want 1), done %v",
			mid.id, again.st.Timeline.Full, len(again.st.Timeline.Ended), want, len(again.st.Failures), again.st.Done)
	}
}

// The stream's cursor is read from an event id; anything malformed is a
// page that holds nothing.
func TestParseCursor(t *testing.T) {
	for id, want := range map[string][3]int{
		"2.17.8": {2, 17, 8}, "0.0.0": {0, 0, 0}, "-1.-1.0": {-1, -1, 0},
		"": {-1, -1, 0}, "1.2": {-1, -1, 0}, "1.2.3.4": {-1, -1, 0}, "a.b.c": {-1, -1, 0}, "1.-5.2": {-1, -1, 0},
	} {
		c := parseCursor(id)
		if got := [3]int{c.epoch, c.after, c.lanes}; got != want || c.fails != -1 || c.warns != -1 {
			t.Errorf("parseCursor(%q) = %v (fails %d, warns %d), want %v and -1s", id, got, c.fails, c.warns, want)
		}
	}
}

// A page that stops reading does not keep the stream's goroutine: it
// ends when the connection does.
func TestStreamEndsWithPage(t *testing.T) {
	m := NewModel("x")
	srv, err := Serve(m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	resp, err := http.Get(at(srv, "api/events"))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	done := make(chan struct{})
	go func() { srv.srv.Shutdown(t.Context()); close(done) }() // waits for handlers
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream's handler still runs 30 s after its page went away")
	}
	_, _ = io.Copy(io.Discard, br)
}

// When the run ends, dsub lingers until a watching page has been given
// the final state, and no longer: a stream gives it at once.
func TestLingerUntilEndGiven(t *testing.T) {
	f := startFakeRun(t, 4)
	srv, err := Serve(f.m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ch := openStream(t, srv, "")
	<-ch // watching
	f.releaseAll(t)
	f.wait(t)
	var last message
	for m := range ch {
		last = m
	}
	if !last.st.Done {
		t.Fatal("the stream ended without the final state")
	}
	start := time.Now()
	srv.Linger(t.Context(), 20*time.Second)
	if time.Since(start) >= 20*time.Second {
		t.Error("Linger waited its whole 20 s although the page had been given the end")
	}
}

// The final state counts as given only once it has been written to a
// page, not when it is computed: Linger let dsub exit (closing the
// server) while the last message was still being written, and the page
// stayed on the state of a second before (seen in TestMonitorLive).
func TestEndGivenOnlyWhenDelivered(t *testing.T) {
	f := startFakeRun(t, 4)
	f.releaseAll(t)
	f.wait(t)
	st := f.m.State(-1, -1)
	if !st.Done {
		t.Fatal("the run's state is not done")
	}
	if f.m.endGiven() {
		t.Error("the final state counts as given once computed, before any page has it")
	}
	srv, err := Serve(f.m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var last message
	for m := range openStream(t, srv, "") {
		last = m
	}
	if !last.st.Done || !f.m.endGiven() {
		t.Errorf("after a stream sent the final state (done %v): given %v", last.st.Done, f.m.endGiven())
	}
}
