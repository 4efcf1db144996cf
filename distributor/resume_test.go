package distributor_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
)

// TestResumeRefusesNonRunDirectory: a resume of a directory that is not a
// run (its parent, itself, a run's jobs/, a run.json with a forged id) is
// refused by Start, before any host is reached: the run id names the
// remote directory a run kills processes in and removes. (-short: the one
// host is never contacted.)
func TestResumeRefusesNonRunDirectory(t *testing.T) {
	hosts, err := inventory.FromList("127.0.0.1:1", inventory.Options{SSHConfig: "none", Home: t.TempDir(), LocalUser: "u"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := distributor.NewCluster(hosts, distributor.ClusterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	logs := t.TempDir()
	run := filepath.Join(logs, "20261122-060000-abcd")
	os.MkdirAll(filepath.Join(run, "jobs"), 0o700)
	os.WriteFile(filepath.Join(run, "run.json"), []byte(`{"id":"20261122-060000-abcd"}`), 0o600)
	forged := filepath.Join(logs, "forged")
	os.MkdirAll(forged, 0o700)
	os.WriteFile(filepath.Join(forged, "run.json"), []byte(`{"id":".."}`), 0o600)
	// Complete but for the id: refused for the id alone.
	os.WriteFile(filepath.Join(forged, "results.jsonl"), nil, 0o600)
	for _, dir := range []string{logs, filepath.Join(run, "jobs"), filepath.Join(run, "jobs", ".."), filepath.Join(run, ".."), forged} {
		r, err := c.Start(context.Background(), distributor.RunOptions{ResumeDir: dir, LogsDir: logs})
		if err == nil {
			r.Close()
			r.Wait()
			t.Errorf("resume %s: started", dir)
			continue
		}
		if !strings.Contains(err.Error(), "resume") || dir == forged && !strings.Contains(err.Error(), "no valid run id") {
			t.Errorf("resume %s: %v", dir, err)
		}
	}
	// The real run directory passes this check (its id is well formed).
	if !distributor.ValidRunID("20261122-060000-abcd") || distributor.ValidRunID("..") || distributor.ValidRunID("a/b") {
		t.Error("ValidRunID")
	}
}
