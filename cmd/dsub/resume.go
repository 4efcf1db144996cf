package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dsub-dev/dsub/distributor"
)

// resumeRun replays the command line recorded in DIR/run.json with
// --resume DIR. Flags given now (--hosts, --on, --retries, ...) override
// the recorded ones; relative paths, the default ./hosts.toml included,
// resolve against the recorded directory, whichever directory the resume
// starts from; the record itself is kept as it was. A run that read its
// jobs from stdin reads them from the copy it saved (DIR/input).
func resumeRun(cmd *cobra.Command, hf *hostFlags, f *runFlags, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		return usagef("run --resume takes no ARGs: they are recorded in the run")
	}
	dir := f.resume
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return usagef("--resume %s: %v", dir, err)
	}
	var doc struct {
		Command runRecord `json:"command"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || len(doc.Command.Args) == 0 {
		return usagef("--resume %s: run.json holds no recorded command line", dir)
	}
	rec := doc.Command
	var rhf hostFlags
	var rf runFlags
	replay := &cobra.Command{Use: "run"} // fresh variables for the recorded flags
	rhf.register(replay)
	registerRunFlags(replay, &rf)
	if err := replay.Flags().Parse(rec.Args); err != nil {
		return usagef("--resume %s: recorded command line: %v", dir, err)
	}
	// Flags set now win.
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if fl.Name != "resume" && fl.Name != "resume-failed" {
			_ = replay.Flags().Set(fl.Name, fl.Value.String())
		}
	})
	rf.resume, rf.resumeFailed = dir, f.resumeFailed
	abs := func(p *string) {
		if *p != "" && *p != "-" && !filepath.IsAbs(*p) && rec.Cwd != "" {
			*p = filepath.Join(rec.Cwd, *p)
		}
	}
	abs(&rf.binary)
	abs(&rf.commands)
	abs(&rf.argsFile)
	if rf.build != "" && distributor.IsLocalPackage(rf.build) {
		abs(&rf.build)
	}
	for i := range rf.files {
		abs(&rf.files[i])
	}
	if !cmd.Flags().Changed("hosts") {
		abs(&rhf.hostsFile)
	}
	if cmd.Flags().Changed("on") {
		rhf.on = hf.on
	}
	rhf.dir = rec.Cwd
	if rf.argsFile == "-" {
		saved, complete := savedInput(dir)
		if saved == "" {
			return usagef("--resume %s: the run read its jobs from stdin and saved no copy of them (%s)", dir, inputFile)
		}
		if !complete {
			fmt.Fprintf(stderr, "dsub: warning: the run was stopped before its stdin ended: resuming the jobs of the input it had read (%s)\n", saved)
		}
		rf.argsFile = saved
	}
	if err := rf.validate(cmd.Context(), replay.Flags(), replay.Flags().Args()); err != nil {
		return err
	}
	return runRun(cmd.Context(), &rhf, &rf, replay.Flags().Args(), rec, stdin, stdout, stderr)
}

// inputFile is where a run fed from stdin keeps its input: inputFile+".part"
// while it streams, renamed to inputFile once stdin ends.
const inputFile = "input"

// savedInput returns the saved stdin of the run in dir and whether it is
// complete.
func savedInput(dir string) (string, bool) {
	p := filepath.Join(dir, inputFile)
	if _, err := os.Stat(p); err == nil {
		return p, true
	}
	if _, err := os.Stat(p + ".part"); err == nil {
		return p + ".part", false
	}
	return "", false
}
