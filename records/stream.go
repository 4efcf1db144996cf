package records

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"slices"
	"sync"
)

// StreamMagic opens every stream file, and names its format's version.
const StreamMagic = "DSUBOUT1"

// Stream is which of a job's output streams a record holds.
type Stream uint8

const (
	Stdout Stream = 1
	Stderr Stream = 2
)

func (s Stream) String() string {
	switch s {
	case Stdout:
		return "stdout"
	case Stderr:
		return "stderr"
	}
	return fmt.Sprintf("stream(%d)", uint8(s))
}

// Record kinds.
const (
	kindData = 1 // bytes of one stream of one execution
	kindEnd  = 2 // an execution's end: where its streams' last records are
)

// chunkSize is how much of a stream an execution holds in memory before
// it writes a record: most jobs' output is one record per stream, at its
// end, and a flood costs a record per chunk, never more memory.
const chunkSize = 32 << 10

// maxRecord bounds a record's body as a reader believes it: a length
// beyond it is a torn or foreign file, not a record.
const maxRecord = chunkSize + 64

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Locator finds one execution's output: the stream file (by name, in the
// run's output directory) and the offset of the execution's end record.
type Locator struct {
	File string `json:"file"`
	Off  int64  `json:"off"`
}

// IsZero reports whether l locates nothing (a record from before streams,
// or of an execution that never ran).
func (l Locator) IsZero() bool { return l.File == "" }

// End is an execution's end record: who it was, how much each stream
// wrote, and where each stream's last record is (-1: none).
type End struct {
	Job, Seq, Attempt int
	Bytes             [2]int64 // stdout, stderr
	last              [2]int64
	Off               int64 // where this record is
}

// StreamWriter appends records to one stream file. Executions on many
// goroutines share it; a record is whole once Sync returns.
type StreamWriter struct {
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	off   int64
	dirty bool
	err   error
}

// CreateStream opens path for appending, first cutting a torn tail (a
// crash mid-record) so that new records follow whole ones, and writing the
// header into a new file.
func CreateStream(path string) (*StreamWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	end, err := repair(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("output stream %s: %w", path, err)
	}
	if _, err := f.Seek(end, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	w := &StreamWriter{f: f, w: bufio.NewWriterSize(f, 64<<10), off: end}
	if end == 0 {
		w.w.WriteString(StreamMagic)
		w.off, w.dirty = int64(len(StreamMagic)), true
	}
	return w, nil
}

// append writes one record of kind with body parts, and returns its
// offset.
func (w *StreamWriter) append(kind byte, head []byte, data []byte) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return 0, w.err
	}
	n := 1 + len(head) + len(data)
	var pre [8]byte
	binary.LittleEndian.PutUint32(pre[:4], uint32(n))
	crc := crc32.Update(0, castagnoli, []byte{kind})
	crc = crc32.Update(crc, castagnoli, head)
	crc = crc32.Update(crc, castagnoli, data)
	binary.LittleEndian.PutUint32(pre[4:], crc)
	off := w.off
	w.w.Write(pre[:])
	w.w.WriteByte(kind)
	w.w.Write(head)
	_, err := w.w.Write(data)
	if err != nil {
		w.err = err
		return 0, err
	}
	w.off += int64(8 + n)
	w.dirty = true
	return off, nil
}

// Sync makes every record appended so far durable (flushed and fsynced):
// a result that refers to one may be committed after it.
func (w *StreamWriter) Sync() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil || !w.dirty {
		return w.err
	}
	if w.err = w.w.Flush(); w.err == nil {
		w.err = w.f.Sync()
	}
	w.dirty = false
	return w.err
}

// Close syncs and closes the file.
func (w *StreamWriter) Close() error {
	err := w.Sync()
	return errors.Join(err, w.f.Close())
}

// Output is one execution's output, as it goes into a stream: its
// Stdout and Stderr writers may be used from two goroutines, one each;
// Close ends it once both are done.
type Output struct {
	sw                *StreamWriter
	job, seq, attempt int
	s                 [2]outStream
}

type outStream struct {
	o    *Output
	id   Stream
	buf  []byte
	last int64 // offset of its last record, -1 none
	n    int64
	err  error
}

// Open starts the output of an execution (job, its execution number seq,
// its attempt) in w.
func (w *StreamWriter) Open(job, seq, attempt int) *Output {
	o := &Output{sw: w, job: job, seq: seq, attempt: attempt}
	for i := range o.s {
		o.s[i] = outStream{o: o, id: Stream(i + 1), last: -1}
	}
	return o
}

// Stdout is the execution's stdout.
func (o *Output) Stdout() io.Writer { return &o.s[0] }

// Stderr is the execution's stderr.
func (o *Output) Stderr() io.Writer { return &o.s[1] }

// Write keeps p, writing a record when a chunk's worth is held. A failure
// to write is kept for Close; the job's output is not refused mid-stream.
func (s *outStream) Write(p []byte) (int, error) {
	n := len(p)
	s.n += int64(n)
	for len(p) > 0 {
		room := chunkSize - len(s.buf)
		take := min(room, len(p))
		s.buf = append(s.buf, p[:take]...)
		p = p[take:]
		if len(s.buf) == chunkSize {
			s.flush()
		}
	}
	return n, nil
}

func (s *outStream) flush() {
	if len(s.buf) == 0 || s.err != nil {
		s.buf = s.buf[:0]
		return
	}
	var h [4 * binary.MaxVarintLen64]byte
	k := binary.PutUvarint(h[:], uint64(s.o.job))
	k += binary.PutUvarint(h[k:], uint64(s.o.seq))
	h[k] = byte(s.id)
	k++
	k += binary.PutVarint(h[k:], s.last)
	s.last, s.err = s.o.sw.append(kindData, h[:k], s.buf)
	s.buf = s.buf[:0]
}

// Close writes what is held and the end record, and returns where the
// output is. The records are durable after the stream's next Sync.
func (o *Output) Close() (Locator, error) {
	for i := range o.s {
		o.s[i].flush()
	}
	if err := errors.Join(o.s[0].err, o.s[1].err); err != nil {
		return Locator{}, err
	}
	var h [7 * binary.MaxVarintLen64]byte
	k := binary.PutUvarint(h[:], uint64(o.job))
	k += binary.PutUvarint(h[k:], uint64(o.seq))
	k += binary.PutUvarint(h[k:], uint64(o.attempt))
	for i := range o.s {
		k += binary.PutUvarint(h[k:], uint64(o.s[i].n))
		k += binary.PutVarint(h[k:], o.s[i].last)
	}
	off, err := o.sw.append(kindEnd, h[:k], nil)
	if err != nil {
		return Locator{}, err
	}
	return Locator{File: o.sw.name(), Off: off}, nil
}

func (w *StreamWriter) name() string { return baseName(w.f.Name()) }

// repair finds the end of the whole records in f and cuts anything after
// it: a record torn by a crash, or a header never completed.
func repair(f *os.File) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if fi.Size() == 0 {
		return 0, nil
	}
	sc, err := newScanner(f)
	if err != nil {
		if fi.Size() < int64(len(StreamMagic)) {
			return 0, f.Truncate(0) // a header cut short
		}
		return 0, err
	}
	for sc.next() {
	}
	if sc.err != nil && !errors.Is(sc.err, errTorn) {
		return 0, sc.err
	}
	if sc.pos < fi.Size() {
		if err := f.Truncate(sc.pos); err != nil {
			return 0, err
		}
	}
	return sc.pos, nil
}

var errTorn = errors.New("torn record")

// scanner reads records in order from the start of a stream file.
type scanner struct {
	r    *bufio.Reader
	pos  int64 // where the next record starts
	kind byte
	body []byte // the record's body after its kind
	off  int64  // the current record's offset
	err  error
}

func newScanner(f io.ReaderAt) (*scanner, error) {
	var m [len(StreamMagic)]byte
	if _, err := f.ReadAt(m[:], 0); err != nil || string(m[:]) != StreamMagic {
		return nil, fmt.Errorf("not a dsub output stream (want header %q)", StreamMagic)
	}
	r := io.NewSectionReader(f, int64(len(StreamMagic)), 1<<62)
	return &scanner{r: bufio.NewReaderSize(r, 64<<10), pos: int64(len(StreamMagic))}, nil
}

func (s *scanner) next() bool {
	var pre [8]byte
	if _, err := io.ReadFull(s.r, pre[:]); err != nil {
		if err != io.EOF {
			s.err = errTorn
		}
		return false
	}
	n := binary.LittleEndian.Uint32(pre[:4])
	if n < 1 || n > maxRecord {
		s.err = errTorn
		return false
	}
	body := slices.Grow(s.body[:0], int(n))[:n]
	if _, err := io.ReadFull(s.r, body); err != nil {
		s.err = errTorn
		return false
	}
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(pre[4:]) {
		s.err = errTorn
		return false
	}
	s.off, s.kind, s.body = s.pos, body[0], body
	s.pos += int64(8 + n)
	return true
}
