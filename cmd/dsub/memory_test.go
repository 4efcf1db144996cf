package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/testenv"
)

// buildDsub builds the dsub binary for subprocess tests.
func buildDsub(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsub")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build dsub: %v\n%s", err, out)
	}
	return bin
}

// runMeasured runs dsub under GNU time and returns stdout, stderr and its
// peak RSS in MB. (Rusage read directly by this Go process would include
// the test binary's own memory: Go starts children with vfork.)
func runMeasured(t *testing.T, bin string, args ...string) (string, string, float64) {
	t.Helper()
	return runMeasuredIn(t, bin, nil, args...)
}

// runMeasuredIn is runMeasured with stdin.
func runMeasuredIn(t *testing.T, bin string, stdin io.Reader, args ...string) (string, string, float64) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		t.Fatal("GNU time (/usr/bin/time) is required to measure peak RSS: apt-get install time")
	}
	rssFile := filepath.Join(t.TempDir(), "rss")
	var out, errb bytes.Buffer
	cmd := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, bin}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("dsub %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	b, err := os.ReadFile(rssFile)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	kb, err := strconv.ParseFloat(f[len(f)-1], 64)
	if err != nil {
		t.Fatalf("GNU time output %q: %v", b, err)
	}
	return out.String(), errb.String(), kb / 1024
}

// TestGigabyteOutputKeepsMemoryFlat: a job writing 1 GiB to stdout (as
// one gigantic line, then its result) streams to its log file while dsub's
// RSS stays under 100 MB.
func TestGigabyteOutputKeepsMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	cmds := filepath.Join(dir, "cmds.txt")
	os.WriteFile(cmds, []byte("head -c 1073741824 /dev/zero; echo; echo 42\n"), 0o600)
	logs := filepath.Join(dir, "logs")
	out, stderr, rss := runMeasured(t, bin, "run", "--hosts", cluster.HostsFile, "--on", "h01", "--logs", logs, "--commands", cmds, "--reduce", "sum")
	t.Logf("peak RSS %.1f MB for a 1 GiB job output", rss)
	if strings.TrimSpace(out) != "42" {
		t.Errorf("result %q; stderr:\n%s", out, stderr)
	}
	logsOut, _ := filepath.Glob(filepath.Join(logs, "*", "jobs", "1.out"))
	if len(logsOut) != 1 {
		t.Fatalf("log file: %v", logsOut)
	}
	fi, err := os.Stat(logsOut[0])
	if err != nil || fi.Size() != 1<<30+4 {
		t.Errorf("log size %v, %v; want %d", fi.Size(), err, 1<<30+4)
	}
	os.Remove(logsOut[0])
	if rss >= 100 {
		t.Errorf("peak RSS %.1f MB, want < 100 MB", rss)
	}
}

// TestHundredThousandJobsKeepMemoryFlat: 100,000 jobs from an args file;
// the queue pulls input only as slots free up, so RSS stays under 200 MB.
func TestHundredThousandJobsKeepMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	args := filepath.Join(dir, "args.txt")
	var b strings.Builder
	const n = 100000
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	os.WriteFile(args, []byte(b.String()), 0o600)
	hosts := filepath.Join(dir, "hosts.toml")
	ht, _ := os.ReadFile(cluster.HostsFile)
	os.WriteFile(hosts, []byte(strings.Replace(string(ht), "[defaults]\n", "[defaults]\nslots = 6\n", 1)), 0o600)
	echo := filepath.Join(dir, "echo.sh")
	os.WriteFile(echo, []byte("#!/bin/sh\necho \"$1\"\n"), 0o755)
	// Logs where dsub puts them by default, in the working directory: on
	// some machines /tmp is slow at creating files, and this makes 200,000.
	logs, err := os.MkdirTemp(".", ".memtest-logs-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(logs)
	out, stderr, rss := runMeasured(t, bin, "run", "--hosts", hosts, "--logs", logs,
		"--binary", echo, "--args-file", args, "--reduce", "sum", "--", "{}")
	t.Logf("peak RSS %.1f MB for %d jobs; %s", rss, n, lastLine(stderr))
	if want := fmt.Sprint(n * (n + 1) / 2); strings.TrimSpace(out) != want {
		t.Errorf("sum %q, want %s", out, want)
	}
	if rss >= 200 {
		t.Errorf("peak RSS %.1f MB, want < 200 MB", rss)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "jobs ") {
			return lines[i]
		}
	}
	return lines[len(lines)-1]
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestStdinToManyHostsKeepsMemoryFlat: stdin piped to exec reaches 32
// hosts (8 names for each of the 4 testenv hosts) in full, with RSS under
// 100 MB: the pipe is spooled to a file that each host reads at its own
// pace. (64 MiB each here, 2 GiB in all, to stay quick; memory does not
// depend on the size.)
func TestStdinToManyHostsKeepsMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	hosts := filepath.Join(t.TempDir(), "hosts32.toml")
	var b strings.Builder
	fmt.Fprintf(&b, "[defaults]\nuser = \"dsub\"\nidentity_files = [%q]\nknown_hosts = [%q]\n", cluster.KeyFile, cluster.KnownHosts)
	for k := 0; k < 8; k++ {
		for _, h := range cluster.Hosts {
			fmt.Fprintf(&b, "[[host]]\nname = \"%s-%d\"\naddress = %q\nuser = %q\n", h.Name, k, h.HostPort(), h.User)
		}
	}
	os.WriteFile(hosts, []byte(b.String()), 0o600)
	const size = 64 << 20
	out, stderr, rss := runMeasuredIn(t, bin, io.LimitReader(zeros{}, size), "exec", "--hosts", hosts, "--", "wc -c")
	t.Logf("peak RSS %.1f MB for %d MiB of stdin to 32 hosts", rss, size>>20)
	if n := strings.Count(out, fmt.Sprintf(": %d\n", size)); n != 32 {
		t.Errorf("%d of 32 hosts read all %d bytes:\n%s\n%s", n, size, out, stderr)
	}
	if rss >= 100 {
		t.Errorf("peak RSS %.1f MB, want < 100 MB", rss)
	}
}

// TestGroupKeepsMemoryFlat: exec --group over 4 hosts with 50 MB of
// output each (identical: one group) stays under 100 MB of RSS; the
// outputs are spooled and grouped by hash.
func TestGroupKeepsMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	out, stderr, rss := runMeasured(t, bin, "exec", "--hosts", cluster.HostsFile, "--group", "--",
		`head -c 50000000 /dev/zero | tr '\0' x; echo`)
	t.Logf("peak RSS %.1f MB for --group of 4 x 50 MB", rss)
	if !strings.Contains(out, "h[01-04] (4)") || len(out) < 50000000 || len(out) > 50000200 {
		t.Errorf("grouped output: %d bytes, head %.100q; stderr %s", len(out), out, stderr)
	}
	if rss >= 100 {
		t.Errorf("peak RSS %.1f MB, want < 100 MB", rss)
	}
}
