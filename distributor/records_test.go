package distributor

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from golden file:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestStatsTableGolden(t *testing.T) {
	s := &Stats{Jobs: 17, Succeeded: 16, Failed: 1, Wall: 12.5, Hosts: []HostStats{
		{Name: "h01", Jobs: 6, JobTime: 18.75, Slots: 2},
		{Name: "h02", Jobs: 5, JobTime: 15.5, Slots: 2, Failed: 2},
		{Name: "node-with-long-name", Jobs: 5, JobTime: 16.0, Slots: 4, Lost: 1},
	}}
	var b bytes.Buffer
	s.WriteTable(&b)
	golden(t, "stats_table.golden", b.Bytes())
}

func TestJoblogGolden(t *testing.T) {
	p := filepath.Join(t.TempDir(), "joblog.tsv")
	l, err := openJoblog(p)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 123e6)
	l.Write(JoblogRow{Job: 1, Host: "h01", Start: start, Runtime: 1500 * time.Millisecond, Receive: 12, Command: "primes count --shard 0", Outcome: "recorded"})
	l.Write(JoblogRow{Job: 2, Host: "h02", Start: start, Runtime: 20 * time.Millisecond, Receive: 3, Exit: 3, Command: "echo a\tb\nc", Outcome: "requeued"})
	l.Write(JoblogRow{Job: 3, Host: "h02", Start: start, Runtime: time.Second, Exit: -1, Signal: "KILL", Command: "sleep 9", Outcome: "gave-up"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	golden(t, "joblog.golden", b)
	if !strings.HasPrefix(string(b), "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand") {
		t.Error("joblog header is not GNU parallel's")
	}
}

func TestJournalGroupCommit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "results.jsonl")
	j, err := openJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	j.Append(&JournalRecord{Job: 1, ID: "x", Host: "h01", Attempt: 1, Result: ResultValue("42"), Duration: 1})
	if b, _ := os.ReadFile(p); len(b) != 0 {
		t.Errorf("record on disk before Commit: %q", b)
	}
	if err := j.Commit(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != `{"job":1,"id":"x","host":"h01","attempt":1,"result":42,"duration_s":1}`+"\n" {
		t.Errorf("journal = %q", b)
	}
	j.Close()
}
