package distributor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
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
	return d.path("output", records.StreamFile(i))
}

// ReadOutput copies stream s of the execution that loc locates (a
// Result's or a JournalRecord's Output) to w, byte for byte.
func (d RunDir) ReadOutput(loc records.Locator, s records.Stream, w io.Writer) (int64, error) {
	if loc.IsZero() {
		return 0, fmt.Errorf("no output recorded")
	}
	return records.ReadOutput(d.Output(), loc, s, w)
}

// OldJobLogs are where a run directory of schema 1 (before output
// streams) kept job's output, which reports still read.
func (d RunDir) OldJobLogs(job int) (stdout, stderr string) {
	return d.path("jobs", fmt.Sprintf("%d.out", job)), d.path("jobs", fmt.Sprintf("%d.err", job))
}

// Returned is where job's returned files go (RunOptions.ReturnDir
// aside).
func (d RunDir) Returned(job int) string { return d.path("out", strconv.Itoa(job)) }

// HookLogs are where host's output of hook ("setup", "teardown") goes.
func (d RunDir) HookLogs(host, hook string) (stdout, stderr string) {
	dir := d.path("hosts", inventory.DirName(host))
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
	Schema  int    `json:"schema,omitempty"`
	ID      string `json:"id"`
	Started string `json:"started"` // RFC 3339
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
	Finished string  `json:"finished,omitempty"`
	Stats    *Stats  `json:"stats,omitempty"`
	Speedup  float64 `json:"speedup,omitempty"`
	Error    string  `json:"error,omitempty"`
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

// write writes the manifest atomically.
func (m *Manifest) write(dir RunDir) error { return writeJSONFile(dir.Manifest(), m) }
