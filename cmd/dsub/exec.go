package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/internal/hostrange"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/remote"
)

func newExecCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var (
		timeout time.Duration
		group   bool
		asJSON  bool
		outDir  string
		noStdin bool
		maxStat bool
	)
	c := &cobra.Command{
		Use:   "exec [flags] [--] CMD [ARG...]",
		Short: "Run a command on every selected host at once",
		Long: `Run a command on every selected host at once.

One word after -- is a command line for the remote shell, so pipes, globs
and variables work:
    dsub exec -- 'df -h | grep sda'
Two or more words are an argv that reaches the remote program byte for
byte, whatever characters the arguments hold:
    dsub exec -- printf '[%s]' 'a b' '$(x)'      prints [a b][$(x)]

Input: when dsub's stdin is not a terminal, every host's command reads
all of it, byte for byte, as it comes (a pipe is spooled to a temporary
file as it arrives, so memory stays flat and no host waits for another);
--no-stdin gives the commands no input.
    tar cz conf/ | dsub exec -w 'node[01-16]' -- 'tar xz -C /etc/app'

Output: every stdout line is printed whole as "host: line", however long;
stderr lines likewise go to stderr. Lines from different hosts never tear
or interleave.
  --group   print each distinct output once, under the folded host range
  --json    one JSON object per host: host, exit, duration_ms, error,
            stdout and stderr (stdout_base64, stderr_base64 when not UTF-8)
  --out DIR write DIR/<host>.out and DIR/<host>.err instead
A summary line (ok, failed, unreachable) ends the run on stderr.
With -S the exit status is instead the largest remote one, as pdsh -S's.` + exitHelp,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("exec needs a command: dsub exec [flags] -- CMD [ARG...]")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if group && asJSON || group && outDir != "" || asJSON && outDir != "" {
				return usagef("--group, --json and --out are alternatives: pick one")
			}
			if timeout < 0 {
				return usagef("--timeout %s: must be positive (0: no limit)", timeout)
			}
			rc := remote.Cmd{}
			if len(args) == 1 {
				rc.Shell = args[0]
			} else {
				rc.Argv = args
			}
			if _, err := remote.CommandLine(&rc); err != nil {
				return usageError{err}
			}
			cl, err := hf.cluster(stderr)
			if err != nil {
				return err
			}
			defer cl.Close()
			if outDir != "" {
				if err := os.MkdirAll(outDir, 0o700); err != nil {
					return usagef("--out: %v", err)
				}
			}
			var in *sharedInput
			if !noStdin {
				if in, err = shareInput(stdin); err != nil {
					return err
				}
				defer in.Close()
			}
			out := newExecOutput(execMode{group: group, json: asJSON, outDir: outDir, maxStatus: maxStat}, in, stdout, stderr)
			return out.run(cmd.Context(), cl, rc, timeout)
		},
	}
	hf.register(c)
	fl := c.Flags()
	fl.SetInterspersed(false) // `dsub exec uname -a`: -a belongs to uname
	fl.DurationVar(&timeout, "timeout", 0, "per-host limit on connect + run; the remote process group is killed when it passes")
	fl.BoolVar(&group, "group", false, "group hosts with identical output (like dshbak -c / clush -b)")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per host")
	fl.StringVar(&outDir, "out", "", "write each host's stdout/stderr to DIR/<host>.out and .err")
	fl.BoolVar(&noStdin, "no-stdin", false, "do not forward dsub's stdin to the commands")
	fl.BoolVarP(&maxStat, "max-status", "S", false, "exit with the largest remote exit status, as pdsh -S (128+N for signal N; 255 for a host that did not run it, as ssh's)")
	return c
}

type execMode struct {
	group, json bool
	outDir      string
	maxStatus   bool // -S
}

// execOutput routes each host's output where the mode sends it: prefixed
// lines, spools for --group and --json (bounded memory), or files.
type execOutput struct {
	mode   execMode
	in     *sharedInput
	stdout io.Writer
	stderr io.Writer
	so, se *lockedWriter

	mu    sync.Mutex
	hosts map[string]*hostOutput
	errs  []error // local problems (an --out file, a full temp disk)
}

// hostOutput is what one host's output went to.
type hostOutput struct {
	out, err *spool
	flush    []func() error
	files    []*os.File
}

func newExecOutput(mode execMode, in *sharedInput, stdout, stderr io.Writer) *execOutput {
	return &execOutput{mode: mode, in: in, stdout: stdout, stderr: stderr,
		so: &lockedWriter{w: stdout}, se: &lockedWriter{w: stderr}, hosts: map[string]*hostOutput{}}
}

func (o *execOutput) run(ctx context.Context, cl *distributor.Cluster, rc remote.Cmd, timeout time.Duration) error {
	start := time.Now()
	res := cl.Exec(ctx, rc, timeout, o.writers)
	defer o.close()
	o.finish()
	if err := o.in.Err(); err != nil {
		o.errs = append(o.errs, err) // the commands got only part of it
	}
	ok, failed, unreachable := 0, 0, 0
	for _, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case distributor.Unreachable(r.Err):
			unreachable++
		default:
			failed++
		}
	}
	switch {
	case o.mode.json:
		for _, r := range res {
			o.writeJSON(r)
		}
	case o.mode.group:
		printGroups(o.stdout, res, func(h string) *spool { return o.hosts[h].out })
	}
	if !o.mode.json {
		for _, r := range res {
			var ee *remote.ExitError
			switch {
			case r.Err == nil:
			case errors.As(r.Err, &ee):
				fmt.Fprintf(o.stderr, "dsub: %s: %v\n", r.Host, ee)
			default:
				fmt.Fprintf(o.stderr, "dsub: %s\n", visible(r.Err.Error()))
			}
		}
	}
	for _, err := range o.errs {
		fmt.Fprintln(o.stderr, "dsub:", err)
	}
	fmt.Fprintf(o.stderr, "dsub exec: %d ok, %d failed, %d unreachable (%s, %.2fs)\n",
		ok, failed, unreachable, plural(len(res), "host"), time.Since(start).Seconds())
	if o.mode.maxStatus {
		if n := maxStatus(res); n > 0 {
			return statusError(n)
		}
	}
	if ok != len(res) || len(o.errs) > 0 {
		return errReported
	}
	return nil
}

// maxStatus is the largest remote exit status of res, as pdsh -S
// returns: 128+N for a command killed by signal N, and 255 for a host
// that did not run it (unreachable, lost, timed out), as ssh's.
func maxStatus(res []distributor.ExecResult) int {
	top := 0
	for _, r := range res {
		n := 0
		var ee *remote.ExitError
		switch {
		case r.Err == nil:
		case errors.As(r.Err, &ee) && ee.Signal != "":
			n = 255
			if sig, ok := remote.SignalNumber(ee.Signal); ok {
				n = 128 + sig
			}
		case errors.As(r.Err, &ee):
			n = ee.Status
		default:
			n = 255
		}
		top = max(top, n)
	}
	return top
}

// writers gives one host its stdin, stdout and stderr.
func (o *execOutput) writers(host string) (io.Reader, io.Writer, io.Writer) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := &hostOutput{}
	o.hosts[host] = h
	in := o.in.Reader()
	switch {
	case o.mode.json:
		h.out, h.err = newSpool(), newSpool()
		return in, h.out, h.err
	case o.mode.group:
		h.out = newSpool()
		p := &linePrefixer{w: o.se, prefix: host + ": "}
		h.flush = append(h.flush, p.Flush)
		return in, h.out, p
	case o.mode.outDir != "":
		name := inventory.DirName(host)
		fo, err1 := os.OpenFile(filepath.Join(o.mode.outDir, name+".out"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		fe, err2 := os.OpenFile(filepath.Join(o.mode.outDir, name+".err"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err := errors.Join(err1, err2); err != nil {
			o.errs = append(o.errs, fmt.Errorf("--out for %s: %w", host, err))
			return in, io.Discard, io.Discard
		}
		h.files = append(h.files, fo, fe)
		return in, fo, fe
	}
	po := &linePrefixer{w: o.so, prefix: host + ": "}
	pe := &linePrefixer{w: o.se, prefix: host + ": "}
	h.flush = append(h.flush, po.Flush, pe.Flush)
	return in, po, pe
}

// finish flushes unterminated lines and closes --out files.
func (o *execOutput) finish() {
	for host, h := range o.hosts {
		for _, f := range h.flush {
			if err := f(); err != nil {
				o.errs = append(o.errs, fmt.Errorf("output of %s: %w", host, err))
			}
		}
		for _, f := range h.files {
			if err := f.Close(); err != nil {
				o.errs = append(o.errs, fmt.Errorf("--out for %s: %w", host, err))
			}
		}
		for _, s := range []*spool{h.out, h.err} {
			if s != nil && s.err != nil {
				o.errs = append(o.errs, fmt.Errorf("output of %s: %w", host, s.err))
			}
		}
	}
}

func (o *execOutput) close() {
	for _, h := range o.hosts {
		for _, s := range []*spool{h.out, h.err} {
			if s != nil {
				s.Close()
			}
		}
	}
}

// writeJSON writes one host's JSON object, streaming its outputs from
// their spools: text as a JSON string when it is UTF-8, else base64 in
// stdout_base64 / stderr_base64, never silently altered.
func (o *execOutput) writeJSON(r distributor.ExecResult) {
	msg := ""
	if r.Err != nil {
		msg = r.Err.Error()
	}
	head, _ := json.Marshal(struct {
		Host       string `json:"host"`
		Exit       int    `json:"exit"`
		DurationMS int64  `json:"duration_ms"`
		Error      string `json:"error"`
	}{r.Host, r.Exit, r.Duration.Milliseconds(), msg})
	w := bufio.NewWriter(o.stdout)
	w.Write(head[:len(head)-1])
	h := o.hosts[r.Host]
	for _, f := range []struct {
		name string
		s    *spool
	}{{"stdout", h.out}, {"stderr", h.err}} {
		if f.s.UTF8() {
			fmt.Fprintf(w, ",%q:", f.name)
			writeJSONString(w, f.s.Reader())
			continue
		}
		fmt.Fprintf(w, ",%q:\"", f.name+"_base64")
		enc := base64.NewEncoder(base64.StdEncoding, w)
		io.Copy(enc, f.s.Reader())
		enc.Close()
		w.WriteString(`"`)
	}
	w.WriteString("}\n")
	w.Flush()
}

// writeJSONString writes the UTF-8 text of r as one JSON string, in
// chunks, never splitting a character.
func writeJSONString(w *bufio.Writer, r io.Reader) {
	w.WriteByte('"')
	buf := make([]byte, 32<<10)
	var carry []byte
	for {
		n, err := r.Read(buf)
		b := append(carry, buf[:n]...)
		cut := completeUTF8(b)
		q, _ := json.Marshal(string(b[:cut]))
		w.Write(q[1 : len(q)-1])
		carry = append(carry[:0:0], b[cut:]...)
		if err != nil {
			break
		}
	}
	w.WriteByte('"')
}

// printGroups prints each distinct (output, exit) once under its folded
// host range, largest group first, like dshbak -c.
func printGroups(w io.Writer, res []distributor.ExecResult, output func(string) *spool) {
	type group struct {
		hosts []string
		out   *spool
		exit  int
		first int
	}
	byKey := map[string]*group{}
	var groups []*group
	for i, r := range res {
		if distributor.Unreachable(r.Err) {
			continue
		}
		out := output(r.Host)
		k := fmt.Sprintf("%d\x00%s", r.Exit, out.Sum())
		g := byKey[k]
		if g == nil {
			g = &group{out: out, exit: r.Exit, first: i}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.hosts = append(g.hosts, r.Host)
	}
	sort.SliceStable(groups, func(a, b int) bool { return len(groups[a].hosts) > len(groups[b].hosts) })
	for _, g := range groups {
		title := fmt.Sprintf("%s (%d)", hostrange.Fold(g.hosts), len(g.hosts))
		if g.exit != 0 {
			title += fmt.Sprintf(" exit %d", g.exit)
		}
		rule := strings.Repeat("-", min(max(len(title), 15), 78))
		fmt.Fprintf(w, "%s\n%s\n%s\n", rule, title, rule)
		last := &lastByte{w: w}
		io.Copy(last, g.out.Reader())
		if last.n > 0 && last.b != '\n' {
			io.WriteString(w, "\n")
		}
	}
}

// lastByte passes writes through and remembers the last byte written.
type lastByte struct {
	w io.Writer
	b byte
	n int64
}

func (l *lastByte) Write(p []byte) (int, error) {
	if len(p) > 0 {
		l.b = p[len(p)-1]
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}
