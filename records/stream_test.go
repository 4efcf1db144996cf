package records

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Executions that write at once, some past a chunk, each read back byte
// for byte from its locator.
func TestStreamRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w, err := CreateStream(filepath.Join(dir, StreamFile(0)))
	if err != nil {
		t.Fatal(err)
	}
	sizes := []int{0, 1, 100, chunkSize - 1, chunkSize, chunkSize + 1, 5*chunkSize + 17}
	type want struct {
		loc      Locator
		out, err []byte
	}
	wants := make([]want, len(sizes))
	var wg sync.WaitGroup
	for i, n := range sizes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := w.Open(i+1, i+10, 1)
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			out := make([]byte, n)
			for k := range out {
				out[k] = byte(rng.UintN(256))
			}
			er := []byte(strings.Repeat(fmt.Sprintf("err %d\n", i), n/7))
			for p := out; len(p) > 0; { // in uneven writes
				k := min(len(p), 1+int(rng.UintN(9000)))
				o.Stdout().Write(p[:k])
				p = p[k:]
			}
			o.Stderr().Write(er)
			loc, err := o.Close()
			if err != nil {
				t.Error(err)
			}
			wants[i] = want{loc, out, er}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for i, wt := range wants {
		for _, s := range []Stream{Stdout, Stderr} {
			var b bytes.Buffer
			n, err := ReadOutput(dir, wt.loc, s, &b)
			exp := wt.out
			if s == Stderr {
				exp = wt.err
			}
			if err != nil || n != int64(len(exp)) || !bytes.Equal(b.Bytes(), exp) {
				t.Errorf("execution %d %v: read %d bytes (%v), want %d identical", i, s, n, err, len(exp))
			}
		}
		// A tail reads only the records that cover it.
		var tb bytes.Buffer
		n, err := ReadTail(dir, wt.loc, Stdout, 100, &tb)
		want := wt.out[max(0, len(wt.out)-100):]
		if err != nil || !bytes.HasSuffix(tb.Bytes(), want) || n > int64(min(len(wt.out), 100+chunkSize)) {
			t.Errorf("execution %d: tail of 100 read %d bytes (%v), want its last %d within %d", i, n, err, len(want), 100+chunkSize)
		}
		e, err := ReadEnd(dir, wt.loc)
		if err != nil || e.Job != i+1 || e.Seq != i+10 || e.Bytes[0] != int64(len(wt.out)) {
			t.Errorf("end of %d = %+v, %v", i, e, err)
		}
	}
	var ends int
	if err := ScanEnds(filepath.Join(dir, StreamFile(0)), func(End) error { ends++; return nil }); err != nil || ends != len(sizes) {
		t.Errorf("ScanEnds: %d ends, %v; want %d", ends, err, len(sizes))
	}
}

// A stream cut anywhere in its last record (a master SIGKILLed mid-write)
// is repaired when opened again: what was whole reads back, and records
// appended after it read back too.
func TestStreamTornTail(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StreamFile(0))
	w, err := CreateStream(path)
	if err != nil {
		t.Fatal(err)
	}
	o := w.Open(1, 1, 1)
	o.Stdout().Write([]byte("first\n"))
	first, _ := o.Close()
	o = w.Open(2, 2, 1)
	o.Stdout().Write(bytes.Repeat([]byte("x"), 3*chunkSize))
	if _, err := o.Close(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fi, _ := os.Stat(path)
	full, _ := os.ReadFile(path)
	firstEnd := first.Off + 8 + int64(binary.LittleEndian.Uint32(full[first.Off:]))
	for _, cut := range []int64{fi.Size() - 1, fi.Size() - 5, firstEnd + 40, firstEnd + 3, firstEnd} {
		if err := os.WriteFile(path, full[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := CreateStream(path)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		o := w.Open(3, 3, 1)
		o.Stdout().Write([]byte("after\n"))
		after, err := o.Close()
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
		var b bytes.Buffer
		if _, err := ReadOutput(dir, first, Stdout, &b); err != nil || b.String() != "first\n" {
			t.Errorf("cut at %d: first job reads %q, %v", cut, b.String(), err)
		}
		b.Reset()
		if _, err := ReadOutput(dir, after, Stdout, &b); err != nil || b.String() != "after\n" {
			t.Errorf("cut at %d: a record after the repair reads %q, %v", cut, b.String(), err)
		}
		var jobs []int // a scan (dsub log --all) sees past the repair
		ScanEnds(path, func(e End) error { jobs = append(jobs, e.Job); return nil })
		if fmt.Sprint(jobs) != "[1 3]" {
			t.Errorf("cut at %d: scan finds jobs %v, want [1 3]", cut, jobs)
		}
	}
}

// A damaged record is never returned as output, and a locator naming a
// file outside the directory is refused.
func TestStreamDamage(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, StreamFile(0))
	w, _ := CreateStream(path)
	o := w.Open(1, 1, 1)
	o.Stdout().Write([]byte("precious output\n"))
	loc, _ := o.Close()
	w.Close()
	b, _ := os.ReadFile(path)
	i := bytes.Index(b, []byte("precious"))
	b[i] = 'P'
	os.WriteFile(path, b, 0o600)
	var out bytes.Buffer
	if _, err := ReadOutput(dir, loc, Stdout, &out); err == nil || out.Len() != 0 {
		t.Errorf("damaged record: read %q, err %v; want an error and nothing", out.String(), err)
	}
	for _, f := range []string{"../x.dso", "/etc/passwd", "..", ""} {
		if _, err := ReadOutput(dir, Locator{File: f, Off: 8}, Stdout, &out); err == nil {
			t.Errorf("locator file %q accepted", f)
		}
	}
}
