package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func newCleanCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var runs bool
	c := &cobra.Command{
		Use:   "clean",
		Short: "Remove dsub's binary cache (and with --runs, leftover run directories) from every host",
		Long: `Remove <workdir>/bin, the content-addressed cache of shipped programs, on
every selected host; with --runs, also <workdir>/runs, where --keep-remote
leaves run directories. The next dsub run uploads its program again.
What a run in progress uses (its run directory and program: its master
marks them every minute, and a process using them counts too) is kept and
reported; a run whose master died is cleaned 3 minutes after its last mark.` + exitHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := hf.cluster(stderr)
			if err != nil {
				return err
			}
			defer cl.Close()
			start := time.Now()
			failed := 0
			for _, r := range cl.Clean(cmd.Context(), runs) {
				if r.Err != nil {
					failed++
					fmt.Fprintf(stderr, "dsub: %v\n", r.Err)
					continue
				}
				if len(r.Kept) > 0 {
					fmt.Fprintf(stdout, "%s: cleaned; kept %d in use: %s\n", r.Host, len(r.Kept), strings.Join(r.Kept, " "))
					continue
				}
				fmt.Fprintf(stdout, "%s: cleaned\n", r.Host)
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
	return c
}
