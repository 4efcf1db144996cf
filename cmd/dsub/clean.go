package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newCleanCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var runs bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "clean",
		Short: "Remove dsub's binary cache (and with --runs, leftover run directories) from every host",
		Long: `Remove <workdir>/bin, the content-addressed cache of shipped programs, on
every selected host; with --runs, also <workdir>/runs, where --keep-remote
leaves run directories. The next dsub run uploads its program again.
What a run in progress uses (its run directory and program: its master
marks them every minute, and a process using them counts too) is kept and
reported; a run whose master died is cleaned 3 minutes after its last mark.
Temporary files of uploads cut off with their connection are removed once
idle for 10 minutes.

dsub cleans only a workdir it made (marked by <workdir>/.dsub-workdir,
which every run writes) and removes only names it makes there: 64-hex
cache files, run-id directories and its temporary upload names. Anything
else is reported and left. Each host's clean is bounded by --timeout.` + exitHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return usagef("--timeout %s: must be positive", timeout)
			}
			cl, err := hf.cluster(stderr)
			if err != nil {
				return err
			}
			defer cl.Close()
			start := time.Now()
			failed := 0
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			for _, r := range cl.Clean(ctx, runs) {
				if r.Err != nil {
					failed++
					fmt.Fprintf(stderr, "dsub: %s\n", visible(r.Err.Error()))
					continue
				}
				msg := "cleaned"
				if len(r.Kept) > 0 {
					msg += fmt.Sprintf("; kept %d in use: %s", len(r.Kept), strings.Join(r.Kept, " "))
				}
				if len(r.Foreign) > 0 {
					msg += fmt.Sprintf("; left %d not dsub's: %s", len(r.Foreign), strings.Join(r.Foreign, " "))
				}
				fmt.Fprintf(stdout, "%s: %s\n", r.Host, msg)
			}
			fmt.Fprintf(stderr, "dsub clean: %d ok, %d failed (%.2fs)\n", len(cl.Members())-failed, failed, time.Since(start).Seconds())
			if failed > 0 {
				return errReported
			}
			return nil
		},
	}
	hf.register(c)
	c.Flags().BoolVar(&runs, "runs", false, "also remove leftover run directories")
	c.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "per-host limit on the clean (connect included)")
	return c
}
