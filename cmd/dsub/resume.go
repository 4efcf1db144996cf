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
	"github.com/dsub-dev/dsub/records"
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
	man, err := records.ReadManifest(records.RunDir(dir))
	if err != nil {
		return usagef("--resume %s: %v", dir, err)
	}
	if err := man.Resumable(); err != nil {
		return usagef("resume %s: %v", dir, err)
	}
	var rec runRecord
	if err := json.Unmarshal(man.Command, &rec); err != nil || len(rec.Args) == 0 {
		return usagef("--resume %s: run.json holds no recorded command line", dir)
	}
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
	abs(&rf.joblog)
	abs(&rf.returnDir)
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
			return usagef("--resume %s: the run read its jobs from stdin and saved no copy of them (%s)", dir, records.RunDir(dir).Input())
		}
		if !complete {
			fmt.Fprintf(stderr, "dsub: warning: the run was stopped before its stdin ended: resuming the jobs of the input it had read (%s)\n", saved)
		}
		rf.argsFile = saved
	}
	args = absSourceFiles(replay.Flags().Args(), rec.Cwd)
	if err := rf.validate(cmd.Context(), replay.Flags(), args); err != nil {
		return err
	}
	return runRun(cmd.Context(), &rhf, &rf, args, rec, stdin, stdout, stderr)
}

// savedInput returns the saved stdin of the run in dir and whether it is
// complete.
func savedInput(dir string) (string, bool) {
	rd := records.RunDir(dir)
	if _, err := os.Stat(rd.Input()); err == nil {
		return rd.Input(), true
	}
	if _, err := os.Stat(rd.InputPart()); err == nil {
		return rd.InputPart(), false
	}
	return "", false
}
