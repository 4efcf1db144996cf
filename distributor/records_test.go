package distributor

import (
	"bytes"
	"flag"
	"fmt"
	"github.com/dsub-dev/dsub/records"
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
	s := &records.Stats{Jobs: 17, Succeeded: 16, Failed: 1, Wall: 12.5, Hosts: []records.HostStats{
		{Name: "h01", Jobs: 6, JobTime: 18.75, Slots: 2},
		{Name: "h02", Jobs: 5, JobTime: 15.5, Slots: 2, Failed: 2},
		{Name: "node-with-long-name", Jobs: 5, JobTime: 16.0, Slots: 4, Lost: 1},
	}, Unused: []records.UnusedHost{{Name: "h03", State: "preparing"}, {Name: "h04", State: "down"}}}
	var b bytes.Buffer
	s.WriteTable(&b)
	golden(t, "stats_table.golden", b.Bytes())
}

// joblog.tsv is GNU parallel's (a failed attempt that is retried has no
// row; a signal is its number); executions.tsv has every execution.
func TestJoblogGolden(t *testing.T) {
	d := records.RunDir(t.TempDir())
	p := d.Joblog()
	l, err := records.OpenJoblog(d, "", false)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Unix(1700000000, 123e6)
	l.Write(records.JoblogRow{Job: 1, Host: "h01", Start: start, Runtime: 1500 * time.Millisecond, Receive: 12, Command: "primes count --shard 0", Outcome: "recorded"}, true)
	l.Write(records.JoblogRow{Job: 2, Host: "h02", Start: start, Runtime: 20 * time.Millisecond, Receive: 3, Exit: 3, Command: "echo a\tb\nc", Outcome: "requeued"}, false)
	l.Write(records.JoblogRow{Job: 3, Host: "h02", Start: start, Runtime: time.Second, Exit: -1, Signal: "KILL", Command: "sleep 9", Outcome: "gave-up"}, true)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	golden(t, "joblog.golden", b)
	all, _ := os.ReadFile(d.Executions())
	golden(t, "executions.golden", all)
	if !strings.HasPrefix(string(b), "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand") {
		t.Error("joblog header is not GNU parallel's")
	}
}

func TestJournalGroupCommit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "results.jsonl")
	j, err := records.OpenJournal(p)
	if err != nil {
		t.Fatal(err)
	}
	j.Append(&records.JournalRecord{Job: 1, ID: "x", Host: "h01", Attempt: 1, Result: ResultValue("42"), Duration: 1})
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

// TestJournalTornTail: a journal whose last line was cut short (a crash,
// a full disk) is trimmed to its last whole line when reopened, so the
// next record starts a line of its own and every whole record survives.
func TestJournalTornTail(t *testing.T) {
	rec := `{"job":1,"id":"x","host":"h01","attempt":1,"result":1,"duration_s":1}` + "\n"
	long := strings.Repeat("z", 100<<10) // longer than one read chunk
	tests := []struct{ name, before, after string }{
		{"empty", "", ""},
		{"whole", rec, rec},
		{"torn after a record", rec + `{"job":2,"id":"y","ho`, rec},
		{"only a torn line", `{"job":2,"id`, ""},
		{"long torn line after a record", rec + long, rec},
		{"long whole line", rec + long + "\n", rec + long + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "results.jsonl")
			os.WriteFile(p, []byte(tt.before), 0o644)
			j, err := records.OpenJournal(p)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(p); string(b) != tt.after {
				t.Errorf("reopened journal holds %d bytes, want %d", len(b), len(tt.after))
			}
			j.Append(&records.JournalRecord{Job: 3, ID: "z", Host: "h02", Attempt: 1, Result: ResultValue("3")})
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			recs, err := records.ReadJournal(p)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := recs[3]; !ok || (strings.HasPrefix(tt.after, rec) && len(recs) != 2) {
				t.Errorf("records after append: %v", recs)
			}
		})
	}
}

// TestStatsTableBackups: speculative executions get a mention.
func TestStatsTableBackups(t *testing.T) {
	s := &records.Stats{Jobs: 4, Succeeded: 4, Wall: 2, Backups: 2, BackupsWon: 1, Hosts: []records.HostStats{
		{Name: "h01", Jobs: 3, JobTime: 3, Slots: 1}, {Name: "h02", Jobs: 1, JobTime: 1, Slots: 1},
	}}
	var b bytes.Buffer
	s.WriteTable(&b)
	golden(t, "stats_table_backups.golden", b.Bytes())
}

// Where CPU time was measured (agent mode), the table gains CPU time, CPU
// efficiency (CPU-s over the slots' capacity for the wall time) and how
// each host ran its jobs.
func TestStatsTableAgent(t *testing.T) {
	s := &records.Stats{Jobs: 4, Succeeded: 4, Wall: 2, Hosts: []records.HostStats{
		{Name: "h01", Jobs: 3, JobTime: 3, Slots: 2, CPU: 2.5, Launcher: "agent"},
		{Name: "h02", Jobs: 1, JobTime: 1, Slots: 1, Launcher: "session"},
	}}
	var b bytes.Buffer
	s.WriteTable(&b)
	golden(t, "stats_table_agent.golden", b.Bytes())
}

// A resume that found every job recorded ran nothing: its summary has no
// speedup of 0 slots.
func TestStatsTableNothingRan(t *testing.T) {
	var b bytes.Buffer
	(&records.Stats{Jobs: 5, Succeeded: 5, Resumed: 5, Wall: 0.2}).WriteTable(&b)
	if s := b.String(); strings.Contains(s, "speedup") || strings.Contains(s, "0 slots") || !strings.Contains(s, "jobs 5: 5 succeeded, 0 failed") {
		t.Errorf("summary of a run where nothing ran:\n%s", s)
	}
}

// A joblog row is one line whatever its fields hold: a signal that is no
// signal's name writes 0, and tabs and newlines in the command are
// spaces, so that no host can forge rows that a report reads back.
func TestJoblogRowCannotForge(t *testing.T) {
	var b bytes.Buffer
	r := records.JoblogRow{Job: 3, Host: "h01", Exit: -1, Signal: "KILL\t0\n7\th01\t1\t1\t0\t0\t0\t0\tforged\trecorded", Command: "a\tb\nc", Outcome: "gave-up"}
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	line := b.String()
	if strings.Count(line, "\n") != 1 || strings.Count(line, "\t") != 9 || !strings.Contains(line, "\t-1\t0\ta b c\t") {
		t.Errorf("row %q: want one line of 10 fields, signal 0", line)
	}
}

// A joblog row reads as GNU parallel's: the fields as fmt's %d and %.3f
// write them, signal numbers, and a command kept on its line.
func TestJoblogRowText(t *testing.T) {
	start := time.UnixMilli(1765150000123)
	for _, tt := range []struct {
		r    records.JoblogRow
		want string
	}{
		{records.JoblogRow{Job: 7, Host: "h01", Start: start, Runtime: 1500 * time.Millisecond, Send: 3, Receive: 12, Exit: 0, Command: "echo a", Outcome: "recorded"},
			"7\th01\t1765150000.123\t1.500\t3\t12\t0\t0\techo a\trecorded\n"},
		{records.JoblogRow{Job: 1, Host: "h02", Start: start, Runtime: 2 * time.Second / 3, Exit: -1, Signal: "TERM", Command: "a\tb\nc", Outcome: "gave-up: timed out"},
			"1\th02\t1765150000.123\t0.667\t0\t0\t-1\t15\ta b c\tgave-up: timed out\n"},
		{records.JoblogRow{Job: 2, Host: "h03", Start: start, Exit: -1, Signal: "9", Outcome: "lost"},
			"2\th03\t1765150000.123\t0.000\t0\t0\t-1\t9\t\tlost\n"},
	} {
		if got := string(tt.r.Append(nil)); got != tt.want {
			t.Errorf("row\n %q\nwant\n %q", got, tt.want)
		}
		want := fmt.Sprintf("%d\t%s\t%.3f\t%.3f\t%d\t%d\t%d\t", tt.r.Job, tt.r.Host, float64(tt.r.Start.UnixMilli())/1000, tt.r.Runtime.Seconds(), tt.r.Send, tt.r.Receive, tt.r.Exit)
		if got := string(tt.r.Append(nil)); !strings.HasPrefix(got, want) {
			t.Errorf("row %q does not begin as fmt writes it: %q", got, want)
		}
	}
}
