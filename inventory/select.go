package inventory

import (
	"fmt"
	"strings"

	"github.com/dsub-dev/dsub/internal/hostrange"
)

// Select returns the hosts that sel picks, in inventory order. sel is a
// comma-separated list of host names, ranges ("node[01-04]") and labels
// ("label:gpu"); an empty sel picks every host. An item that matches no
// host is an error, so a typo never silently shrinks a run.
func Select(hosts []*Host, sel string) ([]*Host, error) {
	if strings.TrimSpace(sel) == "" {
		return hosts, nil
	}
	byName := map[string]bool{}
	for _, h := range hosts {
		byName[h.Name] = true
	}
	want := map[string]bool{}
	for _, item := range hostrange.SplitList(sel) {
		if label, ok := strings.CutPrefix(item, "label:"); ok {
			n := 0
			for _, h := range hosts {
				for _, l := range h.Labels {
					if l == label {
						want[h.Name] = true
						n++
					}
				}
			}
			if n == 0 {
				return nil, fmt.Errorf("--on %s: no host has label %q", item, label)
			}
			continue
		}
		names, err := hostrange.Expand(item)
		if err != nil {
			return nil, fmt.Errorf("--on: %w", err)
		}
		for _, n := range names {
			if !byName[n] {
				return nil, fmt.Errorf("--on: no host named %q in the hosts file", n)
			}
			want[n] = true
		}
	}
	var out []*Host
	for _, h := range hosts {
		if want[h.Name] {
			out = append(out, h)
		}
	}
	return out, nil
}
