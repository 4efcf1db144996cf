package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/testenv"
)

// TestPingReportsHungHostAndReturns: a host that logs us in and then never
// finishes a command (its user's ~/.bashrc sleeps) is reported by ping as
// timed out after --timeout, and ping returns with the other hosts'
// answers. Without the deadline, ping would hang until the test's own
// bound (90 s) cancels it.
func TestPingReportsHungHostAndReturns(t *testing.T) {
	testenv.Require(t, cluster)
	ctx := context.Background()
	h := cluster.Hosts[len(cluster.Hosts)-1]
	hang := `f=$(getent passwd ` + h.User + ` | cut -d: -f6)/.bashrc; touch "$f"; sed -i '1i sleep 600 # dsub-hang-test' "$f"`
	if out, err := cluster.Exec(ctx, h.Name, "sh", "-c", hang); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	defer func() {
		undo := `f=$(getent passwd ` + h.User + ` | cut -d: -f6)/.bashrc; sed -i '/dsub-hang-test/d' "$f"; pkill -u ` + h.User + ` -f 'sleep 600'`
		cluster.Exec(ctx, h.Name, "sh", "-c", undo)
	}()
	bound, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := exitCode(bound, run(bound, []string{"ping", "--hosts", cluster.HostsFile, "--timeout", "3s"}, nil, &out, &errb), &errb)
	t.Logf("ping returned after %s", time.Since(start).Round(100*time.Millisecond))
	if code != exitFailed {
		t.Fatalf("exit %d, want 1 (a host timed out)\n%s\n%s", code, out.String(), errb.String())
	}
	if !regexp.MustCompile(`(?m)^` + h.Name + ` +yes +yes .*timed out after 3s: the host logged us in but did not finish a command`).MatchString(out.String()) {
		t.Errorf("the hung host's row:\n%s", out.String())
	}
	for _, o := range cluster.Hosts[:len(cluster.Hosts)-1] {
		if !regexp.MustCompile(`(?m)^` + o.Name + ` +yes +yes +linux/`).MatchString(out.String()) {
			t.Errorf("%s did not answer:\n%s", o.Name, out.String())
		}
	}
}
