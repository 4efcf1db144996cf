package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
)

// TestSpoolUTF8AcrossWrites: a character split across writes is still
// UTF-8; an invalid byte, or a sequence left incomplete at the end, is not.
// What is read back equals what was written, past the in-memory part too.
func TestSpoolUTF8AcrossWrites(t *testing.T) {
	big := strings.Repeat("é", spoolMem) // 2 bytes each: spills to the file
	for _, tt := range []struct {
		name   string
		writes []string
		utf8   bool
	}{
		{"ascii", []string{"abc", "def"}, true},
		{"split é", []string{"caf\xc3", "\xa9!"}, true},
		{"split 4-byte", []string{"\xf0\x9f", "\x98", "\x80"}, true},
		{"invalid", []string{"a\xffb"}, false},
		{"incomplete at end", []string{"ok\xc3"}, false},
		{"big", []string{big[:3], big[3:]}, true},
	} {
		s := newSpool()
		for _, w := range tt.writes {
			s.Write([]byte(w))
		}
		got, _ := io.ReadAll(s.Reader())
		if s.UTF8() != tt.utf8 || string(got) != strings.Join(tt.writes, "") {
			t.Errorf("%s: UTF8 %v (want %v), read back %d bytes", tt.name, s.UTF8(), tt.utf8, len(got))
		}
		s.Close()
	}
}

// TestWriteJSONString: chunked escaping gives the same string as one
// json.Marshal, whatever the chunk boundaries.
func TestWriteJSONString(t *testing.T) {
	text := strings.Repeat("héllo \"q\" \\ \t\n\u2028 ", 5000)
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	writeJSONString(w, strings.NewReader(text))
	w.Flush()
	var back string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back != text {
		t.Fatalf("round trip: %v (equal %v)", err, back == text)
	}
}

// A piped input reaches every reader as it arrives, whole and in order,
// each at its own pace, and ends for all when the pipe does.
func TestSharedInputStreams(t *testing.T) {
	pr, pw := io.Pipe()
	in, err := shareInput(pr)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	readers := []*bufio.Reader{bufio.NewReader(in.Reader()), bufio.NewReader(in.Reader())}
	var want strings.Builder
	for i := range 50 {
		line := fmt.Sprintf("line %d %s\n", i, strings.Repeat("x", i*97))
		want.WriteString(line)
		pw.Write([]byte(line))
		for j, r := range readers { // each line is there before the next is written
			got, err := r.ReadString('\n')
			if err != nil || got != line {
				t.Fatalf("reader %d: %q, %v; want %q", j, got, err, line)
			}
		}
	}
	pw.Close()
	late, err := io.ReadAll(in.Reader()) // a reader that starts late gets it all
	if err != nil || string(late) != want.String() {
		t.Errorf("late reader: %d bytes, %v; want %d", len(late), err, want.Len())
	}
	for j, r := range readers {
		if _, err := r.ReadByte(); err != io.EOF {
			t.Errorf("reader %d after the end: %v, want EOF", j, err)
		}
	}
}
