// Package benchutil holds what dsub's side-by-side benchmarks share:
// timing commands repeatedly, and reporting medians and ratios.
package benchutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Tool is one contender: a command line, and a check of its output.
type Tool struct {
	Name   string
	Argv   []string
	Env    []string                  // extra environment
	Check  func(stdout string) error // nil: exit status only
	Setup  func() error              // run once before timing, untimed (e.g. warm a ControlMaster)
	Before func() error              // run before every timed round, untimed (e.g. clear a cache)
}

// Result is a tool's timings.
type Result struct {
	Tool    string
	Runs    []time.Duration
	CPU     []time.Duration // user + system CPU of each run (the tool and the children it waited for)
	MaxRSS  int64           // KiB, the largest over runs
	Err     error
	Skipped string
}

// Median of the runs.
func (r Result) Median() time.Duration { return median(r.Runs) }

// MedianCPU is the median of the runs' CPU times (0 where not measured).
func (r Result) MedianCPU() time.Duration { return median(r.CPU) }

func median(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// Run times each tool rounds times, interleaving the tools round by round
// so that drift in machine load affects all alike.
func Run(ctx context.Context, tools []Tool, rounds int, log io.Writer) []Result {
	res := make([]Result, len(tools))
	for i, t := range tools {
		res[i].Tool = t.Name
		if _, err := exec.LookPath(t.Argv[0]); err != nil {
			res[i].Skipped = "not installed: " + t.Argv[0]
			continue
		}
		if t.Setup != nil {
			if err := t.Setup(); err != nil {
				res[i].Err = fmt.Errorf("setup: %w", err)
			}
		}
	}
	for round := 0; round < rounds; round++ {
		for i, t := range tools {
			if res[i].Skipped != "" || res[i].Err != nil {
				continue
			}
			if t.Before != nil {
				if err := t.Before(); err != nil {
					res[i].Err = fmt.Errorf("before round: %w", err)
					continue
				}
			}
			m, err := timeOnce(ctx, t)
			res[i].MaxRSS = max(res[i].MaxRSS, m.rss)
			if err != nil {
				res[i].Err = err
				continue
			}
			res[i].Runs = append(res[i].Runs, m.wall)
			if m.cpu > 0 {
				res[i].CPU = append(res[i].CPU, m.cpu)
			}
			d := m.wall
			fmt.Fprintf(log, "round %d %-28s %8.3fs\n", round+1, t.Name, d.Seconds())
		}
	}
	return res
}

// measure is one timed run.
type measure struct {
	wall, cpu time.Duration
	rss       int64 // KiB
}

func timeOnce(ctx context.Context, t Tool) (measure, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	argv := t.Argv
	// Peak RSS through GNU time: rusage read by a Go parent (which starts
	// children with vfork) would include the parent's own memory.
	rssFile, _ := os.CreateTemp("", "dsub-bench-rss")
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	if _, err := os.Stat("/usr/bin/time"); err == nil {
		argv = append([]string{"/usr/bin/time", "-f", "%M %U %S", "-o", rssFile.Name()}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cmd.Environ(), t.Env...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	m := measure{wall: time.Since(start)}
	if b, err := os.ReadFile(rssFile.Name()); err == nil {
		m.rss, m.cpu = parseTime(string(b))
	}
	if err != nil {
		return m, fmt.Errorf("%s: %v: %s", t.Name, err, tail(errb.String()))
	}
	if t.Check != nil {
		if err := t.Check(out.String()); err != nil {
			return m, fmt.Errorf("%s: wrong output: %v", t.Name, err)
		}
	}
	return m, nil
}

// parseTime reads GNU time's "%M %U %S" line (the last: a first one may
// say the command failed).
func parseTime(s string) (rssKiB int64, cpu time.Duration) {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) != 3 {
		return 0, 0
	}
	rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
	u, _ := strconv.ParseFloat(f[1], 64)
	sy, _ := strconv.ParseFloat(f[2], 64)
	return rssKiB, time.Duration((u + sy) * float64(time.Second))
}

func tail(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 400 {
		s = "..." + s[len(s)-400:]
	}
	return s
}

// Report prints a table of medians and, for each tool, its time as a
// multiple of the reference tool's (ref's row is 1.00x).
func Report(w io.Writer, title, ref string, res []Result) {
	var refMed time.Duration
	for _, r := range res {
		if r.Tool == ref {
			refMed = r.Median()
		}
	}
	fmt.Fprintf(w, "\n%s\n", title)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "TOOL\tRUNS\tMEDIAN\tMIN\tMAX\tCPU\tMAX RSS\tTIME vs %s\n", ref)
	for _, r := range res {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tskipped: %s\n", r.Tool, r.Skipped)
			continue
		case r.Err != nil:
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\tFAILED: %v\n", r.Tool, r.Err)
			continue
		}
		mn, mx := r.Runs[0], r.Runs[0]
		for _, d := range r.Runs {
			mn, mx = min(mn, d), max(mx, d)
		}
		ratio := "-"
		if refMed > 0 {
			ratio = fmt.Sprintf("%.2fx", float64(r.Median())/float64(refMed))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3fs\t%.3fs\t%.3fs\t%.2fs\t%.1f MB\t%s\n", r.Tool, len(r.Runs), r.Median().Seconds(), mn.Seconds(), mx.Seconds(), r.MedianCPU().Seconds(), float64(r.MaxRSS)/1024, ratio)
	}
	tw.Flush()
}

// Fastest returns the result with the smallest median among names.
func Fastest(res []Result, names ...string) (Result, bool) {
	var best Result
	found := false
	for _, r := range res {
		for _, n := range names {
			if r.Tool == n && r.Err == nil && r.Skipped == "" && len(r.Runs) > 0 && (!found || r.Median() < best.Median()) {
				best, found = r, true
			}
		}
	}
	return best, found
}
