package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/internal/hostrange"
)

func newPingCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var asJSON bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "ping",
		Short: "Check that every host is reachable and report OS, arch, CPUs and round trip",
		Long: `Connect to every selected host, authenticate, and report one row per host:
reachable, auth, OS/arch, CPU count, round-trip time of one session on the
open connection, dsub's slots for the host, and any error.` + exitHelp,
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
			res := cl.Ping(cmd.Context(), timeout)
			failed := 0
			enc := json.NewEncoder(stdout)
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			if !asJSON {
				fmt.Fprintln(tw, "HOST\tREACHABLE\tAUTH\tOS/ARCH\tCPUS\tRTT\tSLOTS\tERROR")
			}
			for _, r := range res {
				msg := ""
				if r.Err != nil {
					failed++
					msg = r.Err.Error()
				}
				if asJSON {
					_ = enc.Encode(map[string]any{
						"host": r.Host, "reachable": r.Reachable, "auth": r.AuthOK,
						"os": r.Info.OS, "arch": r.Info.Arch, "cpus": r.Info.CPUs,
						"rtt_ms": float64(r.Info.RTT.Microseconds()) / 1000, "slots": r.Slots, "error": msg,
					})
					continue
				}
				osArch, cpus, rtt, slots := "-", "-", "-", "-"
				if r.Err == nil {
					osArch = r.Info.OS + "/" + r.Info.Arch
					cpus = fmt.Sprint(r.Info.CPUs)
					rtt = fmt.Sprintf("%.1fms", float64(r.Info.RTT.Microseconds())/1000)
					slots = fmt.Sprint(r.Slots)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, yesNo(r.Reachable), authCell(r), osArch, cpus, rtt, slots, oneLine(msg))
			}
			tw.Flush()
			if failed == 0 {
				return nil
			}
			// Each error was printed once, in its row; the summary names
			// the hosts.
			var bad []string
			config := false
			for _, r := range res {
				if r.Err != nil {
					bad = append(bad, r.Host)
					config = config || errs.KindOf(r.Err) == errs.KindConfig
				}
			}
			fmt.Fprintf(stderr, "dsub ping: %d of %s failed: %s\n", failed, plural(len(res), "host"), hostrange.Fold(bad))
			if config {
				return usagef("ping: fix the configuration of the hosts whose ERROR says so")
			}
			return errReported
		},
	}
	hf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per host")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Second, "per-host limit on connect and probe; a host that hangs is reported as timed out")
	return c
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// oneLine folds a message onto one line ("; " between its lines), so
// that a hint stays in its row.
// oneLine is an error on one line, for a table: its hint in brackets.
func oneLine(s string) string {
	if msg, hint, ok := strings.Cut(s, "\n  hint: "); ok {
		s = msg + " (hint: " + hint + ")"
	}
	return visible(strings.Join(strings.Fields(s), " "))
}

// authCell is the AUTH column: yes or no where authentication was tried,
// "hostkey" where the host's key was refused first (never a "no": no
// key of ours was offered), "-" where the host was not reached.
func authCell(r distributor.PingResult) string {
	switch {
	case r.AuthOK:
		return "yes"
	case errs.KindOf(r.Err) == errs.KindHostKey:
		return "hostkey"
	case r.Reachable:
		return "no"
	}
	return "-"
}
