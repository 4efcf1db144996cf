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

	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/testenv"
)

// buildDsub builds the dsub binary for subprocess tests.
func buildDsub(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "dsub")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as make build: it is also the agent shipped to the hosts
	if out, err := cmd.CombinedOutput(); err != nil {
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
// RSS stays under 100 MB, through an agent and as a session.
func TestGigabyteOutputKeepsMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	for _, launch := range []string{"agent", "session"} {
		t.Run(launch, func(t *testing.T) {
			dir := t.TempDir()
			cmds := filepath.Join(dir, "cmds.txt")
			os.WriteFile(cmds, []byte("head -c 1073741824 /dev/zero; echo; echo 42\n"), 0o600)
			logs := filepath.Join(dir, "logs")
			out, stderr, rss := runMeasured(t, bin, "run", "--launch", launch, "--hosts", cluster.HostsFile, "--on", "h01", "--logs", logs, "--commands", cmds, "--reduce", "sum")
			t.Logf("peak RSS %.1f MB for a 1 GiB job output", rss)
			if strings.TrimSpace(out) != "42" {
				t.Errorf("result %q; stderr:\n%s", out, stderr)
			}
			streams, _ := filepath.Glob(filepath.Join(logs, "*", "output", "*.dso"))
			if len(streams) != 1 {
				t.Fatalf("output stream: %v", streams)
			}
			var n int64 = -1
			err := records.ScanEnds(streams[0], func(e records.End) error { n = e.Bytes[0]; return nil })
			if err != nil || n != 1<<30+4 {
				t.Errorf("job 1's stdout: %d bytes recorded (%v); want %d", n, err, 1<<30+4)
			}
			if fi, err := os.Stat(streams[0]); err != nil || fi.Size() < 1<<30+4 {
				t.Errorf("stream file %v, %v; want the 1 GiB in it", fi, err)
			}
			os.Remove(streams[0])
			if rss >= 100 {
				t.Errorf("peak RSS %.1f MB, want < 100 MB", rss)
			}
		})
	}
}

// hostsWithSlots writes a copy of the cluster's hosts file into dir with
// n slots per host instead of testenv's 2, and returns its path.
func hostsWithSlots(t *testing.T, dir string, n int) string {
	t.Helper()
	ht, err := os.ReadFile(cluster.HostsFile)
	if err != nil {
		t.Fatal(err)
	}
	hosts := filepath.Join(dir, "hosts.toml")
	if err := os.WriteFile(hosts, []byte(testenv.WithSlots(string(ht), n)), 0o600); err != nil {
		t.Fatal(err)
	}
	return hosts
}

// TestManyJobsKeepMemoryFlat: jobs stream from an args file and the
// queue pulls input only as slots free up, so the master's memory does not
// grow with the number of jobs. Measured at two sizes, 4,000 and 16,000
// jobs: the larger run may use at most 16 MB more (1 KB per extra job; a
// leak of a record per job shows), and stays under 200 MB. (The figure
// for 100,000 jobs is a benchmark, bench/run: on a machine whose
// containers start processes slowly it takes half an hour.)
func TestManyJobsKeepMemoryFlat(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	dir := t.TempDir()
	hosts := hostsWithSlots(t, dir, 6)
	echo := filepath.Join(dir, "echo.sh")
	os.WriteFile(echo, []byte("#!/bin/sh\necho \"$1\"\n"), 0o755)
	rss := map[int]float64{}
	for _, n := range []int{4000, 16000} {
		args := filepath.Join(dir, fmt.Sprintf("args%d.txt", n))
		var b strings.Builder
		for i := 1; i <= n; i++ {
			fmt.Fprintf(&b, "%d\n", i)
		}
		os.WriteFile(args, []byte(b.String()), 0o600)
		// Logs where dsub puts them by default, in the working directory:
		// on some machines /tmp is slow at creating files.
		logs, err := os.MkdirTemp(".", ".memtest-logs-")
		if err != nil {
			t.Fatal(err)
		}
		out, stderr, r := runMeasured(t, bin, "run", "--hosts", hosts, "--logs", logs,
			"--binary", echo, "--args-file", args, "--reduce", "sum", "--", "{}")
		os.RemoveAll(logs)
		t.Logf("peak RSS %.1f MB for %d jobs; %s", r, n, lastLine(stderr))
		if want := fmt.Sprint(n * (n + 1) / 2); strings.TrimSpace(out) != want {
			t.Errorf("%d jobs: sum %q, want %s", n, out, want)
		}
		rss[n] = r
	}
	if grow := rss[16000] - rss[4000]; grow > 16 || rss[16000] >= 200 {
		t.Errorf("peak RSS %.1f MB for 4,000 jobs and %.1f MB for 16,000 (+%.1f MB): want at most +16 MB and under 200 MB",
			rss[4000], rss[16000], grow)
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
