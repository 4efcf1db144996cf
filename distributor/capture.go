package distributor

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync/atomic"
)

// MaxResultLine bounds the result line dsub keeps in memory. A job's
// output streams to the run's output streams whatever its size; only the last
// non-empty line is kept, and one longer than this fails the job.
const MaxResultLine = 1 << 20

// resultWriter passes stdout through to a log and remembers the last
// non-empty line, in memory bounded by MaxResultLine.
type resultWriter struct {
	cur      []byte // the line being written
	curLong  bool   // cur exceeded the bound
	last     []byte // last complete non-empty line
	lastLong bool
	bytes    int64
}

func (w *resultWriter) Write(p []byte) (int, error) {
	n := len(p)
	w.bytes += int64(n)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !w.curLong {
			if len(w.cur)+len(chunk) > MaxResultLine {
				w.curLong, w.cur = true, w.cur[:0]
			} else {
				w.cur = append(w.cur, chunk...)
			}
		}
		if i < 0 {
			break
		}
		w.endLine()
		p = p[i+1:]
	}
	return n, nil
}

func (w *resultWriter) endLine() {
	if w.curLong || len(bytes.TrimSpace(w.cur)) > 0 {
		w.last = append(w.last[:0], w.cur...)
		w.lastLong = w.curLong
	}
	w.cur, w.curLong = w.cur[:0], false
}

// Result returns the last non-empty line, whether one exists, and whether
// it was too long to keep.
func (w *resultWriter) Result() (line string, ok, tooLong bool) {
	if w.curLong || len(bytes.TrimSpace(w.cur)) > 0 {
		w.endLine() // a final line without newline counts
	}
	if w.lastLong {
		return "", false, true
	}
	s := string(bytes.TrimRight(w.last, "\r"))
	return s, len(bytes.TrimSpace(w.last)) > 0, false
}

// ResultValue is the JSON form of a result line: the line itself when it
// is valid JSON, else the line as a JSON string.
func ResultValue(line string) json.RawMessage {
	t := bytes.TrimSpace([]byte(line))
	if json.Valid(t) {
		return json.RawMessage(t)
	}
	b, _ := json.Marshal(line)
	return b
}

// stderrWriter passes stderr through, parses "dsub:progress F" lines,
// and keeps a tail for error messages.
type stderrWriter struct {
	progress *atomic.Uint64 // float64 bits, 0..1
	line     []byte
	tail     []byte
	bytes    int64
}

const tailSize = 2048

func (w *stderrWriter) Write(p []byte) (int, error) {
	w.bytes += int64(len(p))
	w.tail = append(w.tail, p...)
	if len(w.tail) > 2*tailSize {
		w.tail = append(w.tail[:0], w.tail[len(w.tail)-tailSize:]...)
	}
	for _, c := range p {
		if c != '\n' {
			if len(w.line) < 64 {
				w.line = append(w.line, c)
			}
			continue
		}
		if rest, ok := bytes.CutPrefix(w.line, []byte("dsub:progress ")); ok {
			if f, err := strconv.ParseFloat(string(bytes.TrimSpace(rest)), 64); err == nil && f >= 0 && f <= 1 {
				w.progress.Store(floatBits(f))
			}
		}
		w.line = w.line[:0]
	}
	return len(p), nil
}

// Tail returns up to the last few lines of stderr, without progress lines.
func (w *stderrWriter) Tail() string {
	t := w.tail
	if len(t) > tailSize {
		t = t[len(t)-tailSize:]
	}
	var out [][]byte
	for _, l := range bytes.Split(bytes.TrimRight(t, "\n"), []byte("\n")) {
		if !bytes.HasPrefix(l, []byte("dsub:progress ")) {
			out = append(out, l)
		}
	}
	if len(out) > 5 {
		out = out[len(out)-5:]
	}
	return string(bytes.Join(out, []byte("\n")))
}
