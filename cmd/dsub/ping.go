package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newPingCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "ping",
		Short: "Check that every host is reachable and report OS, arch, CPUs and round trip",
		Long: `Connect to every selected host, authenticate, and report one row per host:
reachable, auth, OS/arch, CPU count, round-trip time of one session on the
open connection, dsub's slots for the host, and any error.` + exitHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := hf.cluster(stderr)
			if err != nil {
				return err
			}
			defer cl.Close()
			res := cl.Ping(cmd.Context())
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
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Host, yesNo(r.Reachable), yesNo(r.AuthOK), osArch, cpus, rtt, slots, firstLine(msg))
			}
			tw.Flush()
			if failed > 0 {
				for _, r := range res {
					if r.Err != nil {
						fmt.Fprintf(stderr, "dsub: %v\n", r.Err)
					}
				}
				fmt.Fprintf(stderr, "dsub ping: %d of %d hosts failed\n", failed, len(res))
				return errReported
			}
			return nil
		},
	}
	hf.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "one JSON object per host")
	return c
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}
