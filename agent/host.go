package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// Host runs a run's jobs through an agent on the host: a sibling of
// remote.SSHHost behind the remote.Host interface. Jobs (commands whose Env
// has DSUB_JOB) go to the agent over its one session; everything else
// (file operations, describe, kills, admin commands) goes over SSH as
// before. A lost agent connection fails its jobs as transport errors, like
// a lost SSH connection; Connect starts a new agent.
type Host struct {
	remote.Host // the SSH side
	argv        []string
	dir         string
	keepalive   time.Duration

	// mu serializes starting and closing agents; client is read without
	// it (Health), since mu is held while an agent starts, which can
	// take a while.
	mu     sync.Mutex
	client atomic.Pointer[Client]
	stop   context.CancelFunc // ends the agent's session
}

// NewHost makes an agent host over ssh: argv starts the agent there (its
// program, "agent", flags), in directory dir. Start it with Connect.
func NewHost(ssh remote.Host, argv []string, dir string, keepalive time.Duration) *Host {
	return &Host{Host: ssh, argv: argv, dir: dir, keepalive: keepalive}
}

// Connect connects over SSH and makes sure an agent answers: the one
// running, or a new one.
func (h *Host) Connect(ctx context.Context) error {
	if err := h.Host.Connect(ctx); err != nil {
		return err
	}
	_, err := h.agent(ctx)
	return err
}

// agent returns a live client, starting an agent if there is none.
func (h *Host) agent(ctx context.Context) (*Client, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.client.Load(); c != nil {
		select {
		case <-c.Done():
		default:
			return c, nil
		}
	}
	c, err := h.startLocked(ctx)
	if err != nil {
		return nil, err
	}
	h.client.Store(c)
	return c, nil
}

func (h *Host) startLocked(ctx context.Context) (*Client, error) {
	if h.stop != nil {
		h.stop()
	}
	sctx, stop := context.WithCancel(context.Background()) // the session lives until Close or a new agent
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	errb := remote.NewCappedBuffer(8 << 10)
	ended := make(chan error, 1)
	go func() {
		err := h.Host.Run(sctx, &remote.Cmd{Argv: h.argv, Dir: h.dir, Stdin: inR, Stdout: outW, Stderr: errb})
		outW.CloseWithError(fmt.Errorf("agent session ended: %v", err))
		inR.Close()
		ended <- err
	}()
	c, err := NewClient(ctx, outR, inW, inW.Close, h.keepalive)
	if err != nil {
		stop()
		var ve *VersionError
		if errors.As(err, &ve) {
			return nil, errs.E(errs.OpExec, h.Name(), errs.KindConfig, err)
		}
		select {
		case serr := <-ended:
			if serr != nil {
				err = fmt.Errorf("%v (%v; stderr: %s)", err, serr, strings.TrimSpace(errb.String()))
			}
		case <-time.After(time.Second):
		}
		return nil, errs.E(errs.OpExec, h.Name(), errs.KindOf(err), fmt.Errorf("start the agent: %w", err))
	}
	h.stop = stop
	return c, nil
}

// Queues reports that the host holds back jobs beyond its slots (the
// agent's window), calling Cmd.OnStart when each starts.
func (h *Host) Queues() bool { return true }

// Health is the host's load and memory from its agent's heartbeats
// (remote.HealthReporter).
func (h *Host) Health() (remote.Health, bool) {
	if c := h.client.Load(); c != nil {
		return c.Health()
	}
	return remote.Health{}, false
}

// Close ends the agent (it kills what still runs and exits); the SSH host
// is not closed: it belongs to its cluster.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c := h.client.Swap(nil); c != nil {
		c.Close()
	}
	if h.stop != nil {
		// Give the agent a moment to kill its jobs and exit on the EOF
		// before the session is torn down.
		stop := h.stop
		h.stop = nil
		time.AfterFunc(5*time.Second, stop)
	}
	return nil
}

// Run runs a job through the agent, and anything else over SSH.
func (h *Host) Run(ctx context.Context, c *remote.Cmd) error {
	if _, job := c.Env["DSUB_JOB"]; !job || c.NoProcessGroup {
		return h.Host.Run(ctx, c)
	}
	if err := remote.ValidCmd(c); err != nil {
		return errs.E(errs.OpExec, h.Name(), errs.KindConfig, err)
	}
	cl, err := h.agent(ctx)
	if err != nil {
		if errs.KindOf(err) == errs.KindConfig {
			return err
		}
		return errs.E(errs.OpExec, h.Name(), errs.KindTransport, err)
	}
	job := Job{Start: StartMsg{Argv: c.Argv, Shell: c.Shell, Env: c.Env, Dir: c.Dir}, Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr, Sent: c.OnQueued}
	// The job's time limit runs from when it starts at the agent, not
	// while it waits in the agent's window.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var limit *time.Timer
	started := false
	job.Started = func(int) {
		if started {
			return // started once: one time limit, one start
		}
		started = true
		if c.Timeout > 0 {
			limit = time.AfterFunc(c.Timeout, func() { cancel(errTimedOut) })
		}
		if c.OnStart != nil {
			c.OnStart()
		}
	}
	m, pgid, err := cl.Run(ctx, job)
	if limit != nil {
		limit.Stop()
	}
	if c.Usage != nil {
		*c.Usage = remote.Usage{User: m.User, Sys: m.Sys, MaxRSS: m.MaxRSS, Wall: time.Duration(m.Runtime * float64(time.Second))}
	}
	switch {
	case errors.Is(err, ErrLost):
		return errs.E(errs.OpExec, h.Name(), errs.KindTransport, err).WithPGID(pgid)
	case err != nil && ctx.Err() != nil:
		kind := errs.KindCanceled
		if cause := context.Cause(ctx); errors.Is(cause, context.DeadlineExceeded) || cause == errTimedOut {
			kind = errs.KindTimeout
		}
		return errs.E(errs.OpExec, h.Name(), kind, fmt.Errorf("command interrupted: %w", context.Cause(ctx)))
	case err != nil:
		return errs.E(errs.OpExec, h.Name(), errs.KindTransport, err).WithPGID(pgid)
	case m.Error != "":
		// As a shell reports a program it cannot run.
		if c.Stderr != nil {
			fmt.Fprintf(c.Stderr, "dsub agent: %s\n", m.Error)
		}
		return errs.E(errs.OpExec, h.Name(), errs.KindRemoteExit, &remote.ExitError{Status: 127})
	case m.Status != 0 || m.Signal != "":
		return errs.E(errs.OpExec, h.Name(), errs.KindRemoteExit, &remote.ExitError{Status: m.Status, Signal: remote.Signal(m.Signal)})
	}
	return nil
}

// errTimedOut ends a job that ran past its Cmd.Timeout.
var errTimedOut = fmt.Errorf("ran past its time limit: %w", context.DeadlineExceeded)

var _ remote.Host = (*Host)(nil)
