package monitor

import (
	"slices"
	"strings"
	"time"
)

// Segment is one bar of the timeline: an execution on a host's lane, or,
// once the timeline has been downsampled, N executions of a lane merged
// into one bar.
type Segment struct {
	ID    int    `json:"id"`   // increasing; a page asks for those after the last it has
	Lane  int    `json:"lane"` // index in Timeline.Lanes
	Start int64  `json:"s"`    // ms since the run started
	End   int64  `json:"e"`    // ms; for a running one, when the state was taken
	Job   int    `json:"job"`  // 0 for merged bars
	N     int    `json:"n"`    // executions in the bar
	F     int    `json:"f"`    // failed ones among them
	Kind  string `json:"k"`    // ok, fail, lost, killed, run
	Exit  int    `json:"x,omitempty"`
	Cmd   string `json:"cmd,omitempty"`
	Tail  string `json:"tail,omitempty"` // stderr tail, for failures
	Log   string `json:"log,omitempty"`  // the stderr log, for failures
	Host  string `json:"-"`              // given to end, for its lane
}

// Lane is one slot of one host: the row executions are drawn on.
type Lane struct {
	Host string `json:"host"`
	Slot int    `json:"slot"` // 1-based
}

// Timeline is what a page draws: the lanes, and the bars of ended
// executions (downsampled) and running ones.
type Timeline struct {
	// Epoch changes when bars were merged: a page that has an older one
	// starts over from the full list.
	Epoch int   `json:"epoch"`
	ResMS int64 `json:"res_ms"` // bars closer than this in a lane may be merged
	// Lanes are the lanes from LanesFrom on: a page that has the others
	// is sent only the new ones (lanes only grow).
	LanesFrom int       `json:"lanes_from,omitempty"`
	Lanes     []Lane    `json:"lanes"`
	Ended     []Segment `json:"ended"` // all, or those after the page's last
	Running   []Segment `json:"running"`
	// Prep are the hosts' preparing spans, from the run's start to when
	// each was ready, on its first lane: at most one per host.
	Prep   []Segment `json:"prep"`
	Full   bool      `json:"full"` // Ended is the whole list
	Merged int       `json:"merged"`
}

// Limits of what a timeline holds, so that a page never holds every job
// of a long run: beyond maxEnded bars, bars are merged, lane by lane, at a
// coarser resolution each time.
const (
	maxEnded   = 4000
	maxCmd     = 200  // bytes of a command kept per bar
	maxTail    = 1024 // bytes of a stderr tail kept per failure
	keepFailed = 500  // failures kept as their own bars before they merge
)

// timeline keeps a run's bars: pure, with no clock and no goroutines.
// Invariants: len(ended) <= maxEnded after each add; the executions
// counted by ended bars (their N) are every execution added; lanes only
// grow; a host whose slots are known (reserve) never has more lanes than
// slots. A start can be told before the end of the execution whose slot
// it took (an agent reports them from different goroutines): it then
// shares that lane until the end comes, rather than drawing a lane the
// host does not have.
type timeline struct {
	lanes  []Lane
	byHost map[string][]int // host -> its lane indexes, slot order
	slots  map[string]int   // host -> its slots, when known
	busy   []int            // lane -> running executions holding it (1, 2 for a moment)
	ended  []Segment
	run    map[int]*Segment // running, by execution
	prep   map[string]int64 // host -> when it was ready (ms)
	nextID int
	epoch  int
	res    int64
	merged int // executions drawn in merged bars
}

func newTimeline() *timeline {
	return &timeline{byHost: map[string][]int{}, slots: map[string]int{}, run: map[int]*Segment{}, prep: map[string]int64{}}
}

// lane gives host's lowest free lane. If all are busy it makes one,
// unless the host has as many as its slots: then the start came before
// an end, and it shares the least busy lane.
func (t *timeline) lane(host string) int {
	for _, l := range t.byHost[host] {
		if t.busy[l] == 0 {
			t.busy[l]++
			return l
		}
	}
	if ls := t.byHost[host]; len(ls) > 0 && len(ls) >= t.slots[host] && t.slots[host] > 0 {
		best := ls[0]
		for _, l := range ls[1:] {
			if t.busy[l] < t.busy[best] {
				best = l
			}
		}
		t.busy[best]++
		return best
	}
	l := len(t.lanes)
	t.lanes = append(t.lanes, Lane{Host: host, Slot: len(t.byHost[host]) + 1})
	t.byHost[host] = append(t.byHost[host], l)
	t.busy = append(t.busy, 1)
	return l
}

// reserve makes host have at least slots lanes, so that idle slots show,
// and no more than that are drawn.
func (t *timeline) reserve(host string, slots int) {
	t.slots[host] = max(t.slots[host], slots)
	for len(t.byHost[host]) < slots {
		l := len(t.lanes)
		t.lanes = append(t.lanes, Lane{Host: host, Slot: len(t.byHost[host]) + 1})
		t.byHost[host] = append(t.byHost[host], l)
		t.busy = append(t.busy, 0)
	}
}

// prepared notes that host was ready at ready (ms): its preparing span.
func (t *timeline) prepared(host string, ready int64) {
	if _, ok := t.prep[host]; !ok {
		t.prep[host] = ready
		t.laneOf(host, 0)
	}
}

// start draws execution seq running on host from start (ms).
func (t *timeline) start(seq int, host string, job int, start int64, cmd string) {
	if _, ok := t.run[seq]; ok {
		return
	}
	t.run[seq] = &Segment{Lane: t.lane(host), Start: start, Job: job, N: 1, Kind: "run", Cmd: clip(cmd, maxCmd)}
}

// end ends execution seq; one never started (it waited in a window) is
// drawn from its start to its end all the same, on a lane of its host.
func (t *timeline) end(seq int, s Segment) Segment {
	if r, ok := t.run[seq]; ok {
		delete(t.run, seq)
		t.busy[r.Lane]--
		s.Lane = r.Lane
		if s.Cmd == "" {
			s.Cmd = r.Cmd
		}
	} else {
		s.Lane = t.lane(s.Host)
		t.busy[s.Lane]--
	}
	return t.add(s)
}

// laneOf is host's lane i (0-based), made if need be.
func (t *timeline) laneOf(host string, i int) int {
	t.reserve(host, i+1)
	return t.byHost[host][i]
}

// add adds an ended bar, merging bars if there are too many; it returns
// the bar as added.
func (t *timeline) add(s Segment) Segment {
	s.Cmd, s.Tail, s.N, s.F = clip(s.Cmd, maxCmd), clipTail(s.Tail, maxTail), 1, 0
	if s.Kind == "fail" {
		s.F = 1
	} else {
		s.Tail, s.Log = "", ""
	}
	t.nextID++
	s.ID = t.nextID
	t.ended = append(t.ended, s)
	if len(t.ended) > maxEnded {
		t.compact()
	}
	return s
}

// compact merges neighbouring bars of each lane, at twice the resolution
// each round, until at most 3/4 of maxEnded bars remain. Failures keep
// their own bars while there are few of them.
func (t *timeline) compact() {
	t.epoch++
	mixed := false
	span := int64(0)
	for _, s := range t.ended {
		span = max(span, s.End)
	}
	for len(t.ended) > maxEnded*3/4 {
		t.res = max(2*t.res, 1)
		failed := 0
		for _, s := range t.ended {
			if s.Kind == "fail" && s.N == 1 {
				failed++
			}
		}
		n := len(t.ended)
		t.ended = mergeLanes(t.ended, t.res, failed <= keepFailed, mixed)
		// Bars of other kinds between them can keep bars apart at any
		// resolution: then merge across kinds.
		mixed = mixed || len(t.ended) == n && t.res > 2*span
	}
	t.merged = 0
	for _, s := range t.ended {
		if s.N > 1 {
			t.merged += s.N
		}
	}
}

// mergeLanes merges, in each lane, bars of one kind no more than res ms
// apart, into bars no longer than res (of any kind if mixed: the bar takes the gravest, so failures stay
// visible); failures stay apart if keepFailures.
func mergeLanes(segs []Segment, res int64, keepFailures, mixed bool) []Segment {
	slices.SortStableFunc(segs, func(a, b Segment) int {
		if a.Lane != b.Lane {
			return a.Lane - b.Lane
		}
		return int(a.Start - b.Start)
	})
	out := segs[:0]
	for _, s := range segs {
		if n := len(out); n > 0 {
			p := &out[n-1]
			same := p.Kind == s.Kind || mixed
			apart := keepFailures && (s.Kind == "fail" || p.Kind == "fail")
			// A merged bar stays no longer than res: at each
			// resolution the lane keeps its shape.
			if p.Lane == s.Lane && same && s.Start-p.End <= res && max(p.End, s.End)-p.Start <= res && !apart {
				if grave[s.Kind] > grave[p.Kind] {
					p.Kind = s.Kind
				}
				p.End = max(p.End, s.End)
				p.N += s.N
				p.F += s.F
				p.ID = max(p.ID, s.ID)
				p.Job, p.Cmd, p.Tail, p.Exit, p.Log = 0, "", "", 0, ""
				continue
			}
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Segment) int { return a.ID - b.ID })
	return out
}

// view is the timeline for a page that has epoch's bars up to after
// (after < 0: none) and the first lanes lanes; now is the ms at which
// running bars end.
func (t *timeline) view(epoch, after, lanes int, now int64) Timeline {
	if lanes < 0 || lanes > len(t.lanes) {
		lanes = 0
	}
	v := Timeline{Epoch: t.epoch, ResMS: t.res, LanesFrom: lanes, Lanes: slices.Clone(t.lanes[lanes:]), Merged: t.merged, Ended: []Segment{}}
	if epoch != t.epoch || after < 0 {
		v.Full, v.Ended = true, append(v.Ended, t.ended...)
	} else {
		i, _ := slices.BinarySearchFunc(t.ended, after+1, func(s Segment, id int) int { return s.ID - id })
		v.Ended = append(v.Ended, t.ended[i:]...)
	}
	v.Running = make([]Segment, 0, len(t.run))
	for seq, r := range t.run {
		s := *r
		s.End, s.ID = now, -seq
		v.Running = append(v.Running, s)
	}
	slices.SortFunc(v.Running, func(a, b Segment) int { return a.Lane - b.Lane })
	v.Prep = make([]Segment, 0, len(t.prep))
	for host, ready := range t.prep {
		v.Prep = append(v.Prep, Segment{Lane: t.byHost[host][0], End: ready, Kind: "prep", Host: host})
	}
	slices.SortFunc(v.Prep, func(a, b Segment) int { return a.Lane - b.Lane })
	return v
}

// grave orders kinds for a bar that merges several.
var grave = map[string]int{"ok": 0, "killed": 1, "lost": 2, "fail": 3}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// clipTail keeps the last n bytes of s.
func clipTail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + strings.ToValidUTF8(s[len(s)-n:], "")
}

// ms is d in milliseconds.
func ms(d time.Duration) int64 { return d.Milliseconds() }
