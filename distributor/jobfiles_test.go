package distributor

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// Per-job files on fake hosts: each job finds its transfer in its own
// directory (a link into the content cache), and what it returns is on
// local disk when it counts as succeeded; a job that does not write its
// return fails, naming the file, and its peers are not held back.
func TestEngineTransferAndReturn(t *testing.T) {
	ctx := testCtx(t)
	local := t.TempDir()
	var inputs []string
	for i := 1; i <= 6; i++ {
		p := filepath.Join(local, fmt.Sprintf("in%d.txt", i))
		body := fmt.Sprintf("input %d\n", i)
		if i == 6 {
			body = "input 1\n" // the same content as in1.txt
		}
		os.WriteFile(p, []byte(body), 0o600)
		inputs = append(inputs, p)
	}
	c, hs := fakeCluster(t, 2, 2)
	for _, h := range hs {
		h.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
			in := path.Base(p.Cmd.Argv[len(p.Cmd.Argv)-1])
			data, err := h.ReadFile(ctx, path.Join(p.Cmd.Dir, in))
			if err != nil {
				return fakehost.Exit(1)
			}
			if l, _ := h.ReadLink(ctx, path.Join(p.Cmd.Dir, in)); !strings.Contains(l, "/files/") {
				return fakehost.Exit(3) // not a link into the cache
			}
			if p.Env("DSUB_RUN_DIR") == "" || path.Dir(path.Dir(p.Cmd.Dir)) != p.Env("DSUB_RUN_DIR") {
				return fakehost.Exit(2) // not in its own directory under the run's
			}
			if in != "in3.txt" { // job 3 forgets its output
				h.WriteFile(ctx, path.Join(p.Cmd.Dir, in+".out"), []byte(strings.ToUpper(string(data))), 0o644)
			}
			h.WriteFile(ctx, path.Join(p.Cmd.Dir, "log"), []byte("done\n"), 0o644)
			p.Printf("1\n")
			return nil
		})
	}
	f := startFake(ctx, t, c, RunOptions{Binary: "/bin/true", JobDirs: true})
	go func() {
		defer f.Close()
		for i, p := range inputs {
			base := filepath.Base(p)
			if f.Submit(ctx, JobSpec{Args: []string{base}, Transfer: []string{p}, Return: []string{"log", base + ".out"}, Shard: i}) != nil {
				return
			}
		}
	}()
	st, _, _ := f.Wait()
	if st.Succeeded != 5 || st.Failed != 1 {
		t.Fatalf("%d succeeded, %d failed; want 5 and 1 (job 3)", st.Succeeded, st.Failed)
	}
	if err := f.results[3].Err; err == nil || !strings.Contains(err.Error(), "return in3.txt.out") || !strings.Contains(err.Error(), "did not write it") {
		t.Errorf("job 3: %v, want its missing return named", err)
	}
	// Job 3 returns a log first, then the missing file: the job failed,
	// so neither is left.
	if es, _ := os.ReadDir(records.RunDir(f.Dir()).Returned(3)); len(es) != 0 {
		t.Errorf("job 3 failed but left %d returned files", len(es))
	}
	for j := 1; j <= 6; j++ {
		if j == 3 {
			continue
		}
		want := strings.ToUpper(fmt.Sprintf("input %d\n", j))
		if j == 6 {
			want = "INPUT 1\n"
		}
		got, err := os.ReadFile(filepath.Join(records.RunDir(f.Dir()).Returned(j), fmt.Sprintf("in%d.txt.out", j)))
		if string(got) != want {
			t.Errorf("job %d returned %q (%v), want %q", j, got, err, want)
		}
	}
}

// In a shared --return-dir, a job whose return has the name of another
// job's fails (it would replace it), and a failing job removes only what
// it put there: what a successful job delivered stays (a later job's
// failure once deleted it).
func TestSharedReturnDirKeepsOthersFiles(t *testing.T) {
	ctx := testCtx(t)
	shared := t.TempDir()
	c, hs := fakeCluster(t, 1, 1) // one slot: job 1, then job 2
	for _, h := range hs {
		h.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
			h.WriteFile(ctx, path.Join(p.Cmd.Dir, "log"), []byte(fmt.Sprintf("job %d\n", p.Job)), 0o644)
			if p.Job == 1 {
				h.WriteFile(ctx, path.Join(p.Cmd.Dir, "out"), []byte("1\n"), 0o644)
			}
			p.Printf("1\n")
			return nil
		})
	}
	f := startFake(ctx, t, c, RunOptions{Binary: "/bin/true", JobDirs: true, ReturnDir: shared})
	go func() {
		defer f.Close()
		for i := range 2 {
			if f.Submit(ctx, JobSpec{Args: []string{"x"}, Return: []string{"log", "out"}, Shard: i}) != nil {
				return
			}
		}
	}()
	st, _, _ := f.Wait()
	if st.Succeeded != 1 || st.Failed != 1 {
		t.Fatalf("%d succeeded, %d failed; want job 1 and job 2", st.Succeeded, st.Failed)
	}
	// Job 2 (which writes no "out") collides on "log" first.
	if err := f.results[2].Err; err == nil || !strings.Contains(err.Error(), "job 1 returned a file of that name") {
		t.Errorf("job 2: %v; want its collision with job 1 named", err)
	}
	for name, want := range map[string]string{"log": "job 1\n", "out": "1\n"} {
		if got, err := os.ReadFile(filepath.Join(shared, name)); string(got) != want {
			t.Errorf("%s in the shared --return-dir: %q (%v), want job 1's %q", name, got, err, want)
		}
	}
}
