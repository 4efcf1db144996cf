package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// pair starts an agent (Serve, in process) and a client connected to it
// through pipes. stop closes the master's end, as a dying master would.
func pair(t *testing.T, opts Options) (c *Client, served <-chan error) {
	t.Helper()
	toAgentR, toAgentW := io.Pipe()
	toMasterR, toMasterW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Serve(context.Background(), toAgentR, toMasterW, opts)
		toMasterW.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := NewClient(ctx, toMasterR, toAgentW, toAgentW.Close, opts.Keepalive)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, done
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// alive reports whether process group pg has a process.
func alive(pg int) bool { return pg > 0 && syscall.Kill(-pg, 0) == nil }

// waitGone waits (10 s at most) until group pg is gone.
func waitGone(t *testing.T, pg int) {
	t.Helper()
	for i := 0; alive(pg); i++ {
		if i > 1000 {
			t.Fatalf("process group %d still alive", pg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRunOutputExitAndUsage(t *testing.T) {
	c, _ := pair(t, Options{})
	var out, errb bytes.Buffer
	m, pg, err := c.Run(context.Background(), Job{
		Start:  StartMsg{Shell: `echo "out $X"; echo err >&2; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exit 3`, Env: map[string]string{"X": "it's"}, Dir: "/"},
		Stdout: &out, Stderr: &errb,
	})
	if err != nil || m.Status != 3 || pg <= 0 {
		t.Fatalf("exit %+v, pgid %d, err %v", m, pg, err)
	}
	if out.String() != "out it's\n" || errb.String() != "err\n" {
		t.Errorf("stdout %q, stderr %q", out.String(), errb.String())
	}
	if m.User+m.Sys <= 0 || m.MaxRSS <= 0 {
		t.Errorf("no resource usage: %+v", m)
	}
	// Argv reaches the program byte for byte; stdin is forwarded.
	out.Reset()
	m, _, err = c.Run(context.Background(), Job{Start: StartMsg{Argv: []string{"sh", "-c", `printf '%s|' "$@"; cat`, "sh", "a b", "'", ""}},
		Stdin: strings.NewReader("from stdin"), Stdout: &out})
	if err != nil || m.Status != 0 || out.String() != "a b|'||from stdin" {
		t.Errorf("argv job: %+v %v %q", m, err, out.String())
	}
	// A program that cannot start is an exit with an error, not a hang.
	m, _, err = c.Run(context.Background(), Job{Start: StartMsg{Argv: []string{"/nonexistent/prog"}}})
	if err != nil || m.Status != -1 || m.Error == "" {
		t.Errorf("missing program: %+v %v", m, err)
	}
}

// Many jobs at once on one connection: outputs stay with their jobs.
func TestConcurrentJobs(t *testing.T) {
	c, _ := pair(t, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			m, _, err := c.Run(context.Background(), Job{Start: StartMsg{Shell: "seq 1 2000; echo $N", Env: map[string]string{"N": string(rune('A' + i%26))}}, Stdout: &out})
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if err != nil || m.Status != 0 || len(lines) != 2001 || lines[2000] != string(rune('A'+i%26)) {
				errs <- errors.New("job output mixed up or lost")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// Cancelling a Run kills the job's whole process group; a group that
// ignores TERM is KILLed after the grace period.
func TestCancelKillsGroup(t *testing.T) {
	c, _ := pair(t, Options{Grace: 300 * time.Millisecond})
	for _, script := range []string{"sleep 300 & sleep 301; wait", "trap '' TERM; sleep 302 & sleep 303; wait"} {
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan struct{})
		var pg int
		var err error
		go func() {
			defer close(done)
			_, pg, err = c.Run(ctx, Job{Start: StartMsg{Shell: "echo up; " + script}, Stdout: &out})
		}()
		for !strings.Contains(out.String(), "up") {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err %v", script, err)
		}
		waitGone(t, pg)
	}
}

// The agent never outlives its master: when the master's end closes (a
// SIGKILLed master's connection does), or the master goes silent, every
// job's group is killed and the agent exits.
// A master that is gone has its jobs killed: one that closed the session
// (eof), one that says nothing (silence), and one that says nothing and
// reads nothing (frozen: stopped, or its host swapped to death). The
// frozen master leaves the agent's writes blocked, its heartbeat first:
// the watchdog must not wait for them.
func TestMasterGoneKillsJobs(t *testing.T) {
	for _, how := range []string{"eof", "silence", "frozen"} {
		t.Run(how, func(t *testing.T) {
			toAgentR, toAgentW := io.Pipe()
			toMasterR, toMasterW := io.Pipe()
			defer toMasterR.Close() // unblocks a frozen master's agent's writes
			served := make(chan error, 1)
			go func() {
				served <- Serve(context.Background(), toAgentR, toMasterW, Options{Keepalive: 600 * time.Millisecond})
			}()
			w, r := NewWriter(toAgentW), NewReader(toMasterR)
			var started atomic.Int64
			exits := make(chan ExitMsg, 1)
			go func() {
				for {
					f, err := r.Read()
					if err != nil {
						return
					}
					switch f.Type {
					case TStarted:
						started.CompareAndSwap(0, int64(binary.BigEndian.Uint32(f.Payload)))
						if how == "frozen" {
							return // reads nothing more: the agent's next write blocks
						}
					case TExit:
						var m ExitMsg
						json.Unmarshal(f.Payload, &m)
						exits <- m
					}
				}
			}()
			w.WriteJSON(THello, 0, HelloMsg{Version: Version})
			w.WriteJSON(TStart, 1, StartMsg{Shell: "sleep 304 & sleep 305"})
			pg := 0
			for i := 0; pg == 0 || !alive(pg); i++ {
				pg = int(started.Load())
				if i > 500 {
					t.Fatal("the job did not start")
				}
				time.Sleep(10 * time.Millisecond)
			}
			if how == "eof" {
				toAgentW.Close()
			} // else: say nothing; the watchdog fires after 600 ms
			select {
			case err := <-served:
				if how != "eof" && (err == nil || !strings.Contains(err.Error(), "no word from the master")) {
					t.Errorf("Serve: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the agent outlived its master")
			}
			// Gone within 5 s (zombies of the group's orphans are reaped by
			// init meanwhile); the jobs would live for 300 s otherwise.
			for i := 0; alive(pg); i++ {
				if i > 500 {
					t.Fatalf("job group %d alive 5 s after the agent exited", pg)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if how == "silence" {
				// Should the connection come back (a partition healed),
				// the exit says the host failed, not the job.
				select {
				case m := <-exits:
					if !m.Abandoned {
						t.Errorf("exit %+v: want it marked abandoned", m)
					}
				case <-time.After(5 * time.Second):
					t.Error("no exit frame for the killed job")
				}
			}
		})
	}
}

func TestVersionMismatch(t *testing.T) {
	toAgentR, toAgentW := io.Pipe()
	toMasterR, toMasterW := io.Pipe()
	go func() {
		w := NewWriter(toMasterW)
		w.WriteJSON(THello, 0, HelloMsg{Version: Version + 1})
		io.Copy(io.Discard, toAgentR)
	}()
	_, err := NewClient(context.Background(), toMasterR, toAgentW, toAgentW.Close, time.Second)
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Theirs != Version+1 || !strings.Contains(err.Error(), "version mismatch") {
		t.Fatalf("err = %v", err)
	}
}

// The decoder never panics, never allocates past MaxFrame, and reads
// back what the encoder wrote.
func FuzzReader(f *testing.F) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.WriteJSON(THello, 0, HelloMsg{Version: Version})
	w.WriteJSON(TPing, 0, HealthMsg{Load1: 0.5, MemAvailKB: 1 << 20, MemTotalKB: 2 << 20})
	w.Write(Frame{Type: TStdout, Handle: 7, Payload: []byte("hello")})
	f.Add(b.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i < 1000; i++ {
			fr, err := r.Read()
			if err != nil {
				return
			}
			if len(fr.Payload)+5 > MaxFrame {
				t.Fatalf("frame of %d bytes accepted", len(fr.Payload))
			}
			var again bytes.Buffer
			if err := NewWriter(&again).Write(fr); err != nil {
				t.Fatal(err)
			}
			back, err := NewReader(&again).Read()
			if err != nil || back.Type != fr.Type || back.Handle != fr.Handle || !bytes.Equal(back.Payload, fr.Payload) {
				t.Fatalf("round trip: %+v → %+v (%v)", fr, back, err)
			}
		}
	})
}

// With Slots, jobs beyond them wait at the agent and start, in order, as
// soon as a slot frees; one killed while it waits never runs.
func TestSlotsQueueJobs(t *testing.T) {
	c, _ := pair(t, Options{Slots: 1})
	dir := t.TempDir()
	var started sync.Map
	run := func(ctx context.Context, name, script string) (ExitMsg, error) {
		m, _, err := c.Run(ctx, Job{Start: StartMsg{Shell: script, Dir: dir}, Started: func(int) { started.Store(name, true) }})
		return m, err
	}
	firstDone := make(chan ExitMsg, 1)
	go func() {
		m, _ := run(context.Background(), "first", "while [ ! -e go ]; do sleep 0.02; done")
		firstDone <- m
	}()
	for _, ok := started.Load("first"); !ok; _, ok = started.Load("first") {
		time.Sleep(10 * time.Millisecond)
	}
	secondDone := make(chan ExitMsg, 1)
	go func() { m, _ := run(context.Background(), "second", "touch second-ran"); secondDone <- m }()
	ctx, cancel := context.WithCancel(context.Background())
	thirdDone := make(chan error, 1)
	var third ExitMsg
	go func() { var err error; third, err = run(ctx, "third", "touch third-ran"); thirdDone <- err }()
	time.Sleep(200 * time.Millisecond)
	if _, ok := started.Load("second"); ok {
		t.Fatal("the second job started while the only slot was taken")
	}
	cancel() // the third is killed while it waits
	if err := <-thirdDone; !errors.Is(err, context.Canceled) || !third.NotStarted {
		t.Errorf("third: %+v %v, want not started", third, err)
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	if m := <-firstDone; m.Status != 0 {
		t.Errorf("first: %+v", m)
	}
	if m := <-secondDone; m.Status != 0 {
		t.Errorf("second: %+v", m)
	}
	if _, err := os.Stat(filepath.Join(dir, "second-ran")); err != nil {
		t.Error("the second job never ran")
	}
	if _, err := os.Stat(filepath.Join(dir, "third-ran")); err == nil {
		t.Error("the third job ran after it was killed in the queue")
	}
}

// A kill that arrives while a job is between the queue and its process
// (a slot just freed) is not lost: the job is killed as it starts. This is
// what halting a run does to a host's window. The gap is widened here to
// 300 ms; without the mechanism the job would run its 300 s.
func TestKillWhileStarting(t *testing.T) {
	leaving := make(chan struct{}, 4)
	c, _ := pair(t, Options{Slots: 1, Grace: 300 * time.Millisecond, beforeLaunch: func() {
		leaving <- struct{}{}
		time.Sleep(300 * time.Millisecond)
	}})
	ctx1, cancel1 := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { _, _, err := c.Run(ctx1, Job{Start: StartMsg{Shell: "sleep 300"}}); first <- err }()
	<-leaving // the first took the slot
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	type res struct {
		m   ExitMsg
		pg  int
		err error
	}
	second := make(chan res, 1)
	go func() {
		m, pg, err := c.Run(ctx2, Job{Start: StartMsg{Shell: "sleep 300.5"}})
		second <- res{m, pg, err}
	}()
	time.Sleep(400 * time.Millisecond) // the first runs; the second waits in the queue
	cancel1()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first: %v", err)
	}
	<-leaving // the freed slot took the second: it is starting
	cancel2()
	select {
	case r := <-second:
		if !errors.Is(r.err, context.Canceled) || r.m.Status == 0 {
			t.Errorf("second: exit %+v, err %v; want killed", r.m, r.err)
		}
		waitGone(t, r.pg)
	case <-time.After(10 * time.Second):
		t.Fatal("a job killed while it was starting kept running")
	}
}

// A job that waits at the agent for a slot still gets all of its stdin.
func TestStdinOfQueuedJob(t *testing.T) {
	c, _ := pair(t, Options{Slots: 1})
	dir := t.TempDir()
	first := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		_, _, err := c.Run(context.Background(), Job{Start: StartMsg{Shell: "while [ ! -e go ]; do sleep 0.02; done", Dir: dir},
			Started: func(int) { close(started) }})
		first <- err
	}()
	<-started
	var out syncBuffer
	second := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a lost EOF would leave cat waiting
	defer cancel()
	go func() {
		_, _, err := c.Run(ctx, Job{Start: StartMsg{Shell: "cat"}, Stdin: strings.NewReader("queued input"), Stdout: &out})
		second <- err
	}()
	time.Sleep(200 * time.Millisecond) // its stdin would be sent, and dropped, now
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o600)
	if err := errors.Join(<-first, <-second); err != nil {
		t.Fatal(err)
	}
	if out.String() != "queued input" {
		t.Errorf("the queued job read %q", out.String())
	}
}

// fakeAgent is a client talking to a fake agent, which says hello and
// then answers each frame from the master with answer.
func fakeAgent(t *testing.T, answer func(w *Writer, f Frame)) *Client {
	t.Helper()
	toAgentR, toAgentW := io.Pipe()
	toMasterR, toMasterW := io.Pipe()
	go func() {
		w, r := NewWriter(toMasterW), NewReader(toAgentR)
		w.WriteJSON(THello, 0, HelloMsg{Version: Version})
		for {
			f, err := r.Read()
			if err != nil {
				return
			}
			answer(w, f)
		}
	}()
	c, err := NewClient(context.Background(), toMasterR, toAgentW, toAgentW.Close, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// An exit the agent marks abandoned (it killed the job after losing its
// master, and the connection came back) is the host's failure: Run
// returns ErrLost, so the job is requeued, not failed.
func TestAbandonedExitIsLost(t *testing.T) {
	c := fakeAgent(t, func(w *Writer, f Frame) {
		if f.Type == TStart {
			w.Write(Frame{Type: TStarted, Handle: f.Handle, Payload: []byte{0, 0, 0, 42}})
			w.WriteJSON(TExit, f.Handle, ExitMsg{Status: -1, Signal: "TERM", Abandoned: true})
		}
	})
	ctx := context.Background()
	_, pgid, err := c.Run(ctx, Job{Start: StartMsg{Shell: "sleep 1"}})
	if !errors.Is(err, ErrLost) || pgid != 42 {
		t.Errorf("Run = pgid %d, %v; want ErrLost with the group", pgid, err)
	}
}

func TestParseHealth(t *testing.T) {
	for _, tc := range []struct {
		name, load, mem string
		want            HealthMsg
		err             string
	}{
		{"linux", "0.52 0.58 0.59 1/467 12345\n", "MemTotal:       16318588 kB\nMemFree:          812340 kB\nMemAvailable:    9876543 kB\n",
			HealthMsg{Load1: 0.52, MemAvailKB: 9876543, MemTotalKB: 16318588}, ""},
		{"before 3.14: MemFree", "12.00 1 1 1/1 1", "MemTotal: 1000 kB\nMemFree: 250 kB\n", HealthMsg{Load1: 12, MemAvailKB: 250, MemTotalKB: 1000}, ""},
		{"no load", "", "MemTotal: 1 kB\n", HealthMsg{}, "loadavg: empty"},
		{"bad load", "x 1 1", "MemTotal: 1 kB\n", HealthMsg{}, "loadavg"},
		{"no total", "1 1 1", "MemFree: 1 kB\n", HealthMsg{}, "no MemTotal"},
		{"bad number", "1 1 1", "MemTotal: lots kB\n", HealthMsg{}, "MemTotal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHealth([]byte(tc.load), []byte(tc.mem))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

// The agent's heartbeats carry its host's load and memory, from the
// first one on (sent right after its hello).
func TestHeartbeatHealth(t *testing.T) {
	want, ok := readHealth()
	if !ok {
		t.Fatal("cannot read this host's /proc/loadavg and /proc/meminfo")
	}
	c, _ := pair(t, Options{Keepalive: time.Hour}) // no periodic beat in the test's time
	for i := 0; ; i++ {
		h, ok := c.Health()
		if ok {
			if h.MemTotal != want.MemTotalKB<<10 || h.Load1 < 0 || h.MemAvail <= 0 || h.At.IsZero() {
				t.Errorf("health %+v, want this host's (MemTotal %d kB)", h, want.MemTotalKB)
			}
			break
		}
		if i > 500 {
			t.Fatal("no health from the agent after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A job that reads none of its stdin holds up no one: the other jobs
// start and end, and the job itself can be killed. (Written to its pipe
// from the frame loop, 8 MiB of stdin left the loop blocked: the kill
// waited for the job's 301 s.)
func TestUnreadStdinBlocksNoOne(t *testing.T) {
	c, _ := pair(t, Options{Keepalive: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan int, 1)
	first := make(chan error, 1)
	go func() {
		_, _, err := c.Run(ctx, Job{Start: StartMsg{Shell: "sleep 301"}, Stdin: bytes.NewReader(make([]byte, 8<<20)),
			Started: func(pg int) { started <- pg }})
		first <- err
	}()
	pg := <-started
	second := make(chan error, 1)
	var out syncBuffer
	go func() {
		m, _, err := c.Run(context.Background(), Job{Start: StartMsg{Shell: "echo ok"}, Stdout: &out})
		if err == nil && m.Status != 0 {
			err = fmt.Errorf("exit %+v", m)
		}
		second <- err
	}()
	select {
	case err := <-second:
		if err != nil || out.String() != "ok\n" {
			t.Errorf("second job: %v, output %q", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a job that reads no stdin held up the next one for 20 s")
	}
	// And the master can still kill it: its kill is not stuck behind
	// the stdin the job does not read.
	cancel()
	select {
	case <-first:
	case <-time.After(20 * time.Second):
		t.Fatal("the job that reads no stdin could not be killed for 20 s")
	}
	waitGone(t, pg)
}

// A job's stdin arrives whole and in order through the window, however
// much there is: 5 MiB is 160 frames, 5 windows.
func TestStdinThroughWindow(t *testing.T) {
	c, _ := pair(t, Options{})
	in := make([]byte, 5<<20)
	for i := range in {
		in[i] = byte(i * 7 / 5)
	}
	var out syncBuffer
	m, _, err := c.Run(context.Background(), Job{Start: StartMsg{Shell: "sha256sum"}, Stdin: bytes.NewReader(in), Stdout: &out})
	if err != nil || m.Status != 0 {
		t.Fatalf("exit %+v, %v", m, err)
	}
	if want := fmt.Sprintf("%x  -\n", sha256.Sum256(in)); out.String() != want {
		t.Errorf("the job read %q, want %q", out.String(), want)
	}
}

// A hostile agent: two Started frames for one job, an exit whose signal
// name would forge joblog rows, a memory figure that would wrap. The
// job starts once (one start, one time limit), the signal reaches the
// master as UNKNOWN, and the memory is clamped.
func TestHostileAgent(t *testing.T) {
	c := fakeAgent(t, func(w *Writer, f Frame) {
		switch f.Type {
		case THello: // the master's: it reads ours now
			w.WriteJSON(TPing, 0, HealthMsg{Load1: 1, MemAvailKB: 1 << 60, MemTotalKB: 1 << 61})
		case TStart:
			w.Write(Frame{Type: TStarted, Handle: f.Handle, Payload: []byte{0, 0, 0, 42}})
			w.Write(Frame{Type: TStarted, Handle: f.Handle, Payload: []byte{0, 0, 0, 43}})
			w.Write(Frame{Type: TStarted, Handle: f.Handle, Payload: []byte{0, 0, 0, 44}})
			w.WriteJSON(TExit, f.Handle, ExitMsg{Status: -1, Signal: "KILL\t0\t0\n7\th01\t1\t1\t0\t0\t0\t0\tforged\trecorded"})
		}
	})
	ctx := context.Background()
	h := &Host{Host: fakehost.New("h01", fakehost.Options{})}
	h.client.Store(c)
	starts := 0
	err := h.Run(ctx, &remote.Cmd{Shell: "true", Env: map[string]string{"DSUB_JOB": "1"}, Timeout: time.Minute, OnStart: func() { starts++ }})
	var ee *remote.ExitError
	if !errors.As(err, &ee) || ee.Signal != "UNKNOWN" {
		t.Errorf("Run = %v; want an exit killed by an UNKNOWN signal", err)
	}
	if starts != 1 {
		t.Errorf("the job started %d times, want once", starts)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if hl, ok := c.Health(); ok {
			if hl.MemAvail <= 0 || hl.MemTotal <= 0 {
				t.Errorf("health %+v: a huge figure wrapped", hl)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no health from the agent's beat")
		}
	}
}
