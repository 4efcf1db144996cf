package records

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// StreamFile is the name of stream i's file in a run's output
// directory.
func StreamFile(i int) string { return strconv.Itoa(i) + ".dso" }

func baseName(p string) string { return filepath.Base(p) }

// validFile refuses a locator's file that is not a plain name in the
// output directory: a record edited by hand, or a foreign one, names
// nothing outside it.
func validFile(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("output stream %q: not a stream file's name", name)
	}
	return nil
}

// ReadOutput copies stream s of the execution that loc locates, in dir,
// to w, byte for byte, and returns how many bytes it copied.
func ReadOutput(dir string, loc Locator, s Stream, w io.Writer) (int64, error) {
	return readOutput(dir, loc, s, -1, w)
}

// ReadTail is ReadOutput of no more than what holds stream s's last n
// bytes: only the records that cover them are read (a 1 GiB stderr's tail
// costs a record or two), and w receives at least those n bytes, or the
// whole stream if it is shorter.
func ReadTail(dir string, loc Locator, s Stream, n int64, w io.Writer) (int64, error) {
	return readOutput(dir, loc, s, max(n, 0), w)
}

// readOutput walks the chain of stream s back from the execution's end
// record, reading only headers, until it has the whole stream or, with
// tail >= 0, at least its last tail bytes; then it copies those records
// forward, checking each one's checksum.
func readOutput(dir string, loc Locator, s Stream, tail int64, w io.Writer) (int64, error) {
	if err := validFile(loc.File); err != nil {
		return 0, err
	}
	if s != Stdout && s != Stderr {
		return 0, fmt.Errorf("no stream %v", s)
	}
	f, err := os.Open(filepath.Join(dir, loc.File))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	end, err := readEnd(f, loc.Off)
	if err != nil {
		return 0, fmt.Errorf("output stream %s at %d: %w", loc.File, loc.Off, err)
	}
	var offs []int64
	var held int64 // data bytes in the records found so far
	for off := end.last[s-1]; off >= 0 && (tail < 0 || held < tail); {
		if len(offs) > 1<<26 {
			return 0, fmt.Errorf("output stream %s: a chain without end", loc.File)
		}
		if len(offs) > 0 && off >= offs[len(offs)-1] {
			return 0, fmt.Errorf("output stream %s at %d: a chain that does not go back", loc.File, off)
		}
		d, err := readDataHead(f, off)
		if err != nil {
			return 0, fmt.Errorf("output stream %s at %d: %w", loc.File, off, err)
		}
		if d.job != end.Job || d.seq != end.Seq || d.stream != s {
			return 0, fmt.Errorf("output stream %s at %d: a record of job %d, execution %d, %v where job %d, execution %d, %v was wanted",
				loc.File, off, d.job, d.seq, d.stream, end.Job, end.Seq, s)
		}
		offs = append(offs, off)
		held += d.size
		off = d.prev
	}
	var total int64
	buf := make([]byte, maxRecord+8)
	for _, off := range slices.Backward(offs) {
		_, body, err := readRecord(f, off, buf)
		if err != nil {
			return total, fmt.Errorf("output stream %s at %d: %w", loc.File, off, err)
		}
		d, err := decodeData(body)
		if err != nil {
			return total, err
		}
		n, err := w.Write(d.data)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// ReadEnd reads the end record that loc locates in dir.
func ReadEnd(dir string, loc Locator) (End, error) {
	if err := validFile(loc.File); err != nil {
		return End{}, err
	}
	f, err := os.Open(filepath.Join(dir, loc.File))
	if err != nil {
		return End{}, err
	}
	defer f.Close()
	return readEnd(f, loc.Off)
}

// ScanEnds calls fn with every execution's end record in the stream file
// at path, in the order they were written. A torn tail ends the scan
// quietly: it is what a crash leaves, and a resume cuts it.
func ScanEnds(path string, fn func(End) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc, err := newScanner(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for sc.next() {
		if sc.kind != kindEnd {
			continue
		}
		e, err := decodeEnd(sc.body)
		if err != nil {
			return fmt.Errorf("%s at %d: %w", path, sc.off, err)
		}
		e.Off = sc.off
		if err := fn(e); err != nil {
			return err
		}
	}
	if sc.err != nil && !errors.Is(sc.err, errTorn) {
		return sc.err
	}
	return nil
}

// readRecord reads the whole record at off into buf (grown if needed).
func readRecord(f io.ReaderAt, off int64, buf []byte) (kind byte, body []byte, err error) {
	var pre [8]byte
	if _, err := f.ReadAt(pre[:], off); err != nil {
		return 0, nil, fmt.Errorf("no record: %w", err)
	}
	n := binary.LittleEndian.Uint32(pre[:4])
	if n < 1 || n > maxRecord {
		return 0, nil, errors.New("no record: bad length")
	}
	body = slices.Grow(buf[:0], int(n))[:n]
	if _, err := f.ReadAt(body, off+8); err != nil {
		return 0, nil, fmt.Errorf("record cut short: %w", err)
	}
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(pre[4:]) {
		return 0, nil, errors.New("record damaged (checksum)")
	}
	return body[0], body, nil
}

func readEnd(f io.ReaderAt, off int64) (End, error) {
	kind, body, err := readRecord(f, off, nil)
	if err != nil {
		return End{}, err
	}
	if kind != kindEnd {
		return End{}, errors.New("not an execution's end record")
	}
	e, err := decodeEnd(body)
	e.Off = off
	return e, err
}

type dataHead struct {
	job, seq int
	stream   Stream
	prev     int64
	data     []byte
	size     int64 // the record's data bytes (readDataHead: data holds only some)
}

// readDataHead reads a data record's header, not its bytes (it does not
// check the checksum, which covers the bytes: the copy that follows
// does).
func readDataHead(f io.ReaderAt, off int64) (dataHead, error) {
	var b [8 + 1 + 4*binary.MaxVarintLen64]byte
	n, err := f.ReadAt(b[:], off)
	if n < 9 {
		return dataHead{}, fmt.Errorf("no record: %v", err)
	}
	if b[8] != kindData {
		return dataHead{}, errors.New("not a data record")
	}
	d, err := decodeData(b[8:n])
	if err != nil {
		return d, err
	}
	body := int64(binary.LittleEndian.Uint32(b[:4]))
	d.size = body - int64(n-8-len(d.data)) // the body less its header
	return d, nil
}

func decodeData(body []byte) (dataHead, error) {
	r := &varReader{b: body[1:]}
	d := dataHead{job: int(r.uvarint()), seq: int(r.uvarint())}
	d.stream = Stream(r.byte())
	d.prev = r.varint()
	if r.err != nil {
		return dataHead{}, r.err
	}
	d.data = r.b
	d.size = int64(len(r.b))
	return d, nil
}

func decodeEnd(body []byte) (End, error) {
	r := &varReader{b: body[1:]}
	e := End{Job: int(r.uvarint()), Seq: int(r.uvarint()), Attempt: int(r.uvarint())}
	for i := range e.Bytes {
		e.Bytes[i] = int64(r.uvarint())
		e.last[i] = r.varint()
	}
	if r.err != nil {
		return End{}, r.err
	}
	return e, nil
}

type varReader struct {
	b   []byte
	err error
}

func (r *varReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("record damaged (a number)")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *varReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("record damaged (a number)")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *varReader) byte() byte {
	if len(r.b) == 0 {
		r.err = errors.New("record damaged (cut short)")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}
