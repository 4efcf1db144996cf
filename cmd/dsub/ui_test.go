package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsub-dev/dsub/internal/browser"
	"github.com/dsub-dev/dsub/testenv"
)

var screenshots = flag.String("screenshots", "", "write screenshots of the pages to this `directory` (docs/img)")

// uiRun is dsub run --ui in the background, and its monitor's URL.
type uiRun struct {
	cmd    *exec.Cmd
	url    string
	stderr *bytes.Buffer
	done   chan error
}

// startUIRun starts dsub run with args and waits for its monitor's URL.
func startUIRun(t *testing.T, bin string, args ...string) *uiRun {
	t.Helper()
	u := &uiRun{cmd: exec.Command(bin, append([]string{"run"}, args...)...), stderr: &bytes.Buffer{}, done: make(chan error, 1)}
	pr, pw := io.Pipe()
	u.cmd.Stderr = pw
	u.cmd.Stdout = io.Discard
	if err := u.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	exited := make(chan error, 1)
	go func() { err := u.cmd.Wait(); pw.Close(); exited <- err }()
	go func() {
		sc := bufio.NewScanner(pr)
		re := regexp.MustCompile(`^dsub: monitor: (http://\S+)`)
		for sc.Scan() {
			u.stderr.WriteString(sc.Text() + "\n") // read only once done
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				urlc <- m[1]
			}
		}
		u.done <- <-exited // all of stderr read
	}()
	t.Cleanup(func() { _ = u.cmd.Process.Kill() })
	select {
	case u.url = <-urlc:
	case err := <-u.done:
		t.Fatalf("dsub ended before serving its monitor: %v\n%s", err, u.stderr)
	case <-time.After(60 * time.Second):
		t.Fatal("no monitor URL on stderr after 60 s")
	}
	return u
}

func (u *uiRun) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-u.done:
		return err
	case <-time.After(3 * time.Minute):
		t.Fatalf("dsub still runs after 3 minutes\n%s", u.stderr)
		return nil
	}
}

// uiTest sets up a monitor test against the testenv cluster: a browser,
// dsub, a directory, and a commands file cf of jobs lines line(1..jobs).
func uiTest(t *testing.T, jobs int, line func(i int) string) (ctx context.Context, bin, dir, cf string) {
	t.Helper()
	testenv.Require(t, cluster)
	ctx = browser.New(t, 1280, 900)
	bin, dir = buildDsub(t), t.TempDir()
	var cmds strings.Builder
	for i := 1; i <= jobs; i++ {
		fmt.Fprintln(&cmds, line(i))
	}
	cf = filepath.Join(dir, "cmds.txt")
	os.WriteFile(cf, []byte(cmds.String()), 0o600)
	return ctx, bin, dir, cf
}

// pageNumber reads a number the page shows.
func pageNumber(t *testing.T, ctx context.Context, id string) int {
	t.Helper()
	var s string
	if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`document.getElementById(%q).textContent`, id), &s)); err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(s, &n)
	return n
}

// The live page of a real run against sshd, in Chromium: host rows,
// jobs drawn on the timeline while they run, the counts going up, and
// the final result, which the page keeps once dsub has exited.
func TestMonitorLive(t *testing.T) {
	const jobs = 24
	want := 0
	ctx, bin, dir, cf := uiTest(t, jobs, func(i int) string {
		want += i
		return fmt.Sprintf("sleep 1.%d; echo %d", i%10, i)
	})
	u := startUIRun(t, bin, "--hosts", cluster.HostsFile, "--logs", filepath.Join(dir, "logs"), "--commands", cf, "--reduce", "sum", "--ui")
	if !regexp.MustCompile(`^http://127\.0\.0\.1:[0-9]+/\?token=[0-9a-f]{32}$`).MatchString(u.url) {
		t.Errorf("URL %s: want loopback, with a token", u.url)
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(u.url)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, fmt.Sprintf(`document.querySelectorAll("#hosts tbody tr").length === %d`, len(cluster.Hosts)), 60*time.Second)
	// Each host's agent reports its load and free memory.
	browser.WaitFor(t, ctx, `[...document.querySelectorAll("#hosts tbody tr")].every((tr) =>
		/^\d+\.\d\d$/.test(tr.cells[10].textContent) && / [KMGT]iB$/.test(tr.cells[11].textContent))`, 60*time.Second)
	// In flight before any has finished: 1 s jobs, drawn as they run.
	browser.WaitFor(t, ctx, `document.querySelectorAll("#timeline rect.seg.k-run").length > 0`, 60*time.Second)
	if done := pageNumber(t, ctx, "succeeded"); done >= jobs {
		t.Errorf("running bars seen only once all %d jobs had succeeded (%d)", jobs, done)
	}
	if *screenshots != "" {
		var png []byte
		if err := chromedp.Run(ctx, chromedp.Sleep(1500*time.Millisecond), chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(*screenshots, "monitor.png"), png, 0o644)
	}
	// The counts go up, seen by the page as the run goes.
	seen := map[int]bool{}
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		n := pageNumber(t, ctx, "succeeded")
		seen[n] = true
		if n == jobs {
			break
		}
	}
	if len(seen) < 3 || !seen[jobs] {
		t.Errorf("the page showed %d distinct success counts (%v), want the count going up to %d", len(seen), seen, jobs)
	}
	if err := u.wait(t); err != nil {
		t.Fatalf("dsub: %v\n%s", err, u.stderr)
	}
	// dsub waited for the page's last poll: it shows how the run ended.
	browser.WaitFor(t, ctx, fmt.Sprintf(`document.getElementById("result").textContent === "%d"`, want), 10*time.Second)
	browser.WaitFor(t, ctx, `document.getElementById("status").textContent.startsWith("ended")`, 10*time.Second)
	var ended int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll("#timeline rect.seg.k-ok").length`, &ended)); err != nil {
		t.Fatal(err)
	}
	if ended != jobs {
		t.Errorf("%d bars of succeeded jobs, want %d", ended, jobs)
	}

	// The run's report, from its records, opened offline.
	rd := runDir(t, filepath.Join(dir, "logs"))
	report := filepath.Join(dir, "report.html")
	if out, err := exec.Command(bin, "report", rd, "-o", report).CombinedOutput(); err != nil {
		t.Fatalf("dsub report: %v\n%s", err, out)
	}
	if fi, err := os.Stat(report); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("report: %v, mode %v: want a file readable by its owner alone", err, fi.Mode())
	}
	if err := chromedp.Run(ctx, chromedp.Navigate("file://"+report)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.body.dataset.ready === "1"`, 10*time.Second)
	for js, want := range map[string]string{
		`document.getElementById("succeeded").textContent`:            fmt.Sprint(jobs),
		`document.getElementById("result").textContent`:               fmt.Sprint(want),
		`document.querySelectorAll("#hosts tbody tr").length`:         fmt.Sprint(len(cluster.Hosts)),
		`document.querySelectorAll("#timeline rect.seg.k-ok").length`: fmt.Sprint(jobs),
		`document.querySelectorAll("#histogram rect").length > 0`:     "true",
		`document.getElementById("status").textContent`:               "finished",
	} {
		var got string
		if err := chromedp.Run(ctx, chromedp.Evaluate("String("+js+")", &got)); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("report: %s = %q, want %q", js, got, want)
		}
	}
	if *screenshots != "" {
		var png []byte
		if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(*screenshots, "report.png"), png, 0o644)
	}
}

// With --ui-control a running job's bar can cancel it (it fails, the run
// goes on), and the page's stop button stops the run as Ctrl-C does: the
// jobs are killed on their hosts, the run is resumable, and dsub exits
// 130. Without it, the page has no button.
func TestMonitorStop(t *testing.T) {
	ctx, bin, dir, cf := uiTest(t, 6, func(i int) string {
		return fmt.Sprintf("sleep 377.%d; echo %d", i, i) // a marker: alive if the kill failed (some wait in agents' windows)
	})
	u := startUIRun(t, bin, "--hosts", cluster.HostsFile, "--logs", filepath.Join(dir, "logs"), "--commands", cf, "--reduce", "sum", "--ui", "--ui-control")
	if err := chromedp.Run(ctx, chromedp.Navigate(u.url)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.querySelectorAll("#timeline rect.seg.k-run").length >= 4`, 90*time.Second)
	browser.WaitFor(t, ctx, `!document.getElementById("control").hidden`, 5*time.Second)
	// Cancel one running job from its bar: it fails, and the run goes on.
	var job int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`window.confirm = () => true;
		(() => { const r = document.querySelector("#timeline rect.seg.k-run"); r.dispatchEvent(new MouseEvent("click", {bubbles: true}));
		document.getElementById("cancel-job").click(); return Number(r.dataset.job) })()`, &job)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.getElementById("failed").textContent === "1"`, 30*time.Second)
	browser.WaitFor(t, ctx, fmt.Sprintf(`document.querySelector('.failure[data-job="%d"]') !== null`, job), 10*time.Second)
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("stop").click(); true`, nil)); err != nil {
		t.Fatal(err)
	}
	err := u.wait(t)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Errorf("dsub exited %v, want status 130 (interrupted)\n%s", err, u.stderr)
	}
	if !strings.Contains(u.stderr.String(), fmt.Sprintf("job %d cancelled by the user", job)) {
		t.Errorf("stderr does not say job %d was cancelled:\n%s", job, u.stderr)
	}
	if !strings.Contains(u.stderr.String(), "resume with: dsub run --resume") || !strings.Contains(u.stderr.String(), "stop requested from the monitor page: stopping as on Ctrl-C") {
		t.Errorf("stderr does not say the run was stopped and can be resumed:\n%s", u.stderr)
	}
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.WaitNoProcesses(c, "sleep 377", 5*time.Second); err != nil {
		t.Errorf("jobs still run on the hosts after the stop: %v", err)
	}

	// Read-only: no button, and the page says nothing about control.
	u = startUIRun(t, bin, "--hosts", cluster.HostsFile, "--logs", filepath.Join(dir, "logs2"), "--commands", cf, "--reduce", "sum", "--ui", "--timeout", "1s")
	if err := chromedp.Run(ctx, chromedp.Navigate(u.url)); err != nil {
		t.Fatal(err)
	}
	browser.WaitFor(t, ctx, `document.body.dataset.ready === "1"`, 30*time.Second)
	var hidden bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("control").hidden`, &hidden)); err != nil || !hidden {
		t.Errorf("read-only page shows the stop button (hidden=%v, %v)", hidden, err)
	}
	_ = u.wait(t)
}
