package distributor

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// JobSpec is one job to run. With a binary (RunOptions.Binary or Build),
// Args are its arguments; without one, Shell is a command line for the
// remote shell.
type JobSpec struct {
	Args  []string
	Shell string
	Env   map[string]string // exported in addition to DSUB_JOB, DSUB_SHARD, DSUB_SHARDS, DSUB_HOST, DSUB_ATTEMPT and DSUB_RUN (which it cannot override)
	Pin   string            // run only on this host ("" = any)
	Shard int               // 0-based shard index, for DSUB_SHARD
	// Shards is the job count for DSUB_SHARDS, when known (0 = unknown).
	Shards int
	// Input is the input line the job was made from, if any (recorded).
	Input string
}

// Template expands placeholders in argument templates:
//
//	{#}         job number, 1-based
//	{shard}     0-based shard index ({#} - 1)
//	{shards}    number of jobs (when known)
//	{}          the input line
//	{1} ... {9} whitespace-separated fields of the input line
//
// A literal brace pair that is none of these is left alone.
type Template struct {
	args      []string
	usesInput bool // any of {} {1}..{9}
	usesCount bool // {shards}
}

var placeholder = regexp.MustCompile(`\{(#|shard|shards|[1-9]|)\}`)

// NewTemplate parses argument templates.
func NewTemplate(args []string) *Template {
	t := &Template{args: args}
	for _, a := range args {
		for _, m := range placeholder.FindAllStringSubmatch(a, -1) {
			switch m[1] {
			case "shards":
				t.usesCount = true
			case "#", "shard":
			default:
				t.usesInput = true
			}
		}
	}
	return t
}

// UsesInput reports whether the template refers to the input line.
func (t *Template) UsesInput() bool { return t.usesInput }

// UsesCount reports whether the template uses {shards}.
func (t *Template) UsesCount() bool { return t.usesCount }

// Expand fills the placeholders for job number job (1-based) of count
// (0 if unknown) made from input line.
func (t *Template) Expand(job, count int, line string) []string {
	fields := strings.Fields(line)
	out := make([]string, len(t.args))
	for i, a := range t.args {
		out[i] = placeholder.ReplaceAllStringFunc(a, func(m string) string {
			switch k := m[1 : len(m)-1]; k {
			case "#":
				return strconv.Itoa(job)
			case "shard":
				return strconv.Itoa(job - 1)
			case "shards":
				return strconv.Itoa(count)
			case "":
				return line
			default:
				n := int(k[0] - '0')
				if n <= len(fields) {
					return fields[n-1]
				}
				return ""
			}
		})
	}
	return out
}

// LineReader streams input lines for jobs: one job per line, read lazily
// so that a huge input is never held in memory. Lines may be arbitrarily
// long; a trailing "\r" is dropped. Blank lines and comment lines (whose
// first non-blank character is "#") are not jobs: they are skipped, and
// {#} counts only jobs.
type LineReader struct {
	r    *bufio.Reader
	name string
	line int
}

// NewLineReader reads lines from r; name is used in errors.
func NewLineReader(r io.Reader, name string) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), name: name}
}

// MaxInputLine bounds one input line.
const MaxInputLine = 16 << 20

// Next returns the next job line (not blank, not a comment) and its
// 1-based line number, or io.EOF.
func (l *LineReader) Next() (string, int, error) {
	for {
		var b []byte
		for {
			chunk, err := l.r.ReadSlice('\n')
			b = append(b, chunk...)
			if len(b) > MaxInputLine {
				return "", 0, fmt.Errorf("%s:%d: line longer than %d bytes", l.name, l.line+1, MaxInputLine)
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && (err != io.EOF || len(b) == 0) {
				if err == io.EOF {
					return "", 0, io.EOF
				}
				return "", 0, fmt.Errorf("%s: %w", l.name, err)
			}
			break
		}
		l.line++
		if bytes.IndexByte(b, 0) >= 0 {
			// No command line can carry it (sshd would drop the whole
			// connection): refused, naming the line.
			return "", 0, fmt.Errorf("%s:%d: the line contains a NUL byte", l.name, l.line)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if t := strings.TrimSpace(s); t != "" && !strings.HasPrefix(t, "#") {
			return s, l.line, nil
		}
	}
}

// CountLines counts the job lines of r (for {shards} with a file).
func CountLines(r io.Reader, name string) (int, error) {
	lr := NewLineReader(r, name)
	n := 0
	for {
		_, _, err := lr.Next()
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}
