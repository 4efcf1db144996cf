package testenv

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Partitions are iptables rules in the raw table's OUTPUT chain. All traffic
// between a client on this machine and a host's published address is
// locally generated, so it all passes raw/OUTPUT, before any NAT or docker
// proxying; dropping there cuts new and established connections alike, in
// both directions, without a reset: exactly what a cut network looks like.
// Each rule carries a comment naming the cluster and host, so Heal and Down
// remove precisely what was added.

func ruleSpecs(c *Cluster, h *Host) [][]string {
	tag := "dsub-testenv:" + c.Name + ":" + h.Name
	port := strconv.Itoa(h.Port)
	return [][]string{
		{"-p", "tcp", "-d", h.Addr, "--dport", port, "-m", "comment", "--comment", tag, "-j", "DROP"},
		{"-p", "tcp", "-s", h.Addr, "--sport", port, "-m", "comment", "--comment", tag, "-j", "DROP"},
	}
}

func iptables(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "-t", "raw"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func partition(ctx context.Context, c *Cluster, h *Host) error {
	for _, r := range ruleSpecs(c, h) {
		if iptables(ctx, append([]string{"-C", "OUTPUT"}, r...)...) == nil {
			continue // already partitioned
		}
		if err := iptables(ctx, append([]string{"-I", "OUTPUT"}, r...)...); err != nil {
			return fmt.Errorf("%w (partition needs root and iptables)", err)
		}
	}
	return nil
}

func heal(ctx context.Context, c *Cluster, h *Host) error {
	for _, r := range ruleSpecs(c, h) {
		for iptables(ctx, append([]string{"-C", "OUTPUT"}, r...)...) == nil {
			if err := iptables(ctx, append([]string{"-D", "OUTPUT"}, r...)...); err != nil {
				return err
			}
		}
	}
	return nil
}

// healAll removes every partition rule of the cluster. Without iptables
// there can be none, so its absence is not an error.
func healAll(ctx context.Context, c *Cluster) error {
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil
	}
	out, err := exec.CommandContext(ctx, "iptables", "-w", "-t", "raw", "-S", "OUTPUT").Output()
	if err != nil || !strings.Contains(string(out), "dsub-testenv:"+c.Name+":") {
		return nil
	}
	var errs []error
	for _, h := range c.Hosts {
		if err := heal(ctx, c, h); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
