// Package runsynth writes the records of a made-up finished run (run.json
// and joblog.tsv) of any size, for tests and benchmarks of what reads
// them (reports): a 100,000-job run without running 100,000 jobs.
package runsynth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/dsub-dev/dsub/records"
)

// Write writes a run of jobs on hosts of slots each into dir: jobs last
// 50 ms to 2 s (a few stragglers 10 s), one in failEvery fails (0: none),
// packed on their hosts' slots as a run would. It writes the layout of
// schema 1 (run.json without a schema, a failed job's stderr in
// jobs/<job>.err), as dsub recorded runs before output streams: reports
// must go on reading those.
func Write(dir string, jobs, hosts, slots, failEvery int) error {
	if err := os.MkdirAll(filepath.Join(dir, "jobs"), 0o700); err != nil {
		return err
	}
	rd := records.RunDir(dir)
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	f, err := os.Create(rd.Joblog())
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, records.JoblogHeader)
	free := make([]time.Time, hosts*slots) // each slot's next free time
	for i := range free {
		free[i] = t0
	}
	st := &records.Stats{Jobs: jobs}
	per := make([]records.HostStats, hosts)
	var end time.Time
	for j := 1; j <= jobs; j++ {
		s := 0 // the slot free first
		for k := range free {
			if free[k].Before(free[s]) {
				s = k
			}
		}
		d := time.Duration(50+rng.IntN(1950)) * time.Millisecond
		if rng.IntN(1000) == 0 {
			d = 10 * time.Second
		}
		h := s / slots
		exit, outcome := 0, "recorded"
		if failEvery > 0 && j%failEvery == 0 {
			exit, outcome = 1, "gave-up"
			st.Failed++
			per[h].Failed++
			os.WriteFile(filepath.Join(dir, "jobs", fmt.Sprintf("%d.err", j)), []byte(fmt.Sprintf("job %d: input corrupt\n", j)), 0o600)
		} else {
			st.Succeeded++
			per[h].Jobs++
			per[h].JobTime += d.Seconds()
		}
		row := records.JoblogRow{Job: j, Host: fmt.Sprintf("h%02d", h+1), Start: free[s], Runtime: d, Receive: 8,
			Exit: exit, Command: fmt.Sprintf("./work --shard %d", j), Outcome: outcome}
		if err := row.Write(w); err != nil {
			return err
		}
		free[s] = free[s].Add(d + 2*time.Millisecond)
		if free[s].After(end) {
			end = free[s]
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	m := records.Manifest{ID: "synthetic", Started: t0, Finished: end, Mode: "commands"}
	for i := range per {
		name := fmt.Sprintf("h%02d", i+1)
		per[i].Name, per[i].Slots, per[i].State, per[i].Launcher = name, slots, records.HostUp, "agent"
		m.Hosts = append(m.Hosts, records.HostRecord{Name: name, Address: name, Slots: slots, Launcher: "agent"})
	}
	st.Hosts, st.Wall = per, end.Sub(t0).Seconds()
	m.Stats, m.Speedup = st, st.Speedup()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(rd.Manifest(), b, 0o600)
}
