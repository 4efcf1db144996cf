package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/testenv"
)

// Agent mode records each job's true duration, under load too: a job of
// `sleep 0.2` took at least 0.2 s, in results.jsonl and in the joblog.
// The master's clock cannot tell when a job started at its agent (it
// learns of it when it reads the agent's frame, late under load, or with
// the exit when both wait), so the agent measures it.
func TestAgentDurationsUnderLoad(t *testing.T) {
	testenv.Require(t, cluster)
	bin := buildDsub(t)
	// Two busy loops beside the run, as a loaded machine has: they
	// delay the master's reading of the agents' frames.
	for range 2 {
		busy := exec.Command("sh", "-c", "while :; do :; done")
		if err := busy.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { busy.Process.Kill(); busy.Wait() })
	}
	logs := t.TempDir()
	const jobs = 400
	out, err := exec.Command(bin, "run", "--hosts", cluster.HostsFile, "--launch", "agent", "--logs", logs,
		"--shards", strconv.Itoa(jobs), "--", "sleep 0.2").CombinedOutput()
	if err != nil {
		t.Fatalf("dsub run: %v\n%s", err, out)
	}
	dir := runDir(t, logs)
	recs, err := records.ReadJournal(filepath.Join(dir, "results.jsonl"))
	if err != nil || len(recs) != jobs {
		t.Fatalf("results.jsonl: %d records, %v", len(recs), err)
	}
	short := 0
	for _, r := range recs {
		if r.Duration < 0.2 {
			short++
			t.Errorf("results.jsonl: job %d on %s took %.6f s, shorter than its sleep 0.2 (%+v)", r.Job, r.Host, r.Duration, r)
		}
	}
	f, err := os.Open(filepath.Join(dir, "joblog.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		c := strings.Split(sc.Text(), "\t")
		if len(c) < 4 || c[0] == "Seq" {
			continue
		}
		rows++
		if rt, err := strconv.ParseFloat(c[3], 64); err != nil || rt < 0.2 {
			t.Errorf("joblog: job %s JobRuntime %q, shorter than its sleep 0.2: %q", c[0], c[3], c)
		}
	}
	if rows != jobs {
		t.Errorf("joblog: %d rows for %d jobs", rows, jobs)
	}
	t.Logf("%d of %d durations under 0.2 s", short, jobs)
}
