package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/agent"
)

// agentFloorBin is where shipAgentFloor puts dsub on each host, relative
// to the login directory.
const agentFloorBin = ".dsub-bench/dsub"

// shipAgentFloor copies the dsub binary to every host for agentFloor,
// once, before the timed rounds (dsub's own runs find theirs in their
// content-addressed cache after the first round).
func (b *bench) shipAgentFloor() error {
	for _, n := range b.names {
		f, err := os.Open(b.dsub)
		if err != nil {
			return err
		}
		cmd := exec.Command("ssh", "-F", b.c.SSHConfig, n, "mkdir -p .dsub-bench && cat > "+agentFloorBin+".tmp && chmod 755 "+agentFloorBin+".tmp && mv "+agentFloorBin+".tmp "+agentFloorBin)
		cmd.Stdin = f
		out, err := cmd.CombinedOutput()
		f.Close()
		if err != nil {
			return fmt.Errorf("ship dsub to %s: %v: %s", n, err, out)
		}
	}
	return nil
}

// agentFloor runs `echo N` jobs through one dsub agent per host, driven
// by agent.Client directly: the agent protocol over SSH, with slots+window
// jobs in flight per host as dsub keeps them, and nothing of the engine
// (no queue, no logs, no journal, no reduce). Its CPU per job is what
// the transport alone costs the master, below which dsub cannot go.
func agentFloor(args []string) error {
	c, jobs, slots, dial, err := floorArgs(args)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var next atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	for _, h := range c.Hosts {
		cl, err := dial(h)
		if err != nil {
			return err
		}
		defer cl.Close()
		s, err := cl.NewSession()
		if err != nil {
			return err
		}
		in, _ := s.StdinPipe()
		out, _ := s.StdoutPipe()
		if err := s.Start(agentFloorBin + " agent --keepalive 15s --slots " + strconv.Itoa(slots)); err != nil {
			return err
		}
		ac, err := agent.NewClient(ctx, out, in, in.Close, 15*time.Second)
		if err != nil {
			return fmt.Errorf("%s: %w", h.Name, err)
		}
		defer ac.Close()
		for w := 0; w < slots+max(1, slots/2); w++ { // slots, and dsub's window
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					n := next.Add(1)
					if n > int64(jobs) {
						return
					}
					// The client writes a job's output from its one
					// reader, and before the exit that ends Run.
					var buf bytes.Buffer
					m, _, err := ac.Run(ctx, agent.Job{Start: agent.StartMsg{Shell: "echo " + strconv.FormatInt(n, 10)}, Stdout: &buf, Stderr: &buf})
					if err == nil && m.Status != 0 {
						err = fmt.Errorf("job %d: exit %d", n, m.Status)
					}
					if err != nil {
						fail(err)
						return
					}
					mu.Lock()
					os.Stdout.Write(buf.Bytes())
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	return firstErr
}
