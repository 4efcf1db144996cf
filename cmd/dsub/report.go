package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/monitor"
)

func newReportCmd(stdout, stderr io.Writer) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "report RUN_DIR [-o FILE]",
		Short: "Write a run's report: one self-contained HTML file",
		Long: `Write the report of the run recorded in RUN_DIR (finished, interrupted,
or still going): its summary, per-host table, timeline of jobs per host
slot, histogram of job durations, stragglers, and failures with the
tails of their stderr. It is one HTML file with nothing to fetch: it
opens offline and can be mailed.

The report goes to RUN_DIR/report.html unless -o names a file ("-":
standard output). Like the run's other records it is readable by you
alone.` + exitHelp,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			if out == "" {
				out = filepath.Join(dir, "report.html")
			}
			st, err := monitor.FromRecords(dir)
			if err != nil {
				return usagef("report: %v", err)
			}
			if out == "-" {
				w := bufio.NewWriter(stdout)
				if err := monitor.WritePage(w, &st); err != nil {
					return err
				}
				return w.Flush()
			}
			if err := writeReport(out, &st); err != nil {
				return fmt.Errorf("report: %w", err)
			}
			fmt.Fprintf(stderr, "dsub: report: %s\n", out)
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", "", "write the report to `FILE` (\"-\": standard output)")
	return c
}

// writeReport writes the report to path through a temporary file, so a
// reader never sees half of one.
func writeReport(path string, st *monitor.State) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".report-*.html")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	w := bufio.NewWriterSize(f, 256<<10)
	err = monitor.WritePage(w, st)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
