// Command fanout benchmarks ad-hoc fan-out: `uname -n` on N testenv hosts
// with dsub, parallel-ssh, pdsh and clush, side by side in one run on the
// same hosts, reported as ratios. Target: dsub at most 0.3x the fastest
// peer's wall time.
//
//	go run ./bench/fanout -n 32 -rounds 5
//
// Every tool starts as a fresh process each round, as a user would run it:
// dsub's advantage is one in-process handshake per host, not a warm cache.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/bench/internal/benchutil"
	"github.com/dsub-dev/dsub/testenv"
)

func main() {
	n := flag.Int("n", 32, "hosts")
	rounds := flag.Int("rounds", 5, "timed rounds per tool")
	state := flag.String("state", "", "use the running testenv cluster in this state dir instead of starting one")
	dsub := flag.String("dsub", "", "dsub binary (default: build one)")
	flag.Parse()
	if err := run(*n, *rounds, *state, *dsub); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

func run(n, rounds int, state, dsub string) error {
	ctx := context.Background()
	var c *testenv.Cluster
	var err error
	if state != "" {
		c, err = testenv.Load(state)
	} else {
		c, err = testenv.StartUnique(ctx, n, os.Stderr)
		if err == nil {
			defer c.Down(context.Background())
		}
	}
	if err != nil {
		return err
	}
	n = len(c.Hosts)
	tmp, err := os.MkdirTemp("", "dsub-bench-fanout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if dsub == "" {
		dsub = filepath.Join(tmp, "dsub")
		if out, err := exec.Command("go", "build", "-o", dsub, "./cmd/dsub").CombinedOutput(); err != nil {
			return fmt.Errorf("build dsub: %v: %s", err, out)
		}
	}
	names := c.Names()
	hostList := filepath.Join(tmp, "hosts.txt")
	if err := os.WriteFile(hostList, []byte(strings.Join(names, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	rng := fmt.Sprintf("h[01-%02d]", n)
	sshOpts := "-F " + c.SSHConfig
	check := func(out string) error {
		for _, h := range names {
			if !strings.Contains(out, h) {
				return fmt.Errorf("no output from %s", h)
			}
		}
		return nil
	}
	fan := fmt.Sprint(n)
	tools := []benchutil.Tool{
		{Name: "dsub", Argv: []string{dsub, "exec", "--hosts", c.HostsFile, "--ssh-config", "none", "--", "uname", "-n"}, Check: check},
		{Name: "parallel-ssh -p " + fan, Argv: []string{"parallel-ssh", "-p", fan, "-h", hostList, "-x", sshOpts, "-i", "uname", "-n"}, Check: check},
		{Name: "pdsh -f " + fan, Argv: []string{"pdsh", "-R", "ssh", "-f", fan, "-w", rng, "uname", "-n"}, Env: []string{"PDSH_SSH_ARGS_APPEND=" + sshOpts}, Check: check},
		{Name: "clush -f " + fan, Argv: []string{"clush", "-f", fan, "-w", rng, "-o", sshOpts, "uname", "-n"}, Check: check},
	}
	start := time.Now()
	res := benchutil.Run(ctx, tools, rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("fanout: `uname -n` on %d %s hosts, %d rounds (%.0fs)", n, c.Backend, rounds, time.Since(start).Seconds()), "dsub", res)
	best, ok := benchutil.Fastest(res, tools[1].Name, tools[2].Name, tools[3].Name)
	d, dok := benchutil.Fastest(res, "dsub")
	if ok && dok {
		ratio := float64(d.Median()) / float64(best.Median())
		verdict := "MET"
		if ratio > 0.3 {
			verdict = "MISSED"
		}
		fmt.Printf("\ndsub / fastest peer (%s): %.2fx  (target <= 0.30x: %s)\n", best.Tool, ratio, verdict)
	}
	for _, r := range res {
		if r.Err != nil {
			return fmt.Errorf("a tool failed: %v", r.Err)
		}
	}
	return nil
}
