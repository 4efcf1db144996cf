package monitor

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/distributor/runsynth"
	"github.com/dsub-dev/dsub/internal/browser"
)

var screenshots = flag.String("screenshots", "", "write screenshots of the pages to this `directory` (docs/img)")

// shoot saves a screenshot of the page as name, if asked to.
func shoot(t *testing.T, ctx ctxT, name string) {
	t.Helper()
	if *screenshots == "" {
		return
	}
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(*screenshots, name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// eval evaluates js in the page.
func eval[T any](t *testing.T, ctx ctxT, js string) T {
	t.Helper()
	var v T
	if err := chromedp.Run(ctx, chromedp.Evaluate(js, &v)); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// A report opened from its file, offline, in Chromium, shows the run:
// host rows, counts, the timeline's bars, the failure with its stderr,
// and the histogram.
func TestReportInBrowser(t *testing.T) {
	ctx := browser.New(t, 1280, 1000)
	f := startFakeRun(t, 12)
	f.releaseAll(t)
	f.wait(t)
	out := filepath.Join(t.TempDir(), "report.html")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(w, f.dir); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := chromedp.Run(ctx, chromedp.Navigate("file://"+out)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.body.dataset.ready === "1"`, 10*time.Second)
	for js, want := range map[string]string{
		`document.querySelectorAll("#hosts tbody tr").length`:           "2",
		`document.getElementById("succeeded").textContent`:              "11",
		`document.getElementById("failed").textContent`:                 "1",
		`document.getElementById("jobs").textContent`:                   "12",
		`document.querySelectorAll("#timeline rect.seg").length`:        "12",
		`document.querySelectorAll("#timeline rect.seg.k-fail").length`: "1",
		// Each host's preparing span, named, before its first job.
		`document.querySelectorAll("#timeline rect.k-prep").length`:                                 "2",
		`document.querySelector("#timeline rect.k-prep title").textContent.startsWith("preparing")`: "true",
		`document.querySelectorAll(".failure").length`:                                              "1",
		`document.querySelector(".failure pre").textContent.trim()`:                                 "boom: job 3 cannot",
		`document.getElementById("result").textContent`:                                             "",
		`document.getElementById("hist-section").hidden`:                                            "false",
		// The histogram has a count axis: 0 and its top count, in jobs.
		`[...document.querySelectorAll("#histogram text.count")].map((t) => t.textContent).join("|").startsWith("0|")`: "true",
		`[...document.querySelectorAll("#histogram text.count")].pop().textContent.endsWith(" jobs")`:                  "true",
		`document.querySelectorAll("#stragglers tbody tr").length`:                                                     "10",
		`document.querySelector('#hosts tr[data-host="f01"]') !== null`:                                                "true",
		// jobs/s over the run, and the load and free memory f01's agent
		// last reported (f02 reported none: "–").
		`document.getElementById("rate").textContent !== "–"`:                                  "true",
		`document.querySelector('#hosts tr[data-host="f01"]').textContent.includes("1.50")`:    "true",
		`document.querySelector('#hosts tr[data-host="f01"]').textContent.includes("3.0 GiB")`: "true",
	} {
		if got := evalString(t, ctx, js); got != want {
			t.Errorf("%s = %q, want %q", js, got, want)
		}
	}
	// Hovering a bar tells its job.
	if err := chromedp.Run(ctx, chromedp.Evaluate(`(() => { const r = document.querySelector("#timeline rect.seg.k-fail"); const b = r.getBoundingClientRect();
		r.dispatchEvent(new MouseEvent("mousemove", {bubbles: true, clientX: b.x + 1, clientY: b.y + 1})); return true })()`, nil)); err != nil {
		t.Fatal(err)
	}
	if tip := evalString(t, ctx, `document.getElementById("tip").textContent`); !strings.Contains(tip, "job 3") || !strings.Contains(tip, "boom") {
		t.Errorf("tooltip of the failed bar: %q", tip)
	}
	shoot(t, ctx, "report.png")
}

// A 100,000-job run's report: one file that renders its summary and a
// downsampled timeline. (Its render time is a benchmark: bench/report.)
func TestLargeReportInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 jobs")
	}
	ctx := browser.New(t, 1280, 1000)
	dir := t.TempDir()
	if err := runsynth.Write(dir, 100_000, 16, 4, 997); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "report.html")
	w, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteReport(w, dir); err != nil {
		t.Fatal(err)
	}
	w.Close()
	fi, _ := os.Stat(out)
	if err := chromedp.Run(ctx, chromedp.Navigate("file://"+out)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.body.dataset.ready === "1"`, 30*time.Second)
	bars := eval[float64](t, ctx, `document.querySelectorAll("#timeline rect.seg").length`)
	if jobs := evalString(t, ctx, `document.getElementById("jobs").textContent`); jobs != "100000" || bars > maxEnded || bars < 64 {
		t.Errorf("jobs %q, %v bars: want 100000 jobs drawn in at most %d bars", jobs, bars, maxEnded)
	}
	t.Logf("report of 100,000 jobs: %d KiB, %v bars, rendered %s ms after navigation", fi.Size()>>10, bars,
		evalString(t, ctx, `document.body.dataset.renderMs`))
}

// evalString evaluates js and gives its value as a string.
func evalString(t *testing.T, ctx ctxT, js string) string {
	t.Helper()
	return eval[string](t, ctx, "String("+js+")")
}

type ctxT = context.Context

// A live page draws the timeline in place, each second adding the new
// bars: it holds exactly the model's bars, once each, before the bars
// are merged (past maxEnded), after, and after more are added to the
// merged timeline.
func TestLiveTimelineInBrowser(t *testing.T) {
	ctx := browser.New(t, 1280, 1000)
	m := NewModel("dsub run live-timeline")
	srv, err := Serve(m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// The bars are 100 s on (a clock ahead of the page's), so that the
	// timeline's scale stays within 10% and is not itself a reason to
	// draw it afresh.
	seq := 0
	add := func(n int) {
		for i := 0; i < n; i++ {
			seq++
			e := distributor.Event{Seq: seq, Job: seq, Host: fmt.Sprintf("h%d", seq%4), Time: m.start.Add(100*time.Second + time.Duration(seq)*time.Millisecond), Command: "true"}
			e.Kind = distributor.Started
			m.Event(e)
			e.Kind, e.Outcome, e.Duration, e.Time = distributor.Ended, "recorded", time.Millisecond, e.Time.Add(time.Millisecond)
			m.Event(e)
		}
	}
	for i := 1; i <= 3; i++ { // running all along
		m.Event(distributor.Event{Kind: distributor.Started, Seq: -i, Job: 100000 + i, Host: "h1", Time: m.start, Command: "sleep"})
	}
	// same waits until the page holds the model's bars, then checks that
	// it holds each once.
	same := func(phase string) {
		t.Helper()
		st := m.State(-1, -1)
		want := len(st.Timeline.Ended)
		browser.WaitFor(t, ctx, fmt.Sprintf(`document.querySelectorAll("#timeline rect.seg:not(.k-run)").length === %d && document.querySelectorAll("#timeline rect.seg.k-run").length === 3`, want), 30*time.Second)
		ids := eval[[]float64](t, ctx, `[...document.querySelectorAll("#timeline rect.seg:not(.k-run)")].map((r) => Number(r.dataset.id)).sort((a, b) => a - b)`)
		for i, s := range st.Timeline.Ended {
			if int(ids[i]) != s.ID {
				t.Fatalf("%s: the page's bar %d is ID %v, the model's %d", phase, i, ids[i], s.ID)
			}
		}
		t.Logf("%s: %d bars (epoch %d)", phase, want, st.Timeline.Epoch)
	}
	add(2000)
	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL())); err != nil {
		t.Fatal(err)
	}
	same("first")
	add(500)
	same("added")
	epoch := m.State(-1, -1).Timeline.Epoch
	add(maxEnded)
	if e := m.State(-1, -1).Timeline.Epoch; e == epoch {
		t.Fatalf("epoch %d: the bars were not merged", e)
	}
	same("merged")
	add(10)
	same("added after merging")
}

// The header shows a long command shortened to its first 200 characters,
// the whole of it on a click; a run that ended with a failed job shows
// what its successes reduce to as that, never as its result.
func TestPageCommandAndPartialResult(t *testing.T) {
	ctx := browser.New(t, 1280, 1000)
	long := "dsub run -- echo ::: " + strings.Repeat("12345 ", 400)
	m := NewModel(long)
	srv, err := Serve(m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL())); err != nil {
		t.Fatal(err)
	}
	cmdText := `document.getElementById("command").textContent`
	browser.WaitFor(t, ctx, cmdText+`.length > 0`, 10*time.Second)
	if got := evalString(t, ctx, cmdText); len(got) > 260 || !strings.HasPrefix(got, long[:200]) || !strings.Contains(got, "click for all") {
		t.Errorf("header command: %d characters %q, want the first 200 and a note", len(got), got[:min(len(got), 300)])
	}
	if err := chromedp.Run(ctx, chromedp.Click("#command", chromedp.ByID)); err != nil {
		t.Fatal(err)
	}
	if got := evalString(t, ctx, cmdText); got != long {
		t.Errorf("after a click: %d characters, want the whole command's %d", len(got), len(long))
	}

	f := startFakeRun(t, 12) // job 3 fails
	srv2, err := Serve(f.m, ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv2.Close()
	f.releaseAll(t)
	f.wait(t)
	if err := chromedp.Run(ctx, chromedp.Navigate(srv2.URL())); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.getElementById("status").textContent === "ended" || document.getElementById("status").textContent === "finished with failures"`, 10*time.Second)
	label := evalString(t, ctx, `document.getElementById("result-label").textContent`)
	value := evalString(t, ctx, `document.getElementById("result").textContent`)
	if !strings.HasPrefix(label, "no result (1 failed)") || value != fmt.Sprint(12*13/2-3) {
		t.Errorf("final page: %q %q, want no result and the successes' sum %d", label, value, 12*13/2-3)
	}
}
