package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/internal/hostrange"
	"github.com/dsub-dev/dsub/inventory"
)

// newHostsCmd is `dsub hosts`: which hosts a selection means, with no
// connection, as `ansible --list-hosts` and `nodeset` show it.
func newHostsCmd(stdout io.Writer) *cobra.Command {
	var hf hostFlags
	var expand, fold bool
	c := &cobra.Command{
		Use:   "hosts [--hosts FILE | -w LIST] [--on SEL] [-x SEL] [-e | -f]",
		Short: "Show the hosts a selection means, and where each setting came from (no connection)",
		Long: `Show the hosts that --hosts or -w, with --on and -x, select: the same
selection every command makes, without connecting to any of them.

The table has each host's name, address, user, port, slots and labels,
and where each setting came from: a hosts file's entry (FILE:LINE) or
[defaults], a -w item, the Slurm variables, the OpenSSH config, or
dsub's built-in defaults (user: you; port 22; slots: the host's CPUs).

  -e   the names, one per line (as nodeset -e, one per line)
  -f   the names folded into ranges: node[01-04],gw (as nodeset -f)` + exitHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if expand && fold {
				return usagef("hosts: -e and -f are alternatives")
			}
			hosts, err := hf.hosts()
			if err != nil {
				return err
			}
			switch {
			case expand:
				for _, h := range hosts {
					fmt.Fprintln(stdout, visible(h.Name))
				}
			case fold:
				names := make([]string, len(hosts))
				for i, h := range hosts {
					names[i] = h.Name
				}
				fmt.Fprintln(stdout, visible(hostrange.Fold(names)))
			default:
				return hostTable(stdout, hosts)
			}
			return nil
		},
	}
	hf.register(c)
	// It connects to nothing: the connection flags are not its.
	for _, name := range []string{"accept-new", "fanout"} {
		_ = c.Flags().MarkHidden(name)
	}
	c.Flags().BoolVarP(&expand, "expand", "e", false, "print the names, one per line")
	c.Flags().BoolVarP(&fold, "fold", "f", false, "print the names folded into ranges")
	return c
}

// hostTable prints one row per host. Its FROM column groups the settings
// by where they came from: "address,port: hosts.toml:3; user: ssh_config".
func hostTable(w io.Writer, hosts []*inventory.Host) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESS\tUSER\tPORT\tSLOTS\tLABELS\tFROM")
	for _, h := range hosts {
		slots := "cpus"
		if h.Slots > 0 {
			slots = strconv.Itoa(h.Slots)
		}
		labels := strings.Join(h.Labels, ",")
		if labels == "" {
			labels = "-"
		}
		user, port, o := visible(h.User), strconv.Itoa(h.Port), h.Origin
		if h.Local {
			// This machine, run as local processes: no SSH user or port.
			user, port, o.User, o.Port = "-", "-", "", ""
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", visible(h.Name), visible(h.Address), user, port, slots, visible(labels), visible(origins(o)))
	}
	return tw.Flush()
}

// origins groups o's settings by source, in the order address, user,
// port, slots.
func origins(o inventory.Origin) string {
	var order []string
	keys := map[string][]string{}
	for _, s := range []struct{ key, from string }{{"address", o.Address}, {"user", o.User}, {"port", o.Port}, {"slots", o.Slots}} {
		if s.from == "" {
			continue
		}
		if keys[s.from] == nil {
			order = append(order, s.from)
		}
		keys[s.from] = append(keys[s.from], s.key)
	}
	parts := make([]string, len(order))
	for i, from := range order {
		parts[i] = strings.Join(keys[from], ",") + ": " + from
	}
	return strings.Join(parts, "; ")
}
