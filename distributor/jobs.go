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
//	{N}         the N-th whitespace-separated field of the input line (N ≥ 1)
//
// and, as in GNU parallel, on the line ({.}) or on a field ({N.}):
//
//	{.}  {N.}   without its extension (a/b.tar.gz → a/b.tar)
//	{/}  {N/}   its base name (everything after the last "/")
//	{//} {N//}  its directory, as Perl's dirname (b → ".", /b → "/")
//	{/.} {N/.}  its base name without extension
//
// A literal brace pair that is none of these is left alone.
type Template struct {
	args      []string
	usesInput bool // any of {} {N} and their path forms
	usesCount bool // {shards}
}

var placeholder = regexp.MustCompile(`\{(#|shard|shards|([1-9][0-9]*)?(|\.|/|//|/\.))\}`)

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
	var fields []string
	out := make([]string, len(t.args))
	for i, a := range t.args {
		out[i] = placeholder.ReplaceAllStringFunc(a, func(m string) string {
			sm := placeholder.FindStringSubmatch(m)
			switch sm[1] {
			case "#":
				return strconv.Itoa(job)
			case "shard":
				return strconv.Itoa(job - 1)
			case "shards":
				return strconv.Itoa(count)
			}
			v := line
			if sm[2] != "" {
				if fields == nil {
					fields = strings.Fields(line)
				}
				n, err := strconv.Atoi(sm[2])
				if err != nil || n > len(fields) {
					return ""
				}
				v = fields[n-1]
			}
			return pathForm(v, sm[3])
		})
	}
	return out
}

// pathForm applies a GNU parallel path modifier ("", ".", "/", "//",
// "/.") to v, with parallel's own definitions: {.} is s:\.[^/.]*$::,
// {/} is s:.*/::, {//} is File::Basename's dirname.
func pathForm(v, form string) string {
	switch form {
	case ".":
		return noExt(v)
	case "/":
		return v[strings.LastIndex(v, "/")+1:]
	case "//":
		return perlDirname(v)
	case "/.":
		return noExt(v[strings.LastIndex(v, "/")+1:])
	}
	return v
}

// noExt removes a final "." and what follows it, unless that holds a
// "/" or another "." (s:\.[^/.]*$::).
func noExt(v string) string {
	if i := strings.LastIndexAny(v, "./"); i >= 0 && v[i] == '.' {
		return v[:i]
	}
	return v
}

// perlDirname is Perl's File::Basename::dirname on Unix: the directory
// part without trailing slashes; "." for a name without one; "/" for the
// root; a trailing slash is ignored (a/b/ → a).
func perlDirname(p string) string {
	dir, base := fileparse(p)
	dir = stripTrailingSep(dir)
	if base == "" {
		dir, _ = fileparse(dir)
		dir = stripTrailingSep(dir)
	}
	return dir
}

// fileparse splits p after its last "/"; the directory of a name without
// one is "./".
func fileparse(p string) (dir, base string) {
	i := strings.LastIndex(p, "/")
	if i < 0 {
		return "./", p
	}
	return p[:i+1], p[i+1:]
}

// stripTrailingSep is s{(.)/*\z}{$1}s: trailing slashes go, but a path of
// slashes keeps one.
func stripTrailingSep(s string) string {
	if t := strings.TrimRight(s, "/"); t != "" || s == "" {
		return t
	}
	return "/"
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
