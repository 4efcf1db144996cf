package agent

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/remote"
)

// Client is the master's end of one agent connection. It is safe for
// concurrent use: each Run is one job, routed by its handle.
type Client struct {
	w         *Writer
	keepalive time.Duration
	closeIn   func() error // closes the agent's stdin: it then kills its jobs and exits

	mu    sync.Mutex
	calls map[uint32]*call
	next  uint32
	err   error         // why the connection ended
	dead  chan struct{} // closed when it ends
	heard atomic.Int64  // unix nanos of the last frame from the agent
	// health is the host's load and memory from the agent's last
	// heartbeat that carried them.
	health atomic.Pointer[remote.Health]
	Agent  HelloMsg // the agent's hello
}

type call struct {
	stdout, stderr io.Writer
	pgid           chan int
	exit           chan ExitMsg
	// window holds a token for each stdin frame the agent has not yet
	// acknowledged (at most stdinWindow); ended is closed with the call.
	window chan struct{}
	ended  chan struct{}
}

// ErrLost is the error of a Run whose connection to its agent ended: the
// job may still run until the agent notices its master is gone.
var ErrLost = errors.New("agent connection lost")

// NewClient speaks to an agent whose stdout is r and stdin w (closeIn
// closes w). It exchanges Hello frames, then reads frames and sends
// heartbeats until Close, EOF, or silence for keepalive.
func NewClient(ctx context.Context, r io.Reader, w io.Writer, closeIn func() error, keepalive time.Duration) (*Client, error) {
	if keepalive <= 0 {
		keepalive = 15 * time.Second
	}
	c := &Client{w: NewCoalescingWriter(w, Coalesce), keepalive: keepalive, closeIn: closeIn, calls: map[uint32]*call{}, dead: make(chan struct{})}
	rd := NewReader(r)
	type res struct {
		f   Frame
		err error
	}
	first := make(chan res, 1)
	go func() { f, err := rd.Read(); first <- res{f, err} }()
	if err := c.w.WriteJSON(THello, 0, HelloMsg{Version: Version, Program: "dsub"}); err != nil {
		return nil, fmt.Errorf("agent: send hello: %w", err)
	}
	var f Frame
	select {
	case x := <-first:
		if x.err != nil {
			return nil, fmt.Errorf("agent: no hello: %w", x.err)
		}
		f = x.f
	case <-ctx.Done():
		closeIn()
		return nil, fmt.Errorf("agent: no hello: %w", ctx.Err())
	}
	h, err := checkHello(f, "agent")
	if err != nil {
		closeIn()
		return nil, err
	}
	c.Agent = h
	c.heard.Store(time.Now().UnixNano())
	go c.read(rd)
	go c.beat()
	return c, nil
}

// Done is closed when the connection has ended; Err says why.
func (c *Client) Done() <-chan struct{} { return c.dead }

func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection: the agent kills what still runs and exits.
func (c *Client) Close() error {
	c.end(errors.New("closed"))
	return nil
}

func (c *Client) end(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	c.mu.Unlock()
	close(c.dead)
	_ = c.closeIn()
}

// read routes the agent's frames to their calls.
func (c *Client) read(rd *Reader) {
	for {
		f, err := rd.Read()
		if err != nil {
			c.end(fmt.Errorf("%w: %v", ErrLost, err))
			return
		}
		c.heard.Store(time.Now().UnixNano())
		if f.Type == TPing {
			c.heartbeat(f.Payload)
			continue
		}
		c.mu.Lock()
		k := c.calls[f.Handle]
		if f.Type == TExit {
			delete(c.calls, f.Handle)
		}
		c.mu.Unlock()
		if k == nil {
			continue // a call abandoned after its connection was declared lost
		}
		switch f.Type {
		case TStdinAck:
			select {
			case <-k.window:
			default: // more acknowledged than sent: nothing to free
			}
		case TStdout:
			_, _ = k.stdout.Write(f.Payload)
		case TStderr:
			_, _ = k.stderr.Write(f.Payload)
		case TStarted:
			if len(f.Payload) == 4 {
				select {
				case k.pgid <- int(binary.BigEndian.Uint32(f.Payload)):
				default: // a second Started for the job: the first stands
				}
			}
		case TExit:
			var m ExitMsg
			if err := json.Unmarshal(f.Payload, &m); err != nil {
				m = ExitMsg{Status: -1, Error: "bad exit frame: " + err.Error()}
			}
			k.exit <- m
		default:
			c.end(fmt.Errorf("agent protocol: unexpected %s frame from the agent", f.Type))
			return
		}
	}
}

// Health returns the host's health from the agent's latest heartbeat
// (At: when it arrived); ok is false until one carried it.
func (c *Client) Health() (h remote.Health, ok bool) {
	if p := c.health.Load(); p != nil {
		return *p, true
	}
	return remote.Health{}, false
}

// heartbeat keeps the health an agent's ping carries, if any.
func (c *Client) heartbeat(payload []byte) {
	var m HealthMsg
	if len(payload) == 0 || json.Unmarshal(payload, &m) != nil {
		return // an agent that cannot read its host's health
	}
	c.health.Store(&remote.Health{Load1: m.Load1, MemAvail: kib(m.MemAvailKB), MemTotal: kib(m.MemTotalKB), At: time.Now()})
}

// kib is n KiB in bytes, 0 for a negative count and at most the largest
// int64 (an agent's figure, shifted, would wrap to 0 at 2^54 KiB).
func kib(n int64) int64 {
	switch {
	case n < 0:
		return 0
	case n > math.MaxInt64>>10:
		return math.MaxInt64
	}
	return n << 10
}

// beat pings the agent and declares it lost the moment keepalive has
// passed with no word from it: a timer set to when that will be, not a
// check on the ping's tick (which let a frozen host go unnoticed for up
// to a tick more).
func (c *Client) beat() {
	ping := time.NewTicker(c.keepalive / 3)
	defer ping.Stop()
	check := time.NewTimer(c.keepalive)
	defer check.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-check.C:
			idle := time.Since(time.Unix(0, c.heard.Load()))
			if idle >= c.keepalive {
				c.end(fmt.Errorf("%w: no word from the agent for %s", ErrLost, c.keepalive))
				return
			}
			check.Reset(c.keepalive - idle)
		case <-ping.C:
			if err := c.w.Write(Frame{Type: TPing}); err != nil {
				c.end(fmt.Errorf("%w: %v", ErrLost, err))
				return
			}
		}
	}
}

// Job is a job for Run.
type Job struct {
	Start          StartMsg
	Stdin          io.Reader // nil: none
	Stdout, Stderr io.Writer
	// Started, if set, is called when the process has started (a job may
	// first wait at the agent for a slot).
	Started func(pgid int)
	// Sent, if set, is called once the start frame is written: jobs sent
	// after this one reach the agent after it.
	Sent func()
}

// Run runs a job to completion. Cancelling ctx kills the job's process
// group (TERM, then KILL) and waits for its exit. It returns the job's
// exit, its process group (0 if it never started), and an error wrapping
// ErrLost if the connection ended first (the job may then still run), or
// ctx's error if it was cancelled.
func (c *Client) Run(ctx context.Context, j Job) (ExitMsg, int, error) {
	k := &call{stdout: j.Stdout, stderr: j.Stderr, pgid: make(chan int, 1), exit: make(chan ExitMsg, 1),
		window: make(chan struct{}, stdinWindow), ended: make(chan struct{})}
	defer close(k.ended)
	if k.stdout == nil {
		k.stdout = io.Discard
	}
	if k.stderr == nil {
		k.stderr = io.Discard
	}
	j.Start.Stdin = j.Stdin != nil
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return ExitMsg{Status: -1}, 0, err
	}
	c.next++
	h := c.next
	c.calls[h] = k
	c.mu.Unlock()
	if err := c.w.WriteJSON(TStart, h, j.Start); err != nil {
		c.end(fmt.Errorf("%w: %v", ErrLost, err))
		return ExitMsg{Status: -1}, 0, c.Err()
	}
	if j.Sent != nil {
		j.Sent()
	}
	pgid := 0
	killed := false
	for {
		select {
		case p := <-k.pgid:
			if pgid != 0 {
				continue // a second Started frame (a hostile or broken agent)
			}
			pgid = p
			// Stdin is sent once the process runs: a job waiting at the
			// agent for a slot has nowhere to put it yet.
			if j.Stdin != nil {
				go c.sendStdin(h, k, j.Stdin)
			}
			if j.Started != nil {
				j.Started(pgid)
			}
		case m := <-k.exit:
			// The started frame came before the exit; both may be
			// waiting, and select takes either.
			select {
			case p := <-k.pgid:
				if pgid == 0 {
					pgid = p
					if j.Started != nil {
						j.Started(pgid)
					}
				}
			default:
			}
			switch {
			case killed:
				return m, pgid, ctx.Err()
			case m.Abandoned:
				// Killed by an agent that had lost us (a partition
				// that healed before we noticed): the host failed,
				// not the job.
				return m, pgid, fmt.Errorf("%w: the agent lost its master and killed the job", ErrLost)
			}
			return m, pgid, nil
		case <-c.dead:
			select {
			case pgid = <-k.pgid:
			default:
			}
			return ExitMsg{Status: -1}, pgid, c.Err()
		case <-ctxDone(ctx, killed):
			killed = true
			if err := c.w.Write(Frame{Type: TKill, Handle: h}); err != nil {
				c.end(fmt.Errorf("%w: %v", ErrLost, err))
			}
		}
	}
}

// ctxDone is ctx.Done until the kill has been sent, then never.
func ctxDone(ctx context.Context, sent bool) <-chan struct{} {
	if sent {
		return nil
	}
	return ctx.Done()
}

// sendStdin sends r as job h's stdin, at most stdinWindow frames ahead
// of what the agent has written to the job's pipe, until the call ends.
func (c *Client) sendStdin(h uint32, k *call, r io.Reader) {
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			select {
			case k.window <- struct{}{}:
			case <-k.ended:
				return
			case <-c.dead:
				return
			}
			if c.w.Write(Frame{Type: TStdin, Handle: h, Payload: buf[:n]}) != nil {
				return
			}
		}
		if err != nil {
			_ = c.w.Write(Frame{Type: TStdinEOF, Handle: h})
			return
		}
	}
}
