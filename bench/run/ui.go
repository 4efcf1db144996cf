package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsub-dev/dsub/distributor/runsynth"
	"github.com/dsub-dev/dsub/internal/browser"
)

// ui: 5. the monitor's cost to the master on the tiny-jobs benchmark
// (agent mode): dsub's own CPU without --ui, with --ui and nobody
// watching, and with --ui and headless Chromium showing the page, in
// interleaved rounds. Target: <= 1% more CPU.
func (b *bench) ui(ctx context.Context) error {
	path, err := browser.Path()
	if err != nil {
		return err
	}
	cmds := b.echoJobs()
	bctx, cancel := browser.Start(ctx, path, 1280, 900)
	defer cancel()
	if err := chromedp.Run(bctx); err != nil {
		return fmt.Errorf("chromium: %w", err)
	}
	// A stream reader is a page that costs nothing to draw: against
	// Chromium, it tells the monitor's own cost from the browser's, which
	// shares the two cores (and slows whatever runs beside it).
	modes := []string{"no --ui", "--ui, no page", "--ui + stream reader", "--ui + Chromium"}
	cpu := map[string][]time.Duration{}
	wall := map[string][]time.Duration{}
	var chromium []time.Duration // the browser's own CPU per run
	for r := 0; r < b.rounds; r++ {
		// Each round in another order: the first run of a round was seen
		// to cost more (by ~30%), whatever its mode.
		for i := range modes {
			mode := modes[(i+r)%len(modes)]
			before := treeCPU(browserPID(bctx))
			c, w, err := b.uiRound(bctx, cmds, mode)
			if err != nil {
				return fmt.Errorf("%s: %w", mode, err)
			}
			if mode == "--ui + Chromium" {
				chromium = append(chromium, treeCPU(browserPID(bctx))-before)
			}
			cpu[mode], wall[mode] = append(cpu[mode], c), append(wall[mode], w)
			fmt.Fprintf(os.Stderr, "ui round %d %s: cpu %s wall %s\n", r+1, mode, c, w)
		}
	}
	fmt.Printf("\n5. --ui: the master's CPU on %d tiny jobs, agent mode (%d rounds, medians)\n", b.jobs, b.rounds)
	base := cpu[modes[0]]
	for _, mode := range modes {
		// The machine drifts between rounds more than the monitor costs:
		// each round's ratio to its own round without --ui, then their
		// median.
		var ratios []float64
		for i, c := range cpu[mode] {
			ratios = append(ratios, c.Seconds()/base[i].Seconds())
		}
		slices.Sort(ratios)
		fmt.Printf("   %-18s CPU %6.3fs  paired median %+5.1f%% (rounds from %+.0f%% to %+.0f%%)  wall %6.2fs\n", mode, med(cpu[mode]).Seconds(),
			100*(ratios[len(ratios)/2]-1), 100*(ratios[0]-1), 100*(ratios[len(ratios)-1]-1), med(wall[mode]).Seconds())
	}
	fmt.Printf("   Chromium's own CPU while it showed the page: %.3fs a run (median), on the same two cores\n", med(chromium).Seconds())
	return b.uiProfile(bctx, cmds)
}

// browserPID is the headless Chromium's process (0 if unknown).
func browserPID(bctx context.Context) int {
	if c := chromedp.FromContext(bctx); c != nil && c.Browser != nil && c.Browser.Process() != nil {
		return c.Browser.Process().Pid
	}
	return 0
}

// treeCPU is the user + system CPU so far of pid and every process
// below it (Chromium's renderers and helpers), from /proc.
func treeCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	type proc struct {
		ppid int
		cpu  time.Duration
	}
	procs := map[int]proc{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// After "(comm)": state ppid ... utime (14th field) stime (15th).
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.Atoi(f[11])
		st, _ := strconv.Atoi(f[12])
		procs[p] = proc{ppid, time.Duration(ut+st) * time.Second / 100} // USER_HZ
	}
	var total time.Duration
	for p, pr := range procs {
		for q := p; q > 1; q = procs[q].ppid {
			if q == pid {
				total += pr.cpu
				break
			}
			if _, ok := procs[q]; !ok {
				break
			}
		}
	}
	return total
}

// uiProfile runs again with --ui and Chromium under dsub's CPU profile
// (DSUB_CPUPROFILE) and prints the share of the master's CPU samples
// spent serving the page and taking the run's events: the stacks through
// dsub's monitor package or Go's HTTP server.
func (b *bench) uiProfile(bctx context.Context, cmds string) error {
	// At Go's 100 Hz a run gives ~100 samples and the monitor a few of
	// them: as many runs as rounds, at least 3, or -ui-profiles. (A higher rate loses most
	// samples here: at 1 kHz a profile held 16% of the process's CPU
	// time, at 100 Hz 69%.)
	args := []string{"tool", "pprof", "-top", "-cum", "-focus", `dsub/monitor\.|net/http\.`, b.dsub}
	runs := max(3, b.rounds)
	if b.uiProfiles > 0 {
		runs = b.uiProfiles
	}
	for i := 0; i < runs; i++ {
		prof := filepath.Join(b.tmp, fmt.Sprintf("ui%d.pprof", i))
		os.Setenv("DSUB_CPUPROFILE", prof)
		_, _, err := b.uiRound(bctx, cmds, "--ui + Chromium")
		os.Unsetenv("DSUB_CPUPROFILE")
		if err != nil {
			return err
		}
		args = append(args, prof)
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pprof: %v: %s", err, out)
	}
	fmt.Fprintf(os.Stderr, "%s\n", out) // where the samples went
	if m := regexp.MustCompile(`Showing nodes accounting for (\S+), (\S+) of (\S+) total`).FindStringSubmatch(string(out)); m != nil {
		fmt.Printf("   %d profiled runs with Chromium attached: the monitor (events, page, stream) took %s of the master's %s CPU samples: %s\n", runs, m[1], m[3], m[2])
	} else {
		fmt.Printf("   profiled run: no samples in the monitor\n%s", out)
	}
	return nil
}

// uiRound runs the tiny jobs once and returns dsub's own CPU time (user +
// system: it starts no local process) and wall time.
func (b *bench) uiRound(bctx context.Context, cmds, mode string) (cpu, wall time.Duration, err error) {
	args := []string{"run", "--hosts", b.hostsSlots, "--ssh-config", "none", "--logs", b.logs, "--commands", cmds, "--reduce", "count", "--launch", "agent"}
	if mode != "no --ui" {
		args = append(args, "--ui")
	}
	cmd := exec.Command(b.dsub, args...)
	stderr, _ := cmd.StderrPipe()
	var out strings.Builder
	cmd.Stdout = &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	re := regexp.MustCompile(`^dsub: monitor: (http://\S+)`)
	sc := bufio.NewScanner(stderr)
	var tail []string
	for sc.Scan() {
		tail = append(tail, sc.Text())
		if m := re.FindStringSubmatch(sc.Text()); m != nil && mode == "--ui + stream reader" {
			go readStream(m[1] + "api/events")
		}
		if m := re.FindStringSubmatch(sc.Text()); m != nil && mode == "--ui + Chromium" {
			// The page follows the run from now until it ends.
			if err := chromedp.Run(bctx, chromedp.Navigate(m[1])); err != nil {
				return 0, 0, err
			}
		}
	}
	_, _ = io.Copy(io.Discard, stderr)
	err = cmd.Wait()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%v: %s", err, strings.Join(tail[max(0, len(tail)-5):], "\n"))
	}
	if strings.TrimSpace(out.String()) != strconv.Itoa(b.jobs) {
		return 0, 0, fmt.Errorf("count %q", out.String())
	}
	st := cmd.ProcessState
	return st.UserTime() + st.SystemTime(), wall, nil
}

// report: 6. a 100,000-job run's report: how long dsub report takes, its
// size, and how long Chromium takes to render it (navigation start to
// the end of the page's first render, performance.now()). Target < 2 s.
func (b *bench) report(ctx context.Context) error {
	path, err := browser.Path()
	if err != nil {
		return err
	}
	dir, _ := filepath.Abs(filepath.Join(b.logs, "synthetic-100k"))
	if err := runsynth.Write(dir, 100_000, 16, 4, 997); err != nil {
		return err
	}
	out := filepath.Join(dir, "report.html")
	start := time.Now()
	if o, err := exec.Command(b.dsub, "report", dir, "-o", out).CombinedOutput(); err != nil {
		return fmt.Errorf("dsub report: %v: %s", err, o)
	}
	gen := time.Since(start)
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	var renders []float64
	for r := 0; r < max(b.rounds, 3); r++ {
		bctx, cancel := browser.Start(ctx, path, 1280, 900) // a cold browser each time
		var ms string
		err := chromedp.Run(bctx, chromedp.Navigate("file://"+out),
			chromedp.WaitVisible(`body[data-ready="1"]`, chromedp.ByQuery),
			chromedp.Evaluate(`document.body.dataset.renderMs`, &ms))
		cancel()
		if err != nil {
			return err
		}
		v, _ := strconv.ParseFloat(ms, 64)
		renders = append(renders, v)
	}
	slices.Sort(renders)
	fmt.Printf("\n6. report of 100,000 jobs: dsub report %.2fs, %d KiB; rendered in Chromium in %.0f ms (median of %d cold loads: %v)\n",
		gen.Seconds(), fi.Size()>>10, renders[len(renders)/2], len(renders), renders)
	return nil
}

func med(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// readStream reads the page's event stream to its end, as a page that
// draws nothing would.
func readStream(url string) {
	resp, err := http.Get(url)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
}
