package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/inventory"
)

// Exit statuses. exitCode is the only place errors become one of these.
const (
	exitOK          = 0
	exitFailed      = 1 // some host or job failed
	exitUsage       = 2 // usage or configuration error
	exitInterrupted = 130
)

const exitHelp = `
Exit status:
  0    success: every host (or job) succeeded
  1    some host or job failed; the others' results are still reported
  2    usage or configuration error; nothing was run on any host
  130  interrupted (SIGINT/SIGTERM)
`

// usageError marks an error as the user's invocation or configuration.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// errReported is returned when the failure was already reported in full
// (per-host rows, a summary line): exit 1 without repeating it.
var errReported = errors.New("some hosts failed")

func exitCode(ctx context.Context, err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	if ctx.Err() != nil || errors.Is(err, context.Canceled) {
		return exitInterrupted
	}
	var ue usageError
	if errors.As(err, &ue) || errs.KindOf(err) == errs.KindConfig || inventory.IsConfigError(err) {
		fmt.Fprintln(stderr, "dsub:", visible(err.Error()))
		return exitUsage
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintln(stderr, "dsub:", visible(err.Error()))
	}
	return exitFailed
}

// run executes the dsub command line args. It is main without the process:
// tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil && (strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag")) {
		return usageError{err}
	}
	return err
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "dsub",
		Short: "Distribute jobs and admin commands to many hosts over SSH",
		Long: `dsub runs work across many hosts over plain SSH: nothing is installed on
the hosts beyond a stock sshd and an account you can log into.` + exitHelp,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print dsub's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintln(stdout, "dsub", versionString())
			return nil
		},
	})
	root.Version = versionString()
	root.SetVersionTemplate("dsub {{.Version}}\n")
	root.AddCommand(newPingCmd(stdout, stderr), newExecCmd(stdin, stdout, stderr), newPutCmd(stdout, stderr), newGetCmd(stdout, stderr),
		newRunCmd(stdin, stdout, stderr), newCleanCmd(stdout, stderr), newAgentCmd(stdin, stdout), newHostsCmd(stdout), newReportCmd(stdout, stderr))
	return root
}
