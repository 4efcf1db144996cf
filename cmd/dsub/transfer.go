package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
)

func newPutCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var opts distributor.TransferOptions
	c := &cobra.Command{
		Use:   "put [-r] LOCAL REMOTE",
		Short: "Upload a file or directory to every selected host in parallel",
		Long: `Upload LOCAL to REMOTE on every selected host at once. Each file goes
to a temporary name and is renamed into place, keeping LOCAL's mode. If
REMOTE ends in / or is a directory, LOCAL keeps its name inside it.
"~/" in REMOTE is the login user's home. With -r, a directory is copied
whole, keeping modes; symlinks are copied as symlinks. An interrupted
upload leaves no temporary file; one cut off with its connection is
removed by dsub clean.` + exitHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return transfer(cmd, &hf, "put", func(cl *distributor.Cluster, ctx context.Context, a, b string) ([]distributor.TransferResult, error) {
				return cl.Put(ctx, a, b, opts)
			}, args, stdout, stderr)
		},
	}
	hf.register(c)
	c.Flags().BoolVarP(&opts.Recursive, "recursive", "r", false, "copy directories")
	return c
}

func newGetCmd(stdout, stderr io.Writer) *cobra.Command {
	var hf hostFlags
	var opts distributor.TransferOptions
	c := &cobra.Command{
		Use:   "get [-r] REMOTE LOCALDIR",
		Short: "Download files from every selected host into LOCALDIR/<host>/",
		Long: `Download REMOTE from every selected host at once, into
LOCALDIR/<host>/<basename of REMOTE>. REMOTE may be a glob, quoted so
that the local shell leaves it alone: dsub get '/var/log/*.log' logs.
With -r, directories are copied whole, keeping modes. Symlinks come back
as symlinks and are never followed. Neither a host name, a remote name
nor a symlink can place a file outside LOCALDIR/<host>.` + exitHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return transfer(cmd, &hf, "get", func(cl *distributor.Cluster, ctx context.Context, a, b string) ([]distributor.TransferResult, error) {
				return cl.Get(ctx, a, b, opts)
			}, args, stdout, stderr)
		},
	}
	hf.register(c)
	c.Flags().BoolVarP(&opts.Recursive, "recursive", "r", false, "copy directories")
	return c
}

// transfer runs put or get (op) on the selected hosts and reports it.
func transfer(cmd *cobra.Command, hf *hostFlags, op string,
	f func(*distributor.Cluster, context.Context, string, string) ([]distributor.TransferResult, error),
	args []string, stdout, stderr io.Writer) error {
	cl, err := hf.cluster(stderr)
	if err != nil {
		return err
	}
	defer cl.Close()
	start := time.Now()
	res, err := f(cl, cmd.Context(), args[0], args[1])
	if err != nil {
		return usageError{recursiveHint(err)}
	}
	return reportTransfers(op, res, start, stdout, stderr)
}

func reportTransfers(op string, res []distributor.TransferResult, start time.Time, stdout, stderr io.Writer) error {
	failed := 0
	var total int64
	for _, r := range res {
		if r.Err != nil {
			failed++
			fmt.Fprintln(stderr, "dsub:", hostMessage(r.Host, recursiveHint(r.Err)))
			continue
		}
		total += r.Bytes
		files := ""
		if r.Files != 1 {
			files = fmt.Sprintf("%d files, ", r.Files)
		}
		fmt.Fprintf(stdout, "%s: %s %s (%s%d bytes, %.2fs)\n", r.Host, op, r.Path, files, r.Bytes, r.Duration.Seconds())
	}
	fmt.Fprintf(stderr, "dsub %s: %d ok, %d failed (%d bytes in %.2fs)\n", op, len(res)-failed, failed, total, time.Since(start).Seconds())
	if failed > 0 {
		return errReported
	}
	return nil
}

// recursiveHint names the flag that copies a directory, which the
// library's error cannot.
func recursiveHint(err error) error {
	if errors.Is(err, distributor.ErrIsDir) {
		return fmt.Errorf("%w (use -r to copy it)", err)
	}
	return err
}

// exactArgs is cobra.ExactArgs reported as a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("%s takes %s, got %d (see dsub %s --help)", cmd.Name(), plural(n, "argument"), len(args), cmd.Name())
		}
		return nil
	}
}
