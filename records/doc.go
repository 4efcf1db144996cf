// Package records is a run's records on disk, and their only readers
// and writers, below the engine (distributor) so that the report, the
// monitor and `dsub log` read them without it: the run directory
// (RunDir, which owns every path in it), run.json (Manifest, with the
// run's Stats), the journal (results.jsonl: a JournalRecord per job, with
// group commit), the joblogs (joblog.tsv and executions.tsv: a JoblogRow
// per execution) and the output streams.
//
// A run's job output goes into a few append-only stream files
// (output/0.dso, ...; a host's executions all in one), as length-prefixed,
// checksummed records
// rather than two files per job: many small files are what HPC file
// systems handle worst. A record holds bytes of one stream (stdout or
// stderr) of one execution, with the offset of that stream's previous
// record; an execution's end record holds how much each stream wrote and
// where its last record is. The journal's result points at the end
// record (a Locator), so a job's output is found without a scan, and
// read by following its chain back.
//
// Invariants:
//   - An execution writes records only as it fills a chunk (32 KiB) and
//     at its end, so most jobs cost one record per stream and the master
//     holds at most a chunk per running stream.
//   - A record is durable once its StreamWriter's Sync returns; the
//     engine syncs streams before the journal commit that refers to
//     them, so no committed result locates output that is not on disk.
//   - A torn tail (a master killed mid-write) is cut when the file is
//     opened again for appending (a resume), and readers stop quietly at
//     one; a record whose checksum fails is never returned as output.
package records
