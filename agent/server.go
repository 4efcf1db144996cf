package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Options configure the agent.
type Options struct {
	// Keepalive: with no frame from the master for this long, the master
	// is gone (default 15 s). The agent pings every third of it.
	Keepalive time.Duration
	// RemoveDir is removed when the master is lost, after the jobs are
	// killed ("" for none).
	RemoveDir string
	// Grace is how long a killed job's group has between TERM and KILL
	// (default 2 s).
	Grace time.Duration
	// Slots bounds the jobs running at once (0: no bound). Jobs started
	// beyond it wait, in order, and start as soon as one ends: the
	// master keeps a small window of them here, so no round trip sits
	// between one job's exit and the next one's start.
	Slots int

	// beforeLaunch, for tests, runs as a job leaves the queue, before its
	// process starts: it widens the window a kill must not fall into.
	beforeLaunch func()
}

// Serve is the agent: it speaks the protocol on in and out until the
// master closes in, goes silent for the keepalive window, or ctx ends.
// Then it kills every job's process group (TERM, then KILL after Grace),
// removes RemoveDir, and returns why it stopped.
func Serve(ctx context.Context, in io.Reader, out io.Writer, opts Options) error {
	if opts.Keepalive <= 0 {
		opts.Keepalive = 15 * time.Second
	}
	if opts.Grace <= 0 {
		opts.Grace = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(ctx) // ends the reader, the loop and the watchdog
	defer cancel()
	s := &server{w: NewCoalescingWriter(out, Coalesce), opts: opts, jobs: map[uint32]*job{}}
	s.heard.Store(time.Now().UnixNano())
	frames, readErr := make(chan Frame), make(chan error, 1)
	r := NewReader(in)
	go func() {
		for {
			f, err := r.Read()
			if err != nil {
				readErr <- err
				return
			}
			s.heard.Store(time.Now().UnixNano())
			select {
			case frames <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Every write blocks while the master reads nothing, from the hello
	// on: the watchdog runs apart from the writers. When it fires, the
	// jobs are killed and Serve returns, a write perhaps still blocked;
	// nothing starts after shutdown.
	looped := make(chan error, 1)
	go func() {
		// Reading runs first: on an unbuffered transport, both ends send
		// hello before reading.
		if err := s.w.WriteJSON(THello, 0, HelloMsg{Version: Version, Program: "dsub", PID: os.Getpid()}); err != nil {
			looped <- err
			return
		}
		if err := s.ping(); err != nil { // the host's health from the start
			looped <- err
			return
		}
		looped <- s.loop(ctx, frames, readErr)
	}()
	var err error
	select {
	case err = <-looped:
	case err = <-s.watchdog(ctx):
	}
	s.shutdown()
	return err
}

// watchdog reports when nothing was heard from the master for the
// keepalive window. The reader notes each frame as it arrives, so a
// master that neither sends nor reads (the loop blocked in a write, the
// reader blocked handing it a frame) is found as one that is silent.
func (s *server) watchdog(ctx context.Context) <-chan error {
	fired := make(chan error, 1)
	go func() {
		t := time.NewTimer(s.opts.Keepalive)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			idle := time.Since(time.Unix(0, s.heard.Load()))
			if idle >= s.opts.Keepalive {
				fired <- fmt.Errorf("no word from the master for %s", s.opts.Keepalive)
				return
			}
			t.Reset(s.opts.Keepalive - idle)
		}
	}()
	return fired
}

type server struct {
	w       *Writer
	opts    Options
	heard   atomic.Int64 // when the last frame came from the master (Unix ns)
	mu      sync.Mutex
	jobs    map[uint32]*job // running, or starting
	busy    int             // slots taken (running, or starting)
	waiting []waitingJob    // started beyond Slots, in order
	hello   bool
	// launching counts jobs that took a slot and whose process may not
	// have started yet: shutdown waits for them, so none starts after it.
	launching sync.WaitGroup
}

type waitingJob struct {
	h uint32
	m StartMsg
}

// job is a job that took a slot: a process, or one about to start.
// pgid and killed are guarded by server.mu.
type job struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	// in holds the stdin frames the feeder has yet to write (nil: the
	// job reads no stdin); inClosed, guarded by server.mu, once the
	// master's EOF closed it.
	in       chan []byte
	inClosed bool
	pgid     int // 0 until the process has started
	// started is when its process started, by the agent's clock: a
	// job's run time is measured here, where it runs (ExitMsg.Runtime).
	started time.Time
	// killed: the master killed it before its process started; it is
	// killed the moment it starts. (Between leaving the queue and
	// starting, a job is in neither; a kill then must not be lost.)
	killed bool
	// abandoned: killed by shutdown, the master gone (ExitMsg.Abandoned).
	abandoned bool
	done      chan struct{}
}

func (s *server) loop(ctx context.Context, frames <-chan Frame, readErr <-chan error) error {
	// Five beats per window: a master, whose own window is 4/5 of the
	// agent's, still hears three before it would declare the host lost.
	ping := time.NewTicker(s.opts.Keepalive / 5)
	defer ping.Stop()
	for {
		select {
		case f := <-frames:
			if err := s.handle(f); err != nil {
				return err
			}
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil // the master closed the session
			}
			return fmt.Errorf("read from the master: %w", err)
		case <-ping.C:
			if err := s.ping(); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ping is the agent's heartbeat, with the host's health where it can
// read it.
func (s *server) ping() error {
	var err error
	if h, ok := readHealth(); ok {
		err = s.w.WriteJSON(TPing, 0, h)
	} else {
		err = s.w.Write(Frame{Type: TPing})
	}
	if err != nil {
		return fmt.Errorf("write to the master: %w", err)
	}
	return nil
}

func (s *server) handle(f Frame) error {
	if !s.hello {
		if _, err := checkHello(f, "master"); err != nil {
			return err
		}
		s.hello = true
		return nil
	}
	switch f.Type {
	case TPing:
	case TStart:
		var m StartMsg
		if err := json.Unmarshal(f.Payload, &m); err != nil {
			return fmt.Errorf("agent protocol: start: %v", err)
		}
		s.start(f.Handle, m)
	case TStdin, TStdinEOF:
		return s.stdin(f)
	case TKill:
		s.mu.Lock()
		j := s.jobs[f.Handle]
		if j != nil && j.pgid == 0 {
			j.killed, j = true, nil // starting: launch kills it
		}
		dropped := false
		for i, w := range s.waiting {
			if w.h == f.Handle {
				s.waiting = append(s.waiting[:i:i], s.waiting[i+1:]...)
				dropped = true
				break
			}
		}
		s.mu.Unlock()
		switch {
		case dropped:
			_ = s.w.WriteJSON(TExit, f.Handle, ExitMsg{Status: -1, NotStarted: true})
		case j != nil:
			go s.kill(j)
		}
	default:
		return fmt.Errorf("agent protocol: unexpected %s frame from the master", f.Type)
	}
	return nil
}

// stdin hands a stdin frame to its job's feeder, never waiting: the
// master keeps at most stdinWindow frames of a job unacknowledged.
func (s *server) stdin(f Frame) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[f.Handle]
	if j == nil || j.pgid == 0 || j.in == nil || j.inClosed {
		return nil // the job has ended, or reads no stdin (the master sends it only once it has started)
	}
	if f.Type == TStdinEOF {
		j.inClosed = true
		close(j.in)
		return nil
	}
	select {
	case j.in <- f.Payload:
		return nil
	default:
		return fmt.Errorf("agent protocol: more than %d stdin frames in flight for job %d", stdinWindow, f.Handle)
	}
}

// feed writes a job's stdin frames to its pipe, acknowledging each, and
// closes the pipe at the master's EOF. A job that stopped reading loses
// the rest, as with a pipe; one that ended takes no more.
func (s *server) feed(h uint32, j *job) {
	for {
		select {
		case p, ok := <-j.in:
			if !ok {
				j.stdin.Close()
				return
			}
			_, _ = j.stdin.Write(p)
			if s.w.Write(Frame{Type: TStdinAck, Handle: h}) != nil {
				return // the master is gone
			}
		case <-j.done:
			return
		}
	}
}

// start starts a job, or queues it while every slot is taken.
func (s *server) start(h uint32, m StartMsg) {
	s.mu.Lock()
	if s.opts.Slots < 0 {
		s.mu.Unlock()
		return // shutting down
	}
	if s.opts.Slots > 0 && s.busy >= s.opts.Slots {
		s.waiting = append(s.waiting, waitingJob{h, m})
		s.mu.Unlock()
		return
	}
	j := s.take(h)
	s.mu.Unlock()
	s.launch(h, m, j)
}

// take gives handle h a slot and a job, so that a kill finds it from now
// on. s.mu is held.
func (s *server) take(h uint32) *job {
	s.busy++
	j := &job{done: make(chan struct{})}
	s.jobs[h] = j
	s.launching.Add(1)
	return j
}

// finished frees a slot and starts the next waiting job.
func (s *server) finished() {
	s.mu.Lock()
	s.busy--
	var next *waitingJob
	var j *job
	if len(s.waiting) > 0 && (s.opts.Slots == 0 || s.busy < s.opts.Slots) {
		next = &s.waiting[0]
		s.waiting = s.waiting[1:]
		j = s.take(next.h)
	}
	s.mu.Unlock()
	if next != nil {
		s.launch(next.h, next.m, j)
	}
}

// launch starts a job's process; it reports Started or, if it could not
// start, Exit. A job killed while it was starting is killed at once.
func (s *server) launch(h uint32, m StartMsg, j *job) {
	stdout, stderr, killed, err := s.spawn(m, j)
	s.launching.Done() // before any write: one may block on a silent master
	if err != nil {
		s.notStarted(h, err)
		return
	}
	var pg [4]byte
	binary.BigEndian.PutUint32(pg[:], uint32(j.pgid))
	if j.in != nil {
		go s.feed(h, j)
	}
	_ = s.w.Write(Frame{Type: TStarted, Handle: h, Payload: pg[:]})
	go s.wait(h, j, stdout, stderr)
	if killed {
		go s.kill(j)
	}
}

// spawn starts j's process; killed reports that the master killed it, or
// the agent began shutting down, while it was starting.
func (s *server) spawn(m StartMsg, j *job) (stdout, stderr io.Reader, killed bool, err error) {
	if s.opts.beforeLaunch != nil {
		s.opts.beforeLaunch()
	}
	var cmd *exec.Cmd
	switch {
	case m.Shell != "":
		// The login shell, as a session's command line would get.
		sh := os.Getenv("SHELL")
		if sh == "" {
			sh = "/bin/sh"
		}
		cmd = exec.Command(sh, "-c", m.Shell)
	case len(m.Argv) > 0:
		cmd = exec.Command(m.Argv[0], m.Argv[1:]...)
	default:
		return nil, nil, false, errors.New("no command")
	}
	cmd.Dir = m.Dir
	cmd.Env = os.Environ()
	for k, v := range m.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	j.cmd = cmd
	stdout, err1 := cmd.StdoutPipe()
	stderr, err2 := cmd.StderrPipe()
	var err3 error
	if m.Stdin {
		j.stdin, err3 = cmd.StdinPipe()
		j.in = make(chan []byte, stdinWindow)
	}
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, nil, false, err
	}
	// Stamped before the start, so that no delay after it (a busy
	// machine, the lock) shortens the job's recorded run time.
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j.pgid = cmd.Process.Pid
	j.started = started
	return stdout, stderr, j.killed || s.opts.Slots < 0, nil
}

func (s *server) notStarted(h uint32, err error) {
	s.mu.Lock()
	delete(s.jobs, h)
	s.mu.Unlock()
	_ = s.w.WriteJSON(TExit, h, ExitMsg{Status: -1, Error: err.Error()})
	s.finished()
}

// wait forwards a job's output, then reports its exit with its resource
// usage. Exit follows every output frame.
func (s *server) wait(h uint32, j *job, stdout, stderr io.Reader) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.forward(TStdout, h, stdout) }()
	go func() { defer wg.Done(); s.forward(TStderr, h, stderr) }()
	wg.Wait()
	_ = j.cmd.Wait()
	runtime := time.Since(j.started)
	s.mu.Lock()
	delete(s.jobs, h)
	m := exitMsg(j.cmd.ProcessState)
	m.Runtime = runtime.Seconds()
	m.Abandoned = j.abandoned
	s.mu.Unlock()
	close(j.done)
	_ = s.w.WriteJSON(TExit, h, m)
	s.finished()
}

func (s *server) forward(t Type, h uint32, r io.Reader) {
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := s.w.Write(Frame{Type: t, Handle: h, Payload: buf[:n]}); werr != nil {
				_, _ = io.Copy(io.Discard, r) // the master is gone: drain so the job can end
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func exitMsg(ps *os.ProcessState) ExitMsg {
	m := ExitMsg{Status: ps.ExitCode()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		m.Signal = strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		m.User = float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6
		m.Sys = float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
		m.MaxRSS = int64(ru.Maxrss) // KiB on Linux
	}
	return m
}

// kill sends TERM to the job's process group, then KILL after Grace if
// it has not ended.
func (s *server) kill(j *job) {
	if j.pgid <= 0 {
		return // never: kill(-0) would signal the agent's own group
	}
	_ = syscall.Kill(-j.pgid, syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(s.opts.Grace):
	}
	// Children that outlived the leader keep the group: KILL it whole.
	_ = syscall.Kill(-j.pgid, syscall.SIGKILL)
}

// shutdown kills every job's group and removes RemoveDir.
func (s *server) shutdown() {
	s.mu.Lock()
	s.waiting = nil
	s.opts.Slots = -1 // nothing starts any more
	s.mu.Unlock()
	s.launching.Wait() // a job starting now is killed as it starts
	s.mu.Lock()
	var jobs []*job
	for _, j := range s.jobs {
		j.abandoned = true
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() { defer wg.Done(); s.kill(j) }()
	}
	wg.Wait()
	if s.opts.RemoveDir != "" {
		_ = os.RemoveAll(s.opts.RemoveDir)
	}
}
