package main

import (
	"io"
	"os"
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
			return agent.Serve(cmd.Context(), stdin, stdout, opts)
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
