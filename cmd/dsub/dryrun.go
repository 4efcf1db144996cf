package main

import (
	"bufio"
	"io"
	"path"
	"strings"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/remote"
)

// dryRun prints each job's command line, one per line, as a shell would
// read it (arguments quoted), and runs nothing: no host is contacted and
// no process started, as GNU parallel's --dry-run. A program shipped with
// --binary is named as given; one built with --build by its package's
// last element. {%} stays {%}: a job's slot is known only when it
// starts on a host.
func dryRun(src *jobSource, f *runFlags, stdout io.Writer) error {
	w := bufio.NewWriter(stdout)
	prog := f.binary
	if f.build != "" {
		prog = path.Base(strings.TrimRight(f.build, "/"))
	}
	for {
		spec, ok, err := src.next()
		if err != nil {
			w.Flush()
			return err
		}
		if !ok {
			return w.Flush()
		}
		if spec.Shell != "" {
			w.WriteString(distributor.ShowSlot(spec.Shell))
		} else {
			w.WriteString(distributor.ShowSlot(remote.QuoteArgv(append([]string{prog}, spec.Args...))))
		}
		w.WriteByte('\n')
	}
}
