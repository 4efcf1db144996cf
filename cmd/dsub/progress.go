package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/dsub-dev/dsub/distributor"
)

// terminal returns w as a terminal whose size is known, or nil: on a
// terminal of no known size (a fresh pty, some CI runners) live bars
// cannot be drawn, and the plain progress line is printed instead.
func terminal(w io.Writer) *os.File {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 0 {
			return f
		}
	}
	return nil
}

// showProgress displays a run's progress until stop is called: on a
// terminal (term), a live overall bar with ETA and one line per host, with
// messages written to msgs meanwhile shown above the bars; elsewhere, a
// plain line on msgs every interval.
func showProgress(run *distributor.Run, msgs *lockedWriter, term *os.File, interval time.Duration) (stop func()) {
	if term != nil {
		return mpbProgress(run, msgs, term)
	}
	w := msgs
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(w, "dsub:", summaryLine(run.Snapshot()))
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func summaryLine(s distributor.Snapshot) string {
	total := fmt.Sprint(s.Jobs)
	if !s.AllKnown {
		total += "+"
	}
	line := fmt.Sprintf("%d/%s jobs done, %d failed, %d running, %s elapsed", s.Succeeded, total, s.Failed, s.Running, s.Elapsed.Round(time.Second))
	if s.Queued > 0 {
		line = strings.Replace(line, " running,", fmt.Sprintf(" running, %d queued at hosts,", s.Queued), 1)
	}
	if eta, ok := estimate(s); ok {
		line += ", eta " + eta.Round(time.Second).String()
	}
	return line
}

// estimate projects the remaining time from the rate so far.
func estimate(s distributor.Snapshot) (time.Duration, bool) {
	finished := s.Succeeded + s.Failed
	if !s.AllKnown || finished == 0 || finished >= s.Jobs {
		return 0, false
	}
	per := s.Elapsed / time.Duration(finished)
	return per * time.Duration(s.Jobs-finished), true
}

func mpbProgress(run *distributor.Run, msgs *lockedWriter, term *os.File) func() {
	p := mpb.New(mpb.WithOutput(term), mpb.WithAutoRefresh(), mpb.WithWidth(30), mpb.WithRefreshRate(150*time.Millisecond))
	// Warnings and failures printed during the run go above the bars.
	msgs.swap(p)
	var mu sync.Mutex
	snap := run.Snapshot()
	get := func() distributor.Snapshot { mu.Lock(); defer mu.Unlock(); return snap }
	// Totals are dynamic (0 at construction): mpb honours SetTotal, and
	// completion, only for such bars.
	overall := p.New(0, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string {
			s := get()
			return fmt.Sprintf("%-12s %d/%d", "jobs", s.Succeeded+s.Failed, s.Jobs)
		})),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
			s := get()
			out := fmt.Sprintf(" %d running, %d queued, %d failed, %s", s.Running, s.Queued, s.Failed, s.Elapsed.Round(time.Second))
			if eta, ok := estimate(s); ok {
				out += ", eta " + eta.Round(time.Second).String()
			}
			return out
		})))
	bars := map[string]*mpb.Bar{}
	hostBar := func(name string) *mpb.Bar {
		b := p.New(0, mpb.BarStyle().Lbound("[").Rbound("]").Filler("-").Tip("-").Padding(" "),
			mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return fmt.Sprintf("  %-10s", name) })),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				for _, h := range get().Hosts {
					if h.Name == name {
						return fmt.Sprintf(" %-11s running %d, queued %d, done %d, failed %d", h.State, h.Running, h.Queued, h.Done, h.Failed)
					}
				}
				return ""
			})))
		b.SetTotal(1000, false)
		return b
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	update := func() {
		s := run.Snapshot()
		mu.Lock()
		snap = s
		mu.Unlock()
		overall.SetTotal(int64(max(s.Jobs, 1)), false)
		overall.SetCurrent(int64(s.Succeeded + s.Failed))
		for _, h := range s.Hosts {
			b := bars[h.Name]
			if b == nil {
				b = hostBar(h.Name)
				bars[h.Name] = b
			}
			b.SetCurrent(int64(h.Progress * 1000))
		}
	}
	go func() {
		defer wg.Done()
		t := time.NewTicker(150 * time.Millisecond)
		defer t.Stop()
		for {
			update()
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		update()
		overall.SetTotal(-1, true)
		for _, b := range bars {
			b.SetTotal(-1, true)
		}
		p.Wait()
		msgs.swap(term)
	}
}

// failureReport describes a job that failed for good.
// log is the command that prints its output, if any.
func failureReport(r distributor.Result, log string) string {
	var b strings.Builder
	host := r.Host
	if host == "" {
		host = "no host"
	}
	fmt.Fprintf(&b, "job %d failed on %s", r.Job, host)
	if r.Exit > 0 {
		fmt.Fprintf(&b, " (exit %d)", r.Exit)
	}
	fmt.Fprintf(&b, ": %s", visible(fmt.Sprint(r.Err)))
	if r.StderrTail != "" {
		b.WriteString("\n    stderr: " + strings.ReplaceAll(visible(r.StderrTail), "\n", "\n            "))
	}
	if log != "" && !r.Output.IsZero() {
		fmt.Fprintf(&b, "\n    output: %s", log)
	}
	return b.String()
}
