package distributor

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/agent"
	"github.com/dsub-dev/dsub/remote"
)

// Launchers: how a run's jobs reach a host (RunOptions.Launch).
const (
	// LaunchSession runs each job as its own SSH session.
	LaunchSession = "session"
	// LaunchAgent runs jobs through one agent per host (package agent),
	// over one session; a host where no agent can run is left out.
	LaunchAgent = "agent"
	// LaunchAuto is LaunchAgent where an agent can run, else
	// LaunchSession, with a note saying why.
	LaunchAuto = "auto"
)

// ValidLaunch reports whether s names a launcher.
func ValidLaunch(s string) bool {
	return s == "" || s == LaunchSession || s == LaunchAgent || s == LaunchAuto
}

// launch decides how h's jobs are started, and starts its agent if it
// gets one. It returns an error only when LaunchAgent was asked for and no
// agent can run there.
func (r *Run) launch(ctx context.Context, h *runHost, wd string) error {
	h.jobs, h.rec.Launcher = h.m.Host, LaunchSession
	if r.opts.Launch == "" || r.opts.Launch == LaunchSession {
		return nil
	}
	if h.m.Inv.Local && r.opts.Launch == LaunchAuto {
		return nil // a local process starts as fast as an agent could start it
	}
	why := r.startAgent(ctx, h, wd)
	if why == nil {
		h.rec.Launcher = LaunchAgent
		return nil
	}
	if r.opts.Launch == LaunchAgent {
		return why
	}
	h.rec.LaunchNote = why.Error()
	r.opts.Warn(fmt.Sprintf("host %s runs jobs as sessions: %v", h.m.Name(), why))
	return nil
}

// startAgent ships the agent (the dsub binary, content-addressed like the
// program) and starts it; nil when h's jobs now go through it.
func (r *Run) startAgent(ctx context.Context, h *runHost, wd string) error {
	art, err := r.agentFor(ctx, h)
	if err != nil {
		return err
	}
	bin := path.Join(wd, "bin", art.SHA256)
	n, err := ensureRemote(ctx, h.m.Host, art, bin, 0o755)
	if err != nil {
		return fmt.Errorf("ship the agent: %w", err)
	}
	h.rec.Sent += n
	ka := 3 * h.m.Inv.Keepalive // the SSH layer's window: three missed keepalives
	if ka <= 0 {
		ka = 15 * time.Second
	}
	argv := []string{bin, "agent", "--keepalive", ka.String(), "--slots", strconv.Itoa(h.slots)}
	if !r.opts.KeepRemote {
		argv = append(argv, "--remove-dir", h.runDir)
	}
	// Not in the run directory and without DSUB_RUN: the sweeps, which
	// kill what carries the run's marker, must not take the agent.
	// The master's window is 4/5 of the agent's (12 s of 15): the agent
	// beats every 3 s, so a frozen host is declared lost at most 12 s
	// after its last beat, within 15 s of the freeze.
	ah := agent.NewHost(h.m.Host, argv, wd, ka-ka/5)
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := ah.Connect(actx); err != nil {
		return err
	}
	h.jobs = ah
	return nil
}

// agentFor returns the agent binary for h's platform: the run's own
// agent, or one RunOptions.AgentFor provides for another platform.
func (r *Run) agentFor(ctx context.Context, h *runHost) (artifact, error) {
	if r.agentArt.Path == "" {
		return artifact{}, fmt.Errorf("no agent binary")
	}
	bi := r.agentInfo
	if bi.GOOS == "" || h.rec.OS == "" || bi.GOOS == h.rec.OS && bi.GOARCH == h.rec.Arch {
		return r.agentArt, nil
	}
	if r.opts.AgentFor == nil {
		return artifact{}, fmt.Errorf("the agent is built for %s/%s and the host is %s/%s", bi.GOOS, bi.GOARCH, h.rec.OS, h.rec.Arch)
	}
	return r.agentsFor.get(ctx, r.opts.AgentFor, h.rec.OS, h.rec.Arch)
}

// agentsFor holds the agents for other platforms, each asked for once
// (a cross build takes a while; its hosts wait for the same one).
type agentsFor struct {
	mu     sync.Mutex
	builds map[string]*agentBuild // "os/arch"; guarded by mu
}

type agentBuild struct {
	once sync.Once
	art  artifact
	err  error
}

func (a *agentsFor) get(ctx context.Context, provide func(ctx context.Context, goos, goarch string) (string, error), goos, goarch string) (artifact, error) {
	key := goos + "/" + goarch
	a.mu.Lock()
	if a.builds == nil {
		a.builds = map[string]*agentBuild{}
	}
	b := a.builds[key]
	if b == nil {
		b = &agentBuild{}
		a.builds[key] = b
	}
	a.mu.Unlock()
	b.once.Do(func() {
		p, err := provide(ctx, goos, goarch)
		if err != nil {
			b.err = fmt.Errorf("no agent for %s: %w", key, err)
			return
		}
		// Trust what the file says, not what it is called.
		bi, err := inspectBinary(p)
		if err != nil {
			b.err = fmt.Errorf("the agent for %s: %w", key, err)
			return
		}
		if bi.GOOS != goos || bi.GOARCH != goarch {
			b.err = fmt.Errorf("the agent for %s (%s) is built for %s/%s", key, p, bi.GOOS, bi.GOARCH)
			return
		}
		b.art, b.err = hashFile(p)
	})
	return b.art, b.err
}

// queuer is a Host that holds back commands beyond its slots (an agent),
// calling Cmd.OnStart as each starts.
type queuer interface{ Queues() bool }

// window is how many jobs wait at h beyond its slots, so that a slot that
// frees starts the next job without a round trip to the master: none for
// a host that starts what it is sent at once.
func (h *runHost) window() int {
	if h.noWindow {
		return 0
	}
	if q, ok := h.jobs.(queuer); ok && q.Queues() {
		return max(1, h.slots/2)
	}
	return 0
}

// closeAgent ends h's agent, if it has one.
func (h *runHost) closeAgent() {
	if ah, ok := h.jobs.(*agent.Host); ok {
		ah.Close()
	}
}

var _ remote.Host = (*agent.Host)(nil)
