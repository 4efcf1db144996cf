package monitor

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// The page's State is encoded here, by hand, not by encoding/json's
// reflection: a live page gets a State every second, mostly timeline
// bars, and reflection made up three quarters of the cost of sending
// one. The output is encoding/json's byte for byte (field order, names,
// omitempty, numbers, and its HTML-safe string escaping, which keeps a
// report's embedded state from closing its <script>): TestAppendState
// and FuzzAppendState check it against json.Marshal. A field added to
// one of these types must be added here too; the tests' fully populated
// State catches one that is not.

// jsonw appends JSON to b, a comma before each value but an object's or
// array's first.
type jsonw struct {
	b     []byte
	comma bool
}

func (w *jsonw) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
	w.comma = true
}

func (w *jsonw) open(c byte) {
	w.sep()
	w.b = append(w.b, c)
	w.comma = false
}

func (w *jsonw) close(c byte) {
	w.b = append(w.b, c)
	w.comma = true
}

// key starts the value of field k.
func (w *jsonw) key(k string) {
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.comma = false
}

func (w *jsonw) str(k, v string) { w.key(k); w.b = appendString(w.b, v); w.comma = true }
func (w *jsonw) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
	w.comma = true
}
func (w *jsonw) float(k string, v float64) { w.key(k); w.b = appendFloat(w.b, v); w.comma = true }
func (w *jsonw) bool(k string, v bool)     { w.key(k); w.b = strconv.AppendBool(w.b, v); w.comma = true }
func (w *jsonw) null(k string)             { w.key(k); w.b = append(w.b, "null"...); w.comma = true }

// Fields with omitempty.
func (w *jsonw) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}
func (w *jsonw) intOmit(k string, v int64) {
	if v != 0 {
		w.int(k, v)
	}
}

// list writes field k, the list of n items that item writes (null for a
// nil list, as encoding/json does).
func (w *jsonw) list(k string, isNil bool, n int, item func(i int)) {
	if isNil {
		w.null(k)
		return
	}
	w.key(k)
	w.open('[')
	for i := 0; i < n; i++ {
		item(i)
	}
	w.close(']')
}

// appendState appends st as encoding/json would.
func appendState(b []byte, st *State) []byte {
	w := &jsonw{b: b}
	w.open('{')
	w.bool("live", st.Live)
	w.bool("done", st.Done)
	w.str("id", st.ID)
	w.str("dir", st.Dir)
	w.str("started", st.Started)
	w.strOmit("command", st.Command)
	w.int("jobs", int64(st.Jobs))
	w.bool("all_known", st.AllKnown)
	w.int("succeeded", int64(st.Succeeded))
	w.int("failed", int64(st.Failed))
	w.int("running", int64(st.Running))
	w.int("queued", int64(st.Queued))
	w.float("elapsed_s", st.ElapsedS)
	w.float("rate", st.Rate)
	w.float("eta_s", st.EtaS)
	w.strOmit("reduced", st.Reduced)
	w.strOmit("result", st.Result)
	w.strOmit("error", st.Error)
	if st.Speedup != 0 {
		w.float("speedup", st.Speedup)
	}
	w.bool("control", st.Control)
	w.list("hosts", st.Hosts == nil, len(st.Hosts), func(i int) { w.hostRow(&st.Hosts[i]) })
	w.key("timeline")
	w.timeline(&st.Timeline)
	if len(st.Failures) > 0 {
		w.segments("failures", st.Failures)
	}
	if len(st.Stragglers) > 0 {
		w.segments("stragglers", st.Stragglers)
	}
	if len(st.Histogram) > 0 {
		w.list("histogram", false, len(st.Histogram), func(i int) {
			bin := &st.Histogram[i]
			w.open('{')
			w.float("lo", bin.Lo)
			w.float("hi", bin.Hi)
			w.int("n", int64(bin.N))
			w.close('}')
		})
	}
	w.strings("warnings", st.Warnings)
	w.strings("notes", st.Notes)
	if t := st.Summary; t != nil {
		w.key("totals")
		w.open('{')
		w.int("done", int64(t.Done))
		w.float("job_time_s", t.JobTime)
		w.int("slots", int64(t.Slots))
		w.close('}')
	}
	w.close('}')
	return w.b
}

// strings writes an omitempty []string.
func (w *jsonw) strings(k string, ss []string) {
	if len(ss) > 0 {
		w.list(k, false, len(ss), func(i int) { w.sep(); w.b = appendString(w.b, ss[i]) })
	}
}

func (w *jsonw) hostRow(h *HostRow) {
	w.open('{')
	w.str("name", h.Name)
	w.str("state", string(h.State))
	w.strOmit("launcher", h.Launcher)
	w.int("slots", int64(h.Slots))
	w.int("running", int64(h.Running))
	w.int("queued", int64(h.Queued))
	w.int("done", int64(h.Done))
	w.int("failed", int64(h.Failed))
	w.int("lost", int64(h.Lost))
	w.float("sec_per_job", h.SecPerJob)
	w.float("cpu_eff", h.CPUEff)
	w.float("load", h.Load)
	w.int("mem_free", h.MemFree)
	w.intOmit("mem_total", h.MemTotal)
	w.strOmit("error", h.Error)
	w.close('}')
}

func (w *jsonw) timeline(t *Timeline) {
	w.open('{')
	w.int("epoch", int64(t.Epoch))
	w.int("res_ms", t.ResMS)
	w.intOmit("lanes_from", int64(t.LanesFrom))
	w.list("lanes", t.Lanes == nil, len(t.Lanes), func(i int) {
		w.open('{')
		w.str("host", t.Lanes[i].Host)
		w.int("slot", int64(t.Lanes[i].Slot))
		w.close('}')
	})
	w.segments("ended", t.Ended)
	w.segments("running", t.Running)
	w.segments("prep", t.Prep)
	w.bool("full", t.Full)
	w.int("merged", int64(t.Merged))
	w.close('}')
}

func (w *jsonw) segments(k string, ss []Segment) {
	w.list(k, ss == nil, len(ss), func(i int) { w.segment(&ss[i]) })
}

func (w *jsonw) segment(s *Segment) {
	w.open('{')
	w.int("id", int64(s.ID))
	w.int("lane", int64(s.Lane))
	w.int("s", s.Start)
	w.int("e", s.End)
	w.int("job", int64(s.Job))
	w.int("n", int64(s.N))
	w.int("f", int64(s.F))
	w.str("k", s.Kind)
	w.intOmit("x", int64(s.Exit))
	w.strOmit("cmd", s.Cmd)
	w.strOmit("tail", s.Tail)
	w.strOmit("log", s.Log)
	w.close('}')
}

// appendFloat formats f as encoding/json does. JSON has no NaN or
// infinity, where encoding/json fails: they are written as 0.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, '0')
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping: <, >
// and & as \u003c, \u003e and \u0026, so that no string in a report's
// embedded state can close its <script>; invalid UTF-8 as \ufffd; and
// U+2028 and U+2029, which end a line in some JavaScript parsers.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
