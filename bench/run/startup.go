package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/bench/internal/benchutil"
)

// startup: 8. the start-up cost: one tiny job on 4 hosts whose caches
// are warm, in agent and session mode, beside pdsh and parallel -S
// running the same command, and dsub exec. Each job prints its host's
// clock when it started (the hosts share this machine's kernel clock),
// so the time to the first job's start is read beside the time to the
// end.
func (b *bench) startup(ctx context.Context) {
	c, logs, names, dsub := b.c, b.logs, b.names, b.dsub
	const job = `date +%s%N`
	first := map[string][]time.Duration{}
	var t0 time.Time
	mark := func() error { t0 = time.Now(); return nil }
	// started reads the earliest start stamp of the output's lines.
	started := func(tool string, want int) func(string) error {
		return func(out string) error {
			var stamps []int64
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(l)
				if len(f) == 0 {
					continue
				}
				if n, err := strconv.ParseInt(f[len(f)-1], 10, 64); err == nil {
					stamps = append(stamps, n)
				}
			}
			if len(stamps) != want {
				return fmt.Errorf("%d start stamps, want %d: %q", len(stamps), want, out)
			}
			sort.Slice(stamps, func(i, j int) bool { return stamps[i] < stamps[j] })
			first[tool] = append(first[tool], time.Unix(0, stamps[0]).Sub(t0))
			return nil
		}
	}
	login := make([]string, len(names))
	for i, n := range names {
		login[i] = "1/" + n
	}
	run := func(launch string) []string {
		return []string{dsub, "run", "--hosts", c.HostsFile, "--ssh-config", "none", "--logs", logs, "--launch", launch, "--", job}
	}
	warm := func() error { return sh(dsub, run("agent")[1:]...) } // the agent and the caches in place
	tools := []benchutil.Tool{
		{Name: "dsub run --launch agent", Argv: run("agent"), Setup: warm, Before: mark, Check: started("dsub run --launch agent", 1)},
		{Name: "dsub run --launch session", Argv: run("session"), Before: mark, Check: started("dsub run --launch session", 1)},
		{Name: "dsub exec (4 hosts)", Argv: []string{dsub, "exec", "--hosts", c.HostsFile, "--ssh-config", "none", "--", job}, Before: mark, Check: started("dsub exec (4 hosts)", len(names))},
		{Name: "pdsh -R ssh (4 hosts)", Argv: []string{"pdsh", "-R", "ssh", "-w", strings.Join(names, ","), job}, Env: []string{"PDSH_SSH_ARGS_APPEND=-F " + c.SSHConfig},
			Before: mark, Check: started("pdsh -R ssh (4 hosts)", len(names))},
		{Name: "parallel -S", Argv: []string{"parallel", "--will-cite", "-S", strings.Join(login, ","), "--ssh", "ssh -F " + c.SSHConfig, job + "; : {}", ":::", "1"},
			Before: mark, Check: started("parallel -S", 1)},
	}
	res := benchutil.Run(ctx, tools, b.rounds, os.Stderr)
	benchutil.Report(os.Stdout, fmt.Sprintf("8. start-up: one tiny job, %d hosts with warm caches (time to the end)", len(names)), "pdsh -R ssh (4 hosts)", res)
	for _, r := range res {
		if d := first[r.Tool]; len(d) > 0 {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			fmt.Printf("   %-28s first job started after %.3fs (median of %d)\n", r.Tool, d[len(d)/2].Seconds(), len(d))
		}
	}
}
