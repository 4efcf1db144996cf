package records

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// RunDir is a run's local directory. It owns every path in it: nothing
// else names a record file.
//
//	run.json        the Manifest
//	results.jsonl   the journal: one JournalRecord per recorded job
//	joblog.tsv      GNU parallel's --joblog: a row per execution that
//	                started, a retried failure's none
//	executions.tsv  the same columns, a row for every execution that
//	                started (the report's timeline)
//	output/N.dso    the jobs' output, in a few streams (N from 0; a
//	                host's executions all in one): stdout and stderr as
//	                records (package records); the journal locates a
//	                job's, `dsub log` reads it
//	input           the jobs read from stdin (input.part until EOF)
//	hosts/H/setup.out|err, teardown.out|err
//	                host H's --setup and --teardown output
type RunDir string

func (d RunDir) path(name ...string) string {
	return filepath.Join(append([]string{string(d)}, name...)...)
}

// Manifest is run.json.
func (d RunDir) Manifest() string { return d.path("run.json") }

// Journal is results.jsonl.
func (d RunDir) Journal() string { return d.path("results.jsonl") }

// Joblog is joblog.tsv.
func (d RunDir) Joblog() string { return d.path("joblog.tsv") }

// Executions is executions.tsv.
func (d RunDir) Executions() string { return d.path("executions.tsv") }

// Timeline is the record a report draws: executions.tsv, or joblog.tsv
// for a run recorded before there was one.
func (d RunDir) Timeline() string {
	if _, err := os.Stat(d.Executions()); err == nil {
		return d.Executions()
	}
	return d.Joblog()
}

// Output is the directory of the jobs' output streams.
func (d RunDir) Output() string { return d.path("output") }

// OutputStream is output stream i's file.
func (d RunDir) OutputStream(i int) string {
	return d.path("output", StreamFile(i))
}

// ReadOutput copies stream s of the execution that loc locates (a
// Result's or a JournalRecord's Output) to w, byte for byte.
func (d RunDir) ReadOutput(loc Locator, s Stream, w io.Writer) (int64, error) {
	if loc.IsZero() {
		return 0, fmt.Errorf("no output recorded")
	}
	return ReadOutput(d.Output(), loc, s, w)
}

// OldJobLogs are where a run directory of schema 1 (before output
// streams) kept job's output, which reports still read.
func (d RunDir) OldJobLogs(job int) (stdout, stderr string) {
	return d.path("jobs", fmt.Sprintf("%d.out", job)), d.path("jobs", fmt.Sprintf("%d.err", job))
}

// Returned is where job's returned files go (RunOptions.ReturnDir
// aside).
func (d RunDir) Returned(job int) string { return d.path("out", strconv.Itoa(job)) }

// HookLogs are where a host's output of hook ("setup", "teardown") goes.
func (d RunDir) HookLogs(hostDir, hook string) (stdout, stderr string) {
	dir := d.path("hosts", hostDir)
	return filepath.Join(dir, hook+".out"), filepath.Join(dir, hook+".err")
}

// Input is the saved copy of jobs read from stdin; InputPart is it while
// still being read.
func (d RunDir) Input() string     { return d.path("input") }
func (d RunDir) InputPart() string { return d.path("input.part") }

// Manifest is a run's run.json: what ran, where, and how it ended. It is
// written when the run starts, as hosts are prepared, and when it ends.
type Manifest struct {
	// Schema is the run directory's layout: SchemaStreams, or 0 for a
	// run recorded before there was one (per-job log files, schema 1).
	Schema  int       `json:"schema,omitempty"`
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
	// Command is the caller's record of what started the run
	// (RunOptions.Record), e.g. the CLI's arguments.
	Command  json.RawMessage `json:"command,omitempty"`
	Resumed  bool            `json:"resumed"`
	Retries  int             `json:"retries"`
	TimeoutS float64         `json:"timeout_s"`
	Files    []string        `json:"files"`
	Hosts    []HostRecord    `json:"hosts"`
	// One of Binary, Build and Mode ("commands") says what ran.
	Binary *BinaryRecord `json:"binary,omitempty"`
	Build  string        `json:"build,omitempty"`
	Mode   string        `json:"mode,omitempty"`
	// Set when the run ends.
	Finished time.Time `json:"finished,omitzero"`
	Stats    *Stats    `json:"stats,omitempty"`
	Speedup  float64   `json:"speedup,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Result is the reduced result, when it is at most MaxManifestResult
	// bytes (reports show it).
	Result string `json:"result,omitempty"`
}

// SchemaStreams is the layout this dsub writes: jobs' output in streams
// (output/), located by the journal.
const SchemaStreams = 2

// MaxManifestResult bounds the reduced result that run.json keeps.
const MaxManifestResult = 64 << 10

// BinaryRecord is the shipped program.
type BinaryRecord struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// HostRecord is a host as the run found it.
type HostRecord struct {
	Name    string `json:"name"`
	Address string `json:"address"`
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
	CPUs    int    `json:"cpus,omitempty"`
	Slots   int    `json:"slots,omitempty"`
	Binary  string `json:"binary_sha256,omitempty"`
	Sent    int64  `json:"bytes_uploaded"`
	// Launcher is how its jobs were started: "session" or "agent";
	// LaunchNote says why not "agent" when that was asked for.
	Launcher   string `json:"launcher,omitempty"`
	LaunchNote string `json:"launch_note,omitempty"`
	Error      string `json:"error,omitempty"`
	// Setup and Teardown are how the host's last --setup and its
	// --teardown ran.
	Setup    *HookRecord `json:"setup,omitempty"`
	Teardown *HookRecord `json:"teardown,omitempty"`
	// Uncleaned is the run directory left on a host that was lost and
	// not back when the run ended (with what its jobs left running):
	// the next run there, or dsub clean, sweeps it.
	Uncleaned string `json:"uncleaned,omitempty"`
	// ReadyS is when it was ready for its first job, in seconds from the
	// run's start: what came before was its preparing.
	ReadyS float64 `json:"ready_s,omitempty"`
}

// HookRecord is how a --setup or --teardown ran on a host.
type HookRecord struct {
	Exit    int     `json:"exit"` // -1: killed, or it never ran to an exit
	Signal  string  `json:"signal,omitempty"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// Resumable is nil for a run directory of the layout this dsub writes
// (SchemaStreams), else why it cannot be resumed, naming its format.
func (m *Manifest) Resumable() error {
	if m.Schema == SchemaStreams {
		return nil
	}
	return fmt.Errorf("run.json has schema %d (per-job log files in jobs/), and this dsub resumes only schema %d (output streams): start a new run, or resume it with the dsub that recorded it; dsub report and dsub log still read it",
		max(m.Schema, 1), SchemaStreams)
}

// ReadManifest reads dir's run.json.
func ReadManifest(dir RunDir) (*Manifest, error) {
	b, err := os.ReadFile(dir.Manifest())
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir.Manifest(), err)
	}
	return &m, nil
}

// Write writes the manifest into dir atomically.
func (m *Manifest) Write(dir RunDir) error { return WriteJSONFile(dir.Manifest(), m) }

// WriteJSONFile writes v to path atomically.
func WriteJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// HostState is a host's state in a run, as its records and its live
// snapshot tell it.
type HostState string

const (
	HostPreparing   HostState = "preparing"   // connecting, probing, shipping
	HostUp          HostState = "up"          // taking jobs
	HostDown        HostState = "down"        // unreachable for now; tried again
	HostQuarantined HostState = "quarantined" // failed too many jobs in a row
	HostFailed      HostState = "failed"      // could not be prepared: out of the run
)

// HostStats are one host's figures for the final table.
type HostStats struct {
	Name    string    `json:"name"`
	Jobs    int       `json:"jobs"`       // results recorded from this host
	JobTime float64   `json:"job_time_s"` // sum of those jobs' run times
	Failed  int       `json:"failed"`     // failed executions
	Lost    int       `json:"lost"`       // executions lost to transport failures
	Slots   int       `json:"slots"`
	State   HostState `json:"state"`
	// CPU is the CPU seconds of its executions, where measured (agent
	// mode); Launcher is how its jobs were started.
	CPU      float64 `json:"cpu_s,omitempty"`
	Launcher string  `json:"launcher,omitempty"`
	// Load1, MemAvailKB and MemTotalKB are the host's last health
	// report (an agent's heartbeats), for the report; absent where none
	// came.
	Load1      *float64 `json:"load1,omitempty"`
	MemAvailKB int64    `json:"mem_avail_kb,omitempty"`
	MemTotalKB int64    `json:"mem_total_kb,omitempty"`
}

// UnusedHost is a host that took no part in a run, and its state then.
type UnusedHost struct {
	Name  string    `json:"name"`
	State HostState `json:"state"` // preparing, down, failed
}

// Stats summarise a run.
type Stats struct {
	Jobs      int         `json:"jobs"`      // jobs submitted
	Succeeded int         `json:"succeeded"` // jobs with a recorded result
	Failed    int         `json:"failed"`    // jobs that failed for good
	Resumed   int         `json:"resumed"`   // jobs taken over from the run being resumed
	Wall      float64     `json:"wall_s"`
	Hosts     []HostStats `json:"hosts"`
	// Unused are the hosts that gave the run no slot and ran no job:
	// still being prepared when the jobs ran out, unreachable, or failed
	// (the run's warnings say why), with that state.
	Unused []UnusedHost `json:"unused,omitempty"`
	// Backups counts speculative executions started (--speculate), and
	// BackupsWon those that finished first.
	Backups    int `json:"backups,omitempty"`
	BackupsWon int `json:"backups_won,omitempty"`
}

// JobTime is the sum of recorded jobs' run times.
func (s *Stats) JobTime() float64 {
	t := 0.0
	for _, h := range s.Hosts {
		t += h.JobTime
	}
	return t
}

// Speedup is total job time over wall time.
func (s *Stats) Speedup() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return s.JobTime() / s.Wall
}

// Slots is the total slots of hosts that took part.
func (s *Stats) Slots() int {
	n := 0
	for _, h := range s.Hosts {
		n += h.Slots
	}
	return n
}

// WriteTable prints the per-host table (as Parallel Python's print_stats
// and dispy's print_status do), then wall time, speedup and efficiency.
func (s *Stats) WriteTable(w io.Writer) {
	nw := len("total")
	total := 0
	for _, h := range s.Hosts {
		nw = max(nw, len(h.Name))
		total += h.Jobs
	}
	cpu := false // CPU columns only where measured
	for _, h := range s.Hosts {
		cpu = cpu || h.CPU > 0
	}
	head := fmt.Sprintf("%-*s %6s %7s %10s %9s %6s %5s %5s", nw, "HOST", "JOBS", "% JOBS", "JOB TIME", "TIME/JOB", "FAILED", "LOST", "SLOTS")
	if cpu {
		head += fmt.Sprintf(" %9s %7s %s", "CPU TIME", "CPU EFF", "LAUNCH")
	}
	fmt.Fprintln(w, head)
	row := func(name string, jobs int, t float64, failed, lost, slots int, cpuS float64, launcher string) {
		pct, per := 0.0, 0.0
		if total > 0 {
			pct = 100 * float64(jobs) / float64(total)
		}
		if jobs > 0 {
			per = t / float64(jobs)
		}
		fmt.Fprintf(w, "%-*s %6d %6.1f%% %9.2fs %8.3fs %6d %5d %5d", nw, name, jobs, pct, t, per, failed, lost, slots)
		if cpu {
			// CPU efficiency: CPU seconds over the slots' capacity for the
			// run's wall time.
			eff := 0.0
			if s.Wall > 0 && slots > 0 {
				eff = 100 * cpuS / (s.Wall * float64(slots))
			}
			fmt.Fprintf(w, " %8.2fs %6.1f%%", cpuS, eff)
			if launcher != "" {
				fmt.Fprintf(w, " %s", launcher)
			}
		}
		fmt.Fprintln(w)
	}
	var failed, lost int
	cpuTotal := 0.0
	for _, h := range s.Hosts {
		row(h.Name, h.Jobs, h.JobTime, h.Failed, h.Lost, h.Slots, h.CPU, h.Launcher)
		failed += h.Failed
		lost += h.Lost
		cpuTotal += h.CPU
	}
	row("total", total, s.JobTime(), failed, lost, s.Slots(), cpuTotal, "")
	eff := 0.0
	if n := s.Slots(); n > 0 {
		eff = 100 * s.Speedup() / float64(n)
	}
	resumed := ""
	if s.Resumed > 0 {
		resumed = fmt.Sprintf(" (%d recorded before the resume)", s.Resumed)
	}
	backups := ""
	if s.Backups > 0 {
		backups = fmt.Sprintf("; %d backups, %d won", s.Backups, s.BackupsWon)
	}
	if len(s.Unused) > 0 {
		// Not rows: they would read as hosts that were given no work.
		names := make([]string, len(s.Unused))
		for i, h := range s.Unused {
			names[i] = h.Name + " (" + string(h.State) + ")"
		}
		fmt.Fprintf(w, "not used: %s\n", strings.Join(names, ", "))
	}
	fmt.Fprintf(w, "jobs %d: %d succeeded, %d failed%s%s; wall %.2fs", s.Jobs, s.Succeeded, s.Failed, resumed, backups, s.Wall)
	if n := s.Slots(); n > 0 {
		// Nothing ran (a resume with every job recorded): no speedup to tell.
		fmt.Fprintf(w, "; speedup %.2fx; efficiency %.1f%% of %d slots", s.Speedup(), eff, n)
	}
	fmt.Fprintln(w)
}
