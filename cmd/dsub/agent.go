package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/agent"
)

// newAgentCmd is `dsub agent`, hidden: what a run starts on each host in
// agent mode, over one SSH session whose stdin and stdout carry the agent
// protocol. It exits when its master closes the session or goes silent,
// killing its jobs first.
func newAgentCmd(stdin io.Reader, stdout io.Writer) *cobra.Command {
	var opts agent.Options
	cmd := &cobra.Command{
		Use:    "agent",
		Short:  "Run jobs for a master over stdin and stdout (started by dsub run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Keepalive <= 0 || opts.Grace <= 0 {
				return usagef("agent: --keepalive and --grace must be positive")
			}
			// A write to a master that can no longer hear must fail
			// (EPIPE) and end the agent through its shutdown, which
			// kills the jobs; the default SIGPIPE would kill the agent
			// alone and leave them. A hangup ends it the same way.
			signal.Ignore(syscall.SIGPIPE)
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGHUP)
			defer stop()
			return agent.Serve(ctx, stdin, stdout, opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Keepalive, "keepalive", 15*time.Second, "the master is gone after this long without a frame")
	cmd.Flags().DurationVar(&opts.Grace, "grace", 2*time.Second, "time between TERM and KILL for a killed job")
	cmd.Flags().StringVar(&opts.RemoveDir, "remove-dir", "", "directory to remove when the master is gone")
	cmd.Flags().IntVar(&opts.Slots, "slots", 0, "jobs running at once; more wait here, in order (0: no bound)")
	return cmd
}

// agentBinary is the agent a run ships: this very program (dsub is its
// own agent). "" if it cannot be found.
func agentBinary() string {
	p, err := os.Executable()
	if err != nil {
		return ""
	}
	return p
}

// dsubCmd is the package a cross-built agent is built from.
const dsubCmd = "github.com/dsub-dev/dsub/cmd/dsub"

// agentFor provides dsub for a platform other than the running one's,
// for hosts this binary cannot serve as their agent: dsub-GOOS-GOARCH
// beside self (as a release ships them), else a cross build of dsub
// (CGO_ENABLED=0) when Go is installed and the working directory is in
// dsub's source tree or a module that requires it, into the user's cache
// directory. Its error says how to provide one.
func agentFor(self string) func(ctx context.Context, goos, goarch string) (string, error) {
	return func(ctx context.Context, goos, goarch string) (string, error) {
		name := "dsub-" + goos + "-" + goarch
		beside := filepath.Join(filepath.Dir(self), name)
		if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
			return beside, nil
		}
		p, err := crossBuild(ctx, goos, goarch)
		if err != nil {
			return "", fmt.Errorf("no %s beside %s, and %w", name, self, err)
		}
		return p, nil
	}
}

// crossBuild builds dsub for goos/goarch into the user's cache directory
// (a temporary name, then renamed, so that runs building at once never
// ship a half-written file) and returns its path.
func crossBuild(ctx context.Context, goos, goarch string) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", errors.New("no Go toolchain (go) is installed to cross-build one")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cross-build: %w", err)
	}
	dir := filepath.Join(cache, "dsub", "agents")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("cross-build: %w", err)
	}
	out := filepath.Join(dir, "dsub-"+goos+"-"+goarch)
	tmp, err := os.MkdirTemp(dir, ".build-*")
	if err != nil {
		return "", fmt.Errorf("cross-build: %w", err)
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, "dsub")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", built, dsubCmd)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if msg, err := cmd.CombinedOutput(); err != nil {
		first, _, _ := strings.Cut(strings.TrimSpace(string(msg)), "\n")
		return "", fmt.Errorf("cross-building %s (run dsub from its source tree to build one) failed: %v: %s", dsubCmd, err, first)
	}
	if err := os.Rename(built, out); err != nil {
		return "", fmt.Errorf("cross-build: %w", err)
	}
	return out, nil
}
