package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/testenv"
)

// TestResumeFromStdin: a run fed from stdin (--args-file -) is interrupted
// with SIGINT while stdin is still open; dsub run --resume DIR then needs
// no stdin (it reads the input the run saved), works when started from
// another directory, keeps the original record, and works again from the
// right directory; progress counts the jobs recorded before the resume.
func TestResumeFromStdin(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	work := t.TempDir()
	hosts := filepath.Join(work, "hosts.toml") // found as ./hosts.toml
	b, _ := os.ReadFile(cluster.HostsFile)
	os.WriteFile(hosts, b, 0o600)
	os.WriteFile(filepath.Join(work, "job.sh"), []byte("#!/bin/sh\nsleep 0.3; echo \"$1\"\n"), 0o755)

	cmd := exec.Command(bin, "run", "--binary", "job.sh", "--args-file", "-", "--reduce", "sum", "--", "{}")
	cmd.Dir = work
	in, _ := cmd.StdinPipe()
	var errb lockedBuffer
	errb.w = &errb.b
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 40; i++ {
		fmt.Fprintln(in, i)
	}
	// stdin stays open: the run waits for more input, as a pipe would.
	deadline := time.Now().Add(60 * time.Second)
	for !regexp.MustCompile(`(?m)^\d+\s`).MatchString(readJoblog(t, work)) || strings.Count(readJoblog(t, work), "\n") < 10 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no jobs ran:\n%s", errb.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	cmd.Wait()
	in.Close()
	dirs, _ := filepath.Glob(filepath.Join(work, "dsub-runs", "*"))
	if len(dirs) != 1 {
		t.Fatalf("run dirs %v:\n%s", dirs, errb.String())
	}
	rd := dirs[0]
	before, _ := os.ReadFile(filepath.Join(rd, "run.json"))

	// From another directory, with no stdin at all.
	other := t.TempDir()
	out, stderr := resume(t, bin, other, rd)
	if strings.TrimSpace(out) != "820" {
		t.Fatalf("resumed from elsewhere: result %q\n%s", out, stderr)
	}
	if !regexp.MustCompile(`jobs 40: 40 succeeded, 0 failed \(\d+ recorded before the resume\)`).MatchString(stderr) {
		t.Errorf("resume summary:\n%s", stderr)
	}
	if !strings.Contains(stderr, "40/40 jobs done") {
		t.Errorf("progress did not count the recorded jobs (want 40/40):\n%s", stderr)
	}
	after, _ := os.ReadFile(filepath.Join(rd, "run.json"))
	if cwdOf(before) != cwdOf(after) || cwdOf(after) != work {
		t.Errorf("the record's cwd changed: %q -> %q (want %q)", cwdOf(before), cwdOf(after), work)
	}
	// And again from the right directory.
	if out, stderr := resume(t, bin, work, rd); strings.TrimSpace(out) != "820" {
		t.Errorf("resumed from the run's directory: result %q\n%s", out, stderr)
	}
}

func resume(t *testing.T, bin, dir, rd string) (string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(bin, "run", "--resume", rd, "--progress-interval", "50ms")
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &out, &errb
	cmd.Stdin = nil // /dev/null: a resume must not read stdin
	if err := cmd.Run(); err != nil {
		t.Errorf("resume from %s: %v", dir, err)
	}
	return out.String(), errb.String()
}

func readJoblog(t *testing.T, work string) string {
	logs, _ := filepath.Glob(filepath.Join(work, "dsub-runs", "*", "joblog.tsv"))
	if len(logs) == 0 {
		return ""
	}
	b, _ := os.ReadFile(logs[0])
	return string(b)
}

func cwdOf(runJSON []byte) string {
	m := regexp.MustCompile(`"cwd":\s*"([^"]*)"`).FindSubmatch(runJSON)
	if m == nil {
		return ""
	}
	return string(m[1])
}

// TestInterruptedPutLeavesNoTempFiles: Ctrl-C (a cancelled context)
// during put leaves no temporary file on any host; and dsub clean removes
// the temporary file of an upload whose connection was cut (simulated: a
// marker and a temporary file 20 minutes old), keeping a fresh one.
func TestInterruptedPutLeavesNoTempFiles(t *testing.T) {
	testenv.Require(t, cluster)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var out, errb bytes.Buffer
	// A big (sparse) file: its upload is still under way when cancelled.
	big := filepath.Join(dir, "big.bin")
	bf, _ := os.Create(big)
	bf.Truncate(2 << 30) // sparse: 2 GiB to send, far more than 1 s allows
	bf.Close()
	go func() {
		errc <- run(ctx, []string{"put", "--hosts", cluster.HostsFile, big, "~/putint/"}, nil, &out, &errb)
	}()
	waitTemp := time.Now().Add(30 * time.Second)
	for {
		o, _ := cluster.Exec(context.Background(), cluster.Hosts[0].Name, "sh", "-c", "stat -c '%a %n' /home/*/putint/.*dsub-tmp-* 2>/dev/null")
		if strings.Contains(string(o), ".dsub-tmp-") {
			// Under way: private until complete, whatever the final mode.
			if !strings.HasPrefix(string(o), "600 ") {
				t.Errorf("the upload's temporary file is not 0600 while it is written: %s", o)
			}
			break
		}
		if time.Now().After(waitTemp) {
			t.Fatalf("the upload never started: %s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("put was not interrupted")
	}
	for _, h := range cluster.Hosts {
		o, _ := cluster.Exec(context.Background(), h.Name, "sh", "-c", "find /home/*/putint -name '*.dsub-tmp-*' 2>/dev/null")
		if s := strings.TrimSpace(string(o)); s != "" {
			t.Errorf("%s keeps temporary files after the interrupt: %s", h.Name, s)
		}
	}

	// A put cut off with its connection: its marker names the directory.
	h := cluster.Hosts[1]
	setup := `mkdir -p ~/.cache/dsub/puts ~/cut && printf 'cut\n1\n' > ~/.cache/dsub/puts/cafe && ` +
		`touch -d '20 minutes ago' ~/cut/.data.dsub-tmp-old && touch ~/cut/.data.dsub-tmp-fresh ~/cut/keep`
	if o, err := cluster.Exec(context.Background(), h.Name, "su", h.User, "-c", setup); err != nil {
		t.Fatalf("setup: %v %s", err, o)
	}
	if code := exitCode(context.Background(), run(context.Background(), []string{"clean", "--hosts", cluster.HostsFile, "--on", h.Name}, nil, &out, &errb), &errb); code != 0 {
		t.Fatalf("clean: exit %d: %s", code, errb.String())
	}
	o, _ := cluster.Exec(context.Background(), h.Name, "sh", "-c", "ls -a /home/*/cut; ls /home/*/.cache/dsub/puts")
	switch s := string(o); {
	case strings.Contains(s, "dsub-tmp-old"):
		t.Errorf("clean kept the stale temporary file:\n%s", s)
	case !strings.Contains(s, "dsub-tmp-fresh") || !strings.Contains(s, "keep"):
		t.Errorf("clean removed a fresh temporary file or a user's file:\n%s", s)
	case !strings.Contains(s, "cafe"):
		t.Errorf("clean removed the marker while a temporary file remains:\n%s", s)
	}
}

// exec starts at once and streams stdin as it comes, as pdsh does: a
// command that is done after the first line ends, and dsub with it,
// while stdin is still open (it once waited for stdin's end first).
func TestExecStreamsStdin(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	cmd := exec.Command(bin, "exec", "--hosts", cluster.HostsFile, "--on", "h0[1-2]", "--", "head -n1")
	cmd.Stdin = pr
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	fmt.Fprintln(pw, "first") // and stdin stays open
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dsub exec: %v\n%s", err, errb.String())
		}
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("dsub exec still waits for stdin's end, its commands done:\n%s", errb.String())
	}
	for _, h := range []string{"h01", "h02"} {
		if !strings.Contains(out.String(), h+": first\n") {
			t.Errorf("%s did not get the line as it came: stdout %q", h, out.String())
		}
	}
}
