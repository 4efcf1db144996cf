package monitor

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// streamEvery is how often a stream sends the state.
const streamEvery = time.Second

// streamWriteTimeout bounds each of a stream's writes: a page that stops
// reading loses its stream, not a goroutine forever.
const streamWriteTimeout = 10 * time.Second

// events streams the state to a page as server-sent events: one message
// a second, and one at once when the run ends, after which the stream
// ends. A page makes one request for the whole run instead of one a
// second, and each message holds only what the page lacks (the bars and
// lanes after its last, failures and warnings when they changed). A
// message's id is the page's timeline cursor, so a reconnecting
// EventSource (Last-Event-ID) resumes without being sent every bar again.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	have := parseCursor(r.Header.Get("Last-Event-ID"))
	tick := time.NewTicker(streamEvery)
	defer tick.Stop()
	ended := s.m.ended
	buf := []byte("retry: 1000\n\n") // reconnect after a second
	for {
		st := s.m.state(&have)
		buf = fmt.Appendf(buf, "id: %d.%d.%d\ndata: ", have.epoch, have.after, have.lanes)
		buf = appendState(buf, &st) // one line: it escapes every newline
		buf = append(buf, '\n', '\n')
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(buf); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if st.Done {
			s.m.delivered(&st)
			return
		}
		buf = buf[:0]
		select {
		case <-tick.C:
		case <-ended:
			ended = nil // the next message is the last
		case <-r.Context().Done():
			return
		}
	}
}

// parseCursor reads a stream's cursor from an event id, "epoch.after.lanes";
// anything else is a page that holds nothing.
func parseCursor(id string) since {
	c := since{epoch: -1, after: -1, fails: -1, warns: -1}
	f := strings.Split(id, ".")
	if len(f) != 3 {
		return c
	}
	var n [3]int
	for i, s := range f {
		v, err := strconv.Atoi(s)
		if err != nil || v < -1 {
			return c
		}
		n[i] = v
	}
	c.epoch, c.after, c.lanes = n[0], n[1], n[2]
	return c
}
