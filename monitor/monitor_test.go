package monitor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// fakeRun runs n shell jobs on two fake hosts of 2 slots, fed to a Model.
// Job fail fails with a stderr line; the others print their number once
// release is closed.
type fakeRun struct {
	run     *distributor.Run
	m       *Model
	release chan struct{}
	dir     string
}

const failJob = 3

// releaseAll lets the jobs finish once both hosts are ready: released
// before, one host alone could run every job, and the other would have
// neither executions nor health to report.
func (f *fakeRun) releaseAll(t *testing.T) {
	t.Helper()
	if err := f.run.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(f.release)
}

func startFakeRun(t *testing.T, n int) *fakeRun {
	t.Helper()
	f := &fakeRun{m: NewModel("dsub run test"), release: make(chan struct{})}
	job := func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job == failJob {
			fmt.Fprintln(p.Cmd.Stderr, "boom: job 3 cannot")
			return fakehost.Exit(7)
		}
		select {
		case <-f.release:
		case <-ctx.Done():
			return fakehost.Exit(143)
		}
		p.Printf("%d\n", p.Job)
		return nil
	}
	var ms []*distributor.Member
	for _, name := range []string{"f01", "f02"} {
		ms = append(ms, &distributor.Member{Inv: &inventory.Host{Name: name, Address: name, Slots: 2, Workdir: "~/.dsub"},
			Host: fakehost.New(name, fakehost.Options{Job: job, Health: health(name)}), Timeout: time.Second})
	}
	c, err := distributor.NewClusterOf(ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	red, _ := distributor.NewReducer("sum")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	run, err := c.Start(ctx, distributor.RunOptions{LogsDir: t.TempDir(), Reducer: red, OnEvent: f.m.Event, Warn: f.m.Warn})
	if err != nil {
		t.Fatal(err)
	}
	f.run, f.dir = run, run.Dir()
	f.m.Attach(run)
	go func() {
		defer run.Close()
		for i := 0; i < n; i++ {
			if run.Submit(ctx, distributor.JobSpec{Shell: "job", Shard: i, Shards: n}) != nil {
				return
			}
		}
	}()
	return f
}

// wait ends the run and gives the model its end.
func (f *fakeRun) wait(t *testing.T) {
	t.Helper()
	st, res, err := f.run.Wait()
	f.m.Finish(st, res, err)
}

// The live model draws running jobs as they run, counts them as they end,
// keeps failures with their stderr, and ends with the run's result.
func TestModelLive(t *testing.T) {
	f := startFakeRun(t, 8)
	// 4 slots: 3 jobs block, and job 3 fails; then 4 block.
	deadline := time.Now().Add(30 * time.Second)
	var st State
	for {
		st = f.m.State(-1, -1)
		if len(st.Timeline.Running) == 4 && st.Failed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("running bars %d, failed %d: want 4 jobs drawn running and 1 failure", len(st.Timeline.Running), st.Failed)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Running != 4 || len(st.Hosts) != 2 || st.Hosts[0].Slots != 2 || len(st.Timeline.Lanes) != 4 {
		t.Errorf("running %d, hosts %+v, lanes %d: want 4 running on 2 hosts of 2 slots", st.Running, st.Hosts, len(st.Timeline.Lanes))
	}
	// f01 reports its health (as an agent does), f02 does not.
	if h := st.Hosts[0]; h.Load != 1.5 || h.MemFree != 3<<30 || h.MemTotal != 8<<30 {
		t.Errorf("host %s: load %v, free %d of %d: want 1.5, 3 GiB of 8 GiB", h.Name, h.Load, h.MemFree, h.MemTotal)
	}
	if h := st.Hosts[1]; h.Load != -1 || h.MemFree != -1 {
		t.Errorf("host %s: load %v, free %d: want -1 (not reported)", h.Name, h.Load, h.MemFree)
	}
	if len(st.Failures) != 1 || st.Failures[0].Job != failJob || !strings.Contains(st.Failures[0].Tail, "boom: job 3") || st.Failures[0].Log == "" {
		t.Errorf("failures %+v: want job 3 with its stderr and log", st.Failures)
	}
	for _, s := range st.Timeline.Running {
		if s.Kind != "run" || s.Cmd != "job" || s.End < s.Start {
			t.Errorf("running bar %+v", s)
		}
	}
	f.releaseAll(t)
	f.wait(t)
	st = f.m.State(st.Timeline.Epoch, lastID(st.Timeline.Ended))
	if !st.Done || st.Succeeded != 7 || st.Failed != 1 || len(st.Timeline.Running) != 0 || st.Error != "" && !strings.Contains(st.Error, "fail") {
		t.Errorf("final: done %v, %d succeeded, %d failed, %d running, error %q", st.Done, st.Succeeded, st.Failed, len(st.Timeline.Running), st.Error)
	}
	if st.Timeline.Full || len(st.Timeline.Ended) != 7 {
		t.Errorf("delta after the first poll: %d bars (full %v), want the 7 that ended since", len(st.Timeline.Ended), st.Timeline.Full)
	}
}

// health is what the fake host reports: f01 its load and memory, others
// nothing.
func health(name string) *remote.Health {
	if name != "f01" {
		return nil
	}
	return &remote.Health{Load1: 1.5, MemAvail: 3 << 30, MemTotal: 8 << 30, At: time.Now()}
}

func lastID(segs []Segment) int {
	if len(segs) == 0 {
		return -1
	}
	return segs[len(segs)-1].ID
}

// A report made from a run's records has what the run did: counts, hosts,
// every execution on the timeline, the failure with its stderr, the
// histogram and the stragglers.
func TestReportFromRecords(t *testing.T) {
	f := startFakeRun(t, 12)
	f.releaseAll(t)
	f.wait(t)
	st, err := FromRecords(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Done || st.Jobs != 12 || st.Succeeded != 11 || st.Failed != 1 || len(st.Hosts) != 2 {
		t.Fatalf("report: done %v, jobs %d, %d succeeded, %d failed, %d hosts", st.Done, st.Jobs, st.Succeeded, st.Failed, len(st.Hosts))
	}
	n := 0
	for _, s := range st.Timeline.Ended {
		n += s.N
	}
	if n != 12 {
		t.Errorf("timeline draws %d executions, want 12", n)
	}
	// The records keep each host's last health report: f01's, and none
	// for f02, which sent none.
	for _, h := range st.Hosts {
		want := HostRow{Load: -1, MemFree: -1}
		if h.Name == "f01" {
			want = HostRow{Load: 1.5, MemFree: 3 << 30}
		}
		if h.Load != want.Load || h.MemFree != want.MemFree {
			t.Errorf("report: host %s: load %v, free %d; want %v, %d", h.Name, h.Load, h.MemFree, want.Load, want.MemFree)
		}
	}
	if len(st.Failures) != 1 || !strings.Contains(st.Failures[0].Tail, "boom: job 3") || st.Failures[0].Exit != 7 {
		t.Errorf("failures %+v: want job 3, exit 7, with its stderr", st.Failures)
	}
	hist := 0
	for _, b := range st.Histogram {
		hist += b.N
	}
	if hist != 11 || len(st.Stragglers) != 10 {
		t.Errorf("histogram counts %d jobs, want 11; %d stragglers, want 10", hist, len(st.Stragglers))
	}
	for i := 1; i < len(st.Stragglers); i++ {
		if d := st.Stragglers[i].End - st.Stragglers[i].Start; d > st.Stragglers[i-1].End-st.Stragglers[i-1].Start {
			t.Errorf("stragglers not longest first: %+v", st.Stragglers)
		}
	}
	var b strings.Builder
	if err := WritePage(&b, &st); err != nil {
		t.Fatal(err)
	}
	page := strings.ReplaceAll(b.String(), "http://www.w3.org/2000/svg", "") // SVG's namespace, not an address
	for _, forbidden := range []string{"http://", "https://", "src=", "<link", "@import", "url("} {
		if strings.Contains(page, forbidden) {
			t.Errorf("the report refers to something outside itself: %q", forbidden)
		}
	}
}

// A run directory that is not one is an error naming it.
func TestReportNotARun(t *testing.T) {
	dir := t.TempDir()
	if _, err := FromRecords(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("err = %v, want one naming %s", err, dir)
	}
}

// The server answers only what it should: only with its token, wherever
// it is bound (another user of the machine reaches loopback too), a
// loopback monitor only for loopback host names, and stop only with
// --ui-control and the page's header.
func TestServerGuards(t *testing.T) {
	var stopped atomic.Int32
	stop := func() { stopped.Add(1) }
	loop, err := Serve(NewModel("x"), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer loop.Close()
	var cancelled atomic.Int32
	ctl, err := Serve(NewModel("x"), ServerOptions{Stop: stop, CancelJob: func(_ context.Context, job int) error {
		if job != 7 {
			return fmt.Errorf("job %d is not waiting or running", job)
		}
		cancelled.Add(1)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	open, err := Serve(NewModel("x"), ServerOptions{Addr: nonLoopback(t) + ":0"})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if !strings.Contains(open.URL(), "?token=") || !strings.Contains(loop.URL(), "?token=") || loop.token == open.token {
		t.Fatalf("URLs %s and %s: want a token of its own in each", open.URL(), loop.URL())
	}
	noToken := strings.Split(open.URL(), "?")[0]
	loopNoToken := strings.Split(loop.URL(), "?")[0]
	for _, tc := range []struct {
		name, method, url, host string
		header                  bool
		want                    int
	}{
		{"loopback page", "GET", loop.URL(), "", false, 200},
		{"loopback state", "GET", at(loop, "api/state"), "", false, 200},
		{"loopback, foreign host name", "GET", loop.URL(), "evil.example:80", false, 403},
		{"localhost name", "GET", loop.URL(), "localhost", false, 200},
		{"loopback, no token", "GET", loopNoToken, "", false, 403},
		{"loopback, no token, state", "GET", loopNoToken + "api/state", "", false, 403},
		{"loopback, wrong token", "GET", loopNoToken + "?token=" + open.token, "", false, 403},
		{"token page", "GET", open.URL(), "", false, 200},
		{"no token", "GET", noToken, "", false, 403},
		{"no token, state", "GET", noToken + "api/state", "", false, 403},
		{"wrong token", "GET", noToken + "?token=00", "", false, 403},
		{"stop, read-only", "POST", at(loop, "api/stop"), "", true, 403},
		{"stop, no header", "POST", at(ctl, "api/stop"), "", false, 403},
		{"stop, GET", "GET", at(ctl, "api/stop"), "", true, 405},
		{"stop", "POST", at(ctl, "api/stop"), "", true, 204},
		{"cancel, read-only", "POST", at(loop, "api/cancel") + "&job=7", "", true, 403},
		{"cancel, no header", "POST", at(ctl, "api/cancel") + "&job=7", "", false, 403},
		{"cancel, no job", "POST", at(ctl, "api/cancel"), "", true, 400},
		{"cancel, not running", "POST", at(ctl, "api/cancel") + "&job=8", "", true, 409},
		{"cancel", "POST", at(ctl, "api/cancel") + "&job=7", "", true, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			if tc.host != "" {
				req.Host = tc.host
			}
			if tc.header {
				req.Header.Set("X-Dsub-Control", "1")
			}
			jar, _ := cookiejar.New(nil) // each case starts with none
			resp, err := (&http.Client{Jar: jar}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: %d %s, want %d", tc.method, tc.url, resp.StatusCode, body, tc.want)
			}
		})
	}
	// Opened with its token, the page keeps it in a cookie and drops it
	// from its address; the cookie alone then opens the API, a wrong one
	// does not.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(loop.URL())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == tokenCookie {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" || cookie == nil || !cookie.HttpOnly || cookie.Value != loop.token {
		t.Errorf("page with its token: %d to %q, cookie %+v; want 303 to / with the token in an HttpOnly cookie", resp.StatusCode, resp.Header.Get("Location"), cookie)
	}
	for _, tc := range []struct {
		value string
		want  int
	}{{loop.token, 200}, {open.token, 403}, {"", 403}} {
		req, _ := http.NewRequest("GET", loopNoToken+"api/state", nil)
		req.AddCookie(&http.Cookie{Name: tokenCookie, Value: tc.value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("api/state with cookie %q: %d, want %d", tc.value, resp.StatusCode, tc.want)
		}
	}
	if stopped.Load() != 1 || cancelled.Load() != 1 {
		t.Errorf("stop called %d times, cancel %d: want once each (by the one allowed request)", stopped.Load(), cancelled.Load())
	}
}

// at is the URL of path on s, with its token.
func at(s *Server, path string) string {
	return strings.Split(s.URL(), "?")[0] + path + "?token=" + s.token
}

// nonLoopback is an address of this machine that is not loopback (the
// unspecified address if it has none).
func nonLoopback(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil {
				return ip.IP.String()
			}
		}
	}
	return "0.0.0.0"
}

// A request without the token gets its 403 and its connection closed: a
// crowd of them holds nothing open (200 were once all still open after
// 40 s).
func TestForbiddenConnectionIsClosed(t *testing.T) {
	srv, err := Serve(NewModel("x"), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := strings.TrimPrefix(strings.Split(srv.URL(), "/?")[0], "http://")
	for i := range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /api/state HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(c) // to EOF: the server closed it
		c.Close()
		if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 403") {
			t.Fatalf("connection %d: %q, %v; want a 403 and the connection closed", i, b, err)
		}
	}
}
