package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
	"sync"
	"unicode/utf8"

	"golang.org/x/term"
)

// spoolMem is how much of one output a spool keeps in memory; the rest
// goes to an unlinked temporary file.
const spoolMem = 64 << 10

// spool keeps one host's output for --group and --json in bounded memory:
// the first spoolMem bytes in memory, the rest in a temporary file that
// is unlinked at once (so nothing is left behind, even on a crash). It
// hashes what it keeps, for grouping, and tracks whether it is UTF-8.
type spool struct {
	mem   []byte
	f     *os.File
	n     int64
	h     hash.Hash
	carry []byte // an incomplete UTF-8 sequence at the end of what was written
	bad   bool   // not valid UTF-8
	err   error  // the first write error (a full temp disk): reported
}

// unlinkedTemp creates a temporary file and unlinks it at once: it lives
// while open and leaves nothing behind, even if dsub is killed.
func unlinkedTemp(pattern string) (*os.File, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name())
	return f, nil
}

func newSpool() *spool { return &spool{h: sha256.New()} }

func (s *spool) Write(p []byte) (int, error) {
	s.h.Write(p)
	s.checkUTF8(p)
	s.n += int64(len(p))
	if s.f == nil && len(s.mem)+len(p) <= spoolMem {
		s.mem = append(s.mem, p...)
		return len(p), nil
	}
	if s.f == nil && s.err == nil {
		f, err := unlinkedTemp("dsub-spool-*")
		if err != nil {
			s.err = fmt.Errorf("spool output: %w", err)
			return len(p), nil
		}
		s.f = f
	}
	if s.err == nil {
		if _, err := s.f.Write(p); err != nil {
			s.err = fmt.Errorf("spool output: %w", err)
		}
	}
	return len(p), nil
}

// checkUTF8 validates p as the continuation of what came before, across
// writes that split a character.
func (s *spool) checkUTF8(p []byte) {
	if s.bad {
		return
	}
	b := append(s.carry, p...)
	cut := completeUTF8(b) // an incomplete sequence waits for the next write
	if !utf8.Valid(b[:cut]) {
		s.bad = true
	}
	s.carry = append([]byte(nil), b[cut:]...)
}

// completeUTF8 returns the length of b without an incomplete UTF-8
// sequence at its end (one that a later write may complete).
func completeUTF8(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}

// UTF8 reports whether everything written is valid UTF-8.
func (s *spool) UTF8() bool { return !s.bad && len(s.carry) == 0 }

// Sum is the SHA-256 of everything written.
func (s *spool) Sum() string { return string(s.h.Sum(nil)) }

// Reader reads everything written, from the start.
func (s *spool) Reader() io.Reader {
	if s.f == nil {
		return bytes.NewReader(s.mem)
	}
	return io.MultiReader(bytes.NewReader(s.mem), io.NewSectionReader(s.f, 0, s.n-int64(len(s.mem))))
}

// Close releases the temporary file.
func (s *spool) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

// sharedInput lets every host read the same input, each at its own pace,
// in bounded memory: a regular file is read in place; anything else (a
// pipe) is spooled to an unlinked temporary file as it arrives, and each
// host reads what has arrived so far, waiting for more until the input
// ends. So the commands start at once and get their input as it comes,
// as pdsh's do, rather than after stdin's end.
type sharedInput struct {
	f   *os.File
	off int64 // where the input starts in f
	tmp bool

	mu   sync.Mutex
	more *sync.Cond // size grew, or the input ended
	size int64      // bytes of input in f so far; guarded by mu
	done bool       // the whole input is in f (or it was closed); guarded by mu
	err  error      // why reading stdin failed; guarded by mu
}

// shareInput prepares r for every host. It returns nil when r is a
// terminal or nil: then no input is forwarded, as with pdsh.
func shareInput(r io.Reader) (*sharedInput, error) {
	if r == nil {
		return nil, nil
	}
	if f, ok := r.(*os.File); ok {
		if term.IsTerminal(int(f.Fd())) {
			return nil, nil
		}
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			pos, err := f.Seek(0, io.SeekCurrent)
			if err == nil {
				s := &sharedInput{f: f, off: pos, size: fi.Size() - pos, done: true}
				s.more = sync.NewCond(&s.mu)
				return s, nil
			}
		}
	}
	tmp, err := unlinkedTemp("dsub-stdin-*")
	if err != nil {
		return nil, fmt.Errorf("spool stdin: %w", err)
	}
	s := &sharedInput{f: tmp, tmp: true}
	s.more = sync.NewCond(&s.mu)
	go s.fill(r)
	return s, nil
}

// fill copies r into the spool as it arrives.
func (s *sharedInput) fill(r io.Reader) {
	buf := make([]byte, 64<<10)
	var pos int64 // fill alone writes: its own count of size
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.f.WriteAt(buf[:n], pos); werr != nil {
				s.end(fmt.Errorf("spool stdin: %w", werr))
				return
			}
			pos += int64(n)
			s.mu.Lock()
			s.size = pos
			s.more.Broadcast()
			s.mu.Unlock()
		}
		if err == io.EOF {
			s.end(nil)
			return
		}
		if err != nil {
			s.end(fmt.Errorf("read stdin: %w", err))
			return
		}
	}
}

func (s *sharedInput) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done, s.err = true, err
	}
	s.more.Broadcast()
}

// Err is why stdin could not be read whole, if it could not.
func (s *sharedInput) Err() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Reader is one host's own reader of the whole input.
func (s *sharedInput) Reader() io.Reader {
	if s == nil {
		return nil
	}
	return &inputReader{s: s}
}

// inputReader reads a sharedInput from the start, waiting at the end of
// what has arrived until more does or the input ends.
type inputReader struct {
	s   *sharedInput
	off int64
}

func (r *inputReader) Read(p []byte) (int, error) {
	s := r.s
	s.mu.Lock()
	for r.off >= s.size && !s.done {
		s.more.Wait()
	}
	size, err := s.size, s.err
	s.mu.Unlock()
	if r.off >= size {
		if err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	if int64(len(p)) > size-r.off {
		p = p[:size-r.off]
	}
	n, rerr := s.f.ReadAt(p, s.off+r.off)
	r.off += int64(n)
	if rerr == io.EOF && n > 0 {
		rerr = nil
	}
	return n, rerr
}

// Close releases a spooled input; readers still waiting get EOF.
func (s *sharedInput) Close() error {
	if s == nil {
		return nil
	}
	s.end(nil)
	if s.tmp {
		return s.f.Close()
	}
	return nil
}
