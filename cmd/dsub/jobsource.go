package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/records"
)

// jobSource yields the jobs that the flags describe, one at a time, so
// that a huge input is never held in memory.
type jobSource struct {
	next     func() (distributor.JobSpec, bool, error)
	tmpl     *distributor.Template
	total    int  // the jobs the input gives, when known up front (0: a stream)
	shell    bool // the template is a command line for the remote shell
	transfer bool // --transfer: the columns are local files to upload
	returns  *distributor.Template
	closers  []func() error
	// save, for jobs read from stdin, keeps a copy of the input in the
	// run directory as it streams (see saveStdin).
	save *inputCopy
}

// openJobs opens the jobs that f describes. Jobs made from input (:::,
// ::::, --args-file) get it appended when the template names none, as
// GNU parallel's do (Template.WithInput). It is called before anything
// touches a host, so bad input is a usage error with nothing run.
func openJobs(f *runFlags, tmpl *distributor.Template, stdin io.Reader) (*jobSource, error) {
	s := &jobSource{tmpl: tmpl, shell: f.binary == "" && f.build == "" && f.commands == "", transfer: f.transfer}
	if len(f.returns) > 0 {
		s.returns = distributor.NewTemplate(f.returns)
	}
	switch {
	case f.commands != "":
		fh, err := os.Open(f.commands)
		if err != nil {
			return nil, usagef("--commands: %v", err)
		}
		s.closers = append(s.closers, fh.Close)
		// Read it all once first: a bad line (a NUL byte) is refused,
		// naming it, before anything runs.
		if s.total, err = distributor.CountLines(fh, f.commands); err != nil {
			s.close()
			return nil, usageError{err}
		}
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			s.close()
			return nil, err
		}
		lr := distributor.NewLineReader(fh, f.commands)
		n := 0
		s.next = func() (distributor.JobSpec, bool, error) {
			line, _, err := lr.Next()
			if err == io.EOF {
				return distributor.JobSpec{}, false, nil
			}
			n++
			return distributor.JobSpec{Shell: line, Shard: n - 1, Input: line}, err == nil, err
		}
	case len(f.sources) > 0:
		s.tmpl = tmpl.WithInput()
		return s, s.openSources(f, stdin)
	case f.argsFile != "":
		s.tmpl = tmpl.WithInput()
		return s, s.openArgs(f, tmpl, stdin)
	default:
		if tmpl.UsesInput() {
			return nil, usagef("run: {} and {1}, {.}, {/}... (the input and its columns) need --args-file, ::: or ::::")
		}
		total := max(f.shards, 1)
		s.total = total
		n := 0
		s.next = func() (distributor.JobSpec, bool, error) {
			if n == total {
				return distributor.JobSpec{}, false, nil
			}
			n++
			return s.spec(n, total, nil, ""), true, nil
		}
	}
	return s, nil
}

func (s *jobSource) openArgs(f *runFlags, tmpl *distributor.Template, stdin io.Reader) error {
	var r io.Reader
	name := "stdin"
	count := 0
	if f.argsFile != "-" {
		fh, err := os.Open(f.argsFile)
		if err != nil {
			return usagef("--args-file: %v", err)
		}
		s.closers = append(s.closers, fh.Close)
		if count, err = distributor.CountLines(fh, f.argsFile); err != nil {
			s.close()
			return usageError{err}
		}
		if _, err := fh.Seek(0, io.SeekStart); err != nil {
			s.close()
			return err
		}
		r, name, s.total = fh, f.argsFile, count
	} else {
		if tmpl.UsesCount() {
			return usagef("run: {shards} is unknown when jobs stream from stdin")
		}
		if stdin == nil {
			return usagef("--args-file -: no stdin")
		}
		s.save = &inputCopy{}
		r = io.TeeReader(stdin, s.save)
	}
	lr := distributor.NewLineReader(r, name)
	n := 0
	s.next = func() (distributor.JobSpec, bool, error) {
		line, _, err := lr.Next()
		if err == io.EOF {
			return distributor.JobSpec{}, false, s.save.complete()
		}
		if err != nil {
			return distributor.JobSpec{}, false, err
		}
		n++
		return s.spec(n, count, distributor.Columns(line, f.colsepRE), line), true, nil
	}
	return nil
}

// openSources makes the jobs of the input sources given with ::: and
// ::::, every combination in GNU parallel's order.
func (s *jobSource) openSources(f *runFlags, stdin io.Reader) error {
	if err := readSources(f.sources, stdin); err != nil {
		return err
	}
	c, err := newCombinations(f.sources)
	if err != nil {
		return err
	}
	s.total = c.total
	n := 0
	s.next = func() (distributor.JobSpec, bool, error) {
		if n == c.total {
			return distributor.JobSpec{}, false, nil
		}
		n++
		vals := c.values(n - 1)
		return s.spec(n, c.total, columns(vals, f.colsepRE), strings.Join(vals, " ")), true, nil
	}
	return nil
}

// spec is job n of count (0: unknown), made from cols; input is what is
// recorded as its input.
func (s *jobSource) spec(n, count int, cols []string, input string) distributor.JobSpec {
	js := distributor.JobSpec{Shard: n - 1, Shards: count, Input: input}
	if s.transfer {
		// Each column is a local file, put in the job's directory under
		// its base name, which the template then sees.
		js.Transfer = cols
		cols = make([]string, len(js.Transfer))
		for i, p := range js.Transfer {
			cols[i] = filepath.Base(p)
		}
	}
	if s.returns != nil {
		js.Return = s.returns.Expand(n, count, cols)
	}
	if s.shell {
		js.Shell = s.tmpl.ExpandShell(n, count, cols)
	} else {
		js.Args = s.tmpl.Expand(n, count, cols)
	}
	return js
}

func (s *jobSource) close() {
	for _, c := range s.closers {
		c()
	}
	s.save.close()
}

// inputCopy writes what is read from stdin to <run dir>/input.part, and
// renames it to input when stdin ends, so that a resume after Ctrl-C or a
// crash needs no stdin. Each write reaches the file (the page cache)
// before the line it holds can become a job, so a master killed at any
// point has saved every job it submitted.
type inputCopy struct {
	f   *os.File
	dir records.RunDir
	err error
}

// start creates the copy in dir (the run directory, known once the run
// has started; nothing is read from stdin before that).
func (c *inputCopy) start(dir string) error {
	if c == nil {
		return nil
	}
	c.dir = records.RunDir(dir)
	f, err := os.OpenFile(c.dir.InputPart(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	c.f = f
	return err
}

func (c *inputCopy) Write(p []byte) (int, error) {
	if c.f != nil && c.err == nil {
		if _, err := c.f.Write(p); err != nil {
			c.err = fmt.Errorf("save stdin in the run directory: %w", err)
		}
	}
	return len(p), c.err
}

// complete marks the copy whole: stdin has ended.
func (c *inputCopy) complete() error {
	if c == nil || c.f == nil {
		return nil
	}
	err := errors.Join(c.err, c.f.Sync(), c.f.Close())
	c.f = nil
	if err == nil {
		err = os.Rename(c.dir.InputPart(), c.dir.Input())
	}
	return err
}

func (c *inputCopy) close() {
	if c != nil && c.f != nil {
		c.f.Close()
	}
}
