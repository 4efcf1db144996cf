package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/records"
)

// The joblog as GNU parallel writes it, with parallel itself as the
// oracle, for the same commands, retries and time limit: one row per
// job (a failed attempt that is retried has none), its exit status, and
// the signal's number for a job killed by one or timed out (15, TERM).
// One difference is dsub's, and documented: a job killed by a signal has
// Exitval -1, where parallel writes 0 unless it timed out.
func TestJoblogMatchesGNUParallel(t *testing.T) {
	needParallel(t)
	dir := t.TempDir()
	cmds := filepath.Join(dir, "cmds")
	// Successes between the failures: five failures in a row would
	// quarantine the host, which parallel never does.
	os.WriteFile(cmds, []byte("echo ok\nexit 3\necho ok\nkill -9 $$\necho ok\nsleep 5\necho ok\n"), 0o600)
	logs := filepath.Join(dir, "logs")
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"run", "--local", "2", "--logs", logs, "--commands", cmds, "--retries", "1", "--timeout", "1s"}, nil, &out, &errb)
	if code := exitCode(context.Background(), err, &errb); code != exitFailed {
		t.Fatalf("dsub run: exit %d, want 1 (jobs failed)\n%s", code, errb.String())
	}
	dirs, _ := filepath.Glob(filepath.Join(logs, "*", "run.json"))
	if len(dirs) != 1 {
		t.Fatalf("run dirs %v", dirs)
	}
	ours := joblogByJob(t, records.RunDir(filepath.Dir(dirs[0])).Joblog())

	// parallel --retries N makes N tries; dsub's --retries N, N+1.
	pj := filepath.Join(dir, "parallel.tsv")
	pc := exec.Command("parallel", "--will-cite", "--retries", "2", "--timeout", "1", "--joblog", pj)
	pc.Stdin, _ = os.Open(cmds)
	_ = pc.Run() // exits non-zero: jobs failed
	theirs := joblogByJob(t, pj)

	if len(ours) != 7 || len(theirs) != 7 {
		t.Fatalf("rows per job: dsub %v, GNU parallel %v; want one for each of 7 jobs", ours, theirs)
	}
	for job, p := range theirs {
		d := ours[job]
		if len(d) != 1 || len(p) != 1 {
			t.Errorf("job %s: dsub %d rows, GNU parallel %d", job, len(d), len(p))
			continue
		}
		exitD, sigD, exitP, sigP := d[0][6], d[0][7], p[0][6], p[0][7]
		if sigD != sigP {
			t.Errorf("job %s (%s): Signal %s, GNU parallel %s", job, d[0][8], sigD, sigP)
		}
		if sigP == "0" && exitD != exitP || sigP != "0" && exitD != "-1" {
			t.Errorf("job %s (%s): Exitval %s, GNU parallel %s (signal %s)", job, d[0][8], exitD, exitP, sigP)
		}
	}
}

// joblogByJob reads a joblog's rows by job number (Seq).
func joblogByJob(t *testing.T, path string) map[string][][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][][]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		c := strings.Split(l, "\t")
		if _, err := strconv.Atoi(c[0]); err != nil || len(c) < 9 {
			continue // the header
		}
		rows[c[0]] = append(rows[c[0]], c)
	}
	return rows
}
