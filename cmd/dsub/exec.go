package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/internal/hostrange"
	"github.com/dsub-dev/dsub/remote"
)

func newExecCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var (
		timeout time.Duration
		group   bool
		asJSON  bool
		outDir  string
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

Output: every complete stdout line is printed as "host: line"; stderr lines
likewise go to stderr. Lines from different hosts never tear or interleave.
  --group   print each distinct output once, under the folded host range
  --json    one JSON object per host: host, exit, stdout, stderr, duration_ms, error
  --out DIR write DIR/<host>.out and DIR/<host>.err instead
A summary line (ok, failed, unreachable) ends the run on stderr.` + exitHelp,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if group && asJSON || group && outDir != "" || asJSON && outDir != "" {
				return usagef("--group, --json and --out are alternatives: pick one")
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
				if err := os.MkdirAll(outDir, 0o755); err != nil {
					return usageError{err}
				}
			}
			return execRun(cmd, cl, rc, timeout, execMode{group: group, json: asJSON, outDir: outDir}, stdout, stderr)
		},
	}
	hf.register(c)
	fl := c.Flags()
	fl.SetInterspersed(false) // `dsub exec uname -a`: -a belongs to uname
	fl.DurationVar(&timeout, "timeout", 0, "per-host limit on connect + run; the remote process group is killed when it passes")
	fl.BoolVar(&group, "group", false, "group hosts with identical output (like dshbak -c / clush -b)")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per host")
	fl.StringVar(&outDir, "out", "", "write each host's stdout/stderr to DIR/<host>.out and .err")
	return c
}

type execMode struct {
	group, json bool
	outDir      string
}

func execRun(cmd *cobra.Command, cl *distributor.Cluster, rc remote.Cmd, timeout time.Duration, mode execMode, stdout, stderr io.Writer) error {
	start := time.Now()
	so, se := &lockedWriter{w: stdout}, &lockedWriter{w: stderr}
	type capture struct {
		out, err bytes.Buffer
		files    []*os.File
		flush    []func() error
	}
	caps := map[string]*capture{}
	for _, m := range cl.Members() {
		caps[m.Name()] = &capture{}
	}
	var openErr error
	outputs := func(host string) (io.Writer, io.Writer) {
		c := caps[host]
		switch {
		case mode.json:
			return &c.out, &c.err
		case mode.group:
			p := &linePrefixer{w: se, prefix: host + ": "}
			c.flush = append(c.flush, p.Flush)
			return &c.out, p
		case mode.outDir != "":
			name := strings.NewReplacer("/", "_", "\x00", "_").Replace(host)
			fo, err1 := os.Create(filepath.Join(mode.outDir, name+".out"))
			fe, err2 := os.Create(filepath.Join(mode.outDir, name+".err"))
			if err1 != nil || err2 != nil {
				openErr = fmt.Errorf("--out: %v %v", err1, err2)
				return io.Discard, io.Discard
			}
			c.files = append(c.files, fo, fe)
			return fo, fe
		}
		po := &linePrefixer{w: so, prefix: host + ": "}
		pe := &linePrefixer{w: se, prefix: host + ": "}
		c.flush = append(c.flush, po.Flush, pe.Flush)
		return po, pe
	}
	res := cl.Exec(cmd.Context(), rc, timeout, outputs)
	for _, c := range caps {
		for _, f := range c.flush {
			_ = f()
		}
		for _, f := range c.files {
			_ = f.Close()
		}
	}
	if openErr != nil {
		fmt.Fprintln(stderr, "dsub:", openErr)
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
	case mode.json:
		enc := json.NewEncoder(stdout)
		for _, r := range res {
			msg := ""
			if r.Err != nil {
				msg = r.Err.Error()
			}
			c := caps[r.Host]
			_ = enc.Encode(map[string]any{
				"host": r.Host, "exit": r.Exit, "stdout": c.out.String(), "stderr": c.err.String(),
				"duration_ms": r.Duration.Milliseconds(), "error": msg,
			})
		}
	case mode.group:
		printGroups(stdout, res, func(h string) string { return caps[h].out.String() })
	}
	if !mode.json {
		for _, r := range res {
			var ee *remote.ExitError
			switch {
			case r.Err == nil:
			case errors.As(r.Err, &ee):
				fmt.Fprintf(stderr, "dsub: %s: %v\n", r.Host, ee)
			default:
				fmt.Fprintf(stderr, "dsub: %v\n", r.Err)
			}
		}
	}
	fmt.Fprintf(stderr, "dsub exec: %d ok, %d failed, %d unreachable (%d hosts, %.2fs)\n",
		ok, failed, unreachable, len(res), time.Since(start).Seconds())
	if ok != len(res) {
		return errReported
	}
	return nil
}

// printGroups prints each distinct (output, exit) once under its folded
// host range, largest group first, like dshbak -c.
func printGroups(w io.Writer, res []distributor.ExecResult, output func(string) string) {
	type group struct {
		hosts []string
		out   string
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
		k := fmt.Sprintf("%d\x00%s", r.Exit, out)
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
		io.WriteString(w, g.out)
		if g.out != "" && !strings.HasSuffix(g.out, "\n") {
			io.WriteString(w, "\n")
		}
	}
}
