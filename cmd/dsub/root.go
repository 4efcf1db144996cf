package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/errs"
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

// statusError is an exit status chosen by the command (exec -S: the
// largest remote one), its failures already reported.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

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
	if errors.As(err, &ue) || errs.KindOf(err) == errs.KindConfig { // a hosts file's errors too (inventory.Error.ErrKind)
		fmt.Fprintln(stderr, "dsub:", visible(err.Error()))
		return exitUsage
	}
	var se statusError
	if errors.As(err, &se) {
		return int(se)
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintln(stderr, "dsub:", visible(err.Error()))
	}
	return exitFailed
}

// run executes the dsub command line args. It is main without the process:
// tests call it directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	args, err := optionalValues(args)
	if err != nil {
		return err
	}
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	if err != nil && (strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag")) {
		return usageError{err}
	}
	return err
}

// addrWord is a word that reads as a listen address: host:port, [v6]:port
// or :port.
var addrWord = regexp.MustCompile(`^(\[[0-9A-Fa-f:.%]+\]|[A-Za-z0-9._-]*):[0-9]+$`)

// optionalValues joins `--ui ADDR` into `--ui=ADDR`. --ui's address is
// optional (alone it is 127.0.0.1:0), so the flag parser would leave the
// address as the first word of every job's command line; a bare port
// (`--ui 8080`) is refused, since it could be either. Only words before
// "--" are flags.
func optionalValues(args []string) ([]string, error) {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...), nil
		}
		if a == "--ui" && i+1 < len(args) {
			next := args[i+1]
			switch {
			case addrWord.MatchString(next):
				out = append(out, "--ui="+next)
				i++
				continue
			case strings.Trim(next, "0123456789") == "" && next != "":
				return nil, usagef("--ui %s: a port alone is ambiguous; give --ui=:%s (or --ui=ADDR)", next, next)
			}
		}
		out = append(out, a)
	}
	return out, nil
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
	root.AddCommand(newLogCmd(stdout, stderr), newPingCmd(stdout, stderr), newExecCmd(stdin, stdout, stderr), newPutCmd(stdout, stderr), newGetCmd(stdout, stderr),
		newRunCmd(stdin, stdout, stderr), newCleanCmd(stdout, stderr), newAgentCmd(stdin, stdout), newHostsCmd(stdout), newReportCmd(stdout, stderr))
	for _, c := range root.Commands() {
		if args := c.Args; args != nil {
			// Wrong arguments are a usage error, whichever check found it.
			c.Args = func(cmd *cobra.Command, a []string) error {
				if err := args(cmd, a); err != nil {
					var ue usageError
					if !errors.As(err, &ue) {
						return usageError{err}
					}
					return err
				}
				return nil
			}
		}
	}
	return root
}
