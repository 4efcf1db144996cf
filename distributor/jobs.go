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

	"github.com/dsub-dev/dsub/remote"
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
	// Transfer are local files uploaded into the job's own directory on
	// its host before it starts, each under its base name; Return are
	// files (relative to that directory) fetched once it has succeeded.
	// Either gives the job its own directory (RunOptions.JobDirs).
	Transfer, Return []string
}

// Template expands placeholders in argument templates, with GNU
// parallel's meanings. A job is made from its columns: an input line (one
// column, or several split by --colsep), or one value from each input
// source given with ::: or ::::.
//
//	{#}         job number, 1-based
//	{%}         the job's slot on its host, 1 to its slots (known only
//	            when the job starts: SlotMark stands for it until then)
//	{shard}     0-based shard index ({#} - 1)
//	{shards}    number of jobs (when known)
//	{}          the columns, each its own word (one column: the line)
//	{N}         the N-th column (N ≥ 1); "" beyond the last
//
// and, as in GNU parallel, on {} (each column) or on a column ({N.}):
//
//	{.}  {N.}   without its extension (a/b.tar.gz → a/b.tar)
//	{/}  {N/}   its base name (everything after the last "/")
//	{//} {N//}  its directory, as Perl's dirname (b → ".", /b → "/")
//	{/.} {N/.}  its base name without extension
//
// A brace pair that is none of these ({foo}, {1x}) is left as it is, as
// GNU parallel leaves it.
type Template struct {
	args      []string
	usesInput bool // any of {} {N} and their path forms
	usesCount bool // {shards}
	usesSlot  bool // {%}
	usesAny   bool // any placeholder at all, {#} and {%} included
}

var placeholder = regexp.MustCompile(`\{(#|%|shard|shards|([1-9][0-9]*)?(|\.|/|//|/\.))\}`)

// SlotMark stands for {%} in an expanded job until it starts on a host,
// where the executor puts in its slot number (RunOptions.SlotNumbers).
// The record separator byte keeps it from any value a user could give.
const SlotMark = "\x1edsub-slot\x1e"

// ShowSlot spells SlotMark back as {%}, for display (joblog, dry runs).
func ShowSlot(s string) string { return strings.ReplaceAll(s, SlotMark, "{%}") }

// NewTemplate parses argument templates.
func NewTemplate(args []string) *Template {
	t := &Template{args: args}
	for _, a := range args {
		for _, m := range placeholder.FindAllStringSubmatch(a, -1) {
			t.usesAny = true
			switch m[1] {
			case "shards":
				t.usesCount = true
			case "%":
				t.usesSlot = true
			case "#", "shard":
			default:
				t.usesInput = true
			}
		}
	}
	return t
}

// WithInput is the template for jobs made from input: as GNU parallel
// does, a template with no placeholder at all ({#} and {%} count, {foo}
// does not) gets {} appended, so that each job gets its input as
// trailing words (`echo ::: a b` runs `echo a` and `echo b`).
func (t *Template) WithInput() *Template {
	if t.usesAny {
		return t
	}
	return NewTemplate(append(append([]string(nil), t.args...), "{}"))
}

// UsesAny reports whether the template has any placeholder at all.
func (t *Template) UsesAny() bool { return t.usesAny }

// UsesInput reports whether the template refers to the input.
func (t *Template) UsesInput() bool { return t.usesInput }

// UsesCount reports whether the template uses {shards}.
func (t *Template) UsesCount() bool { return t.usesCount }

// UsesSlot reports whether the template uses {%}.
func (t *Template) UsesSlot() bool { return t.usesSlot }

// Expand fills the placeholders for job number job (1-based) of count
// (0 if unknown) made from cols, as an argv: {} of several columns is
// several words, as GNU parallel's shell would split it ("x{}y" of a, b
// is "xa", "by").
func (t *Template) Expand(job, count int, cols []string) []string {
	var out []string
	for _, a := range t.args {
		words := []string{""}
		t.each(a, job, count, cols, func(lit string, vals []string) {
			if vals == nil {
				words[len(words)-1] += lit
				return
			}
			for i, v := range vals {
				if i == 0 {
					words[len(words)-1] += v
				} else {
					words = append(words, v)
				}
			}
		})
		out = append(out, words...)
	}
	return out
}

// ExpandShell is Expand for a command line run by the shell, as GNU
// parallel runs its command: the arguments joined by spaces, and each
// value put in shell-quoted (” when empty; a column beyond the last puts
// in nothing).
func (t *Template) ExpandShell(job, count int, cols []string) string {
	var b strings.Builder
	for i, a := range t.args {
		if i > 0 {
			b.WriteByte(' ')
		}
		t.each(a, job, count, cols, func(lit string, vals []string) {
			if vals == nil {
				b.WriteString(lit)
				return
			}
			for i, v := range vals {
				if i > 0 {
					b.WriteByte(' ')
				}
				b.WriteString(remote.Quote(v))
			}
		})
	}
	return b.String()
}

// each calls emit for the pieces of template argument a in order: literal
// text (vals nil) and each placeholder's values (none, not nil, for a
// column beyond the last).
func (t *Template) each(a string, job, count int, cols []string, emit func(lit string, vals []string)) {
	last := 0
	for _, m := range placeholder.FindAllStringSubmatchIndex(a, -1) {
		emit(a[last:m[0]], nil)
		last = m[1]
		switch key := a[m[2]:m[3]]; key {
		case "#":
			emit("", []string{strconv.Itoa(job)})
			continue
		case "shard":
			emit("", []string{strconv.Itoa(job - 1)})
			continue
		case "shards":
			emit("", []string{strconv.Itoa(count)})
			continue
		case "%":
			emit(SlotMark, nil) // as is: not a value to quote
			continue
		}
		form := a[m[6]:m[7]]
		if m[4] < 0 { // {} and its forms: every column
			vals := make([]string, len(cols))
			for i, c := range cols {
				vals[i] = pathForm(c, form)
			}
			emit("", vals)
			continue
		}
		if n, err := strconv.Atoi(a[m[4]:m[5]]); err == nil && n <= len(cols) {
			emit("", []string{pathForm(cols[n-1], form)})
		} else {
			emit("", []string{})
		}
	}
	emit(a[last:], nil)
}

// Columns splits an input line into its columns: the line itself, or
// split where colsep matches (GNU parallel's --colsep).
func Columns(line string, colsep *regexp.Regexp) []string {
	if colsep == nil {
		return []string{line}
	}
	return colsep.Split(line, -1)
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
// long. From NewLineReader, a trailing "\r" is dropped, and blank lines
// and comment lines (whose first non-blank character is "#") are not
// jobs: they are skipped, and {#} counts only jobs. NewValueReader keeps
// every line as it is.
type LineReader struct {
	r     *bufio.Reader
	name  string
	line  int
	every bool // blank and comment lines are values too
}

// NewLineReader reads lines from r; name is used in errors.
func NewLineReader(r io.Reader, name string) *LineReader {
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), name: name}
}

// NewValueReader reads every line of r as it is, blank and comment lines
// and a trailing "\r" included, as GNU parallel reads a :::: file: there
// a line is a value, and an empty one is an empty argument.
func NewValueReader(r io.Reader, name string) *LineReader {
	l := NewLineReader(r, name)
	l.every = true
	return l
}

// MaxInputLine bounds one input line.
const MaxInputLine = 16 << 20

// Next returns the next job line (not blank, not a comment, unless the
// reader keeps every line) and its 1-based line number, or io.EOF.
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
		s := strings.TrimSuffix(string(b), "\n")
		if l.every {
			return s, l.line, nil
		}
		s = strings.TrimRight(s, "\r")
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
