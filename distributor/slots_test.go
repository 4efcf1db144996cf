package distributor

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/remote/fakehost"
)

// {%}: each job gets its slot on its host, 1 to its slots, as it starts;
// no two jobs running at once on a host share one, and hosts that would
// hold a window of waiting jobs hold none (their numbers would run past
// the slots).
func TestEngineSlotNumbers(t *testing.T) {
	ctx := testCtx(t)
	var mu sync.Mutex
	running := map[string]map[string]bool{} // host → slots in use
	var bad []string
	used := map[string]bool{}
	job := func(ctx context.Context, p *fakehost.Proc) error {
		host, slot := p.Env("DSUB_HOST"), p.Env("DSUB_SLOT")
		mu.Lock()
		if !strings.HasSuffix(p.Cmd.Shell, " "+slot) || slot != "1" && slot != "2" || running[host][slot] {
			bad = append(bad, fmt.Sprintf("job %d on %s: slot %s, command %q, in use: %v", p.Job, host, slot, p.Cmd.Shell, running[host]))
		}
		if running[host] == nil {
			running[host] = map[string]bool{}
		}
		running[host][slot] = true
		used[host+"/"+slot] = true
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running[host][slot] = false
		mu.Unlock()
		return printJob(ctx, p)
	}
	var members []*Member
	for _, n := range []string{"f01", "f02"} {
		// Slots: the fake host queues jobs beyond 2, as an agent does.
		members = append(members, &Member{Inv: fakeInv(n, 2), Host: fakehost.New(n, fakehost.Options{Slots: 2, Job: job}), Timeout: time.Second})
	}
	c, err := NewClusterOf(members)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	run := startFake(ctx, t, c, RunOptions{SlotNumbers: true})
	go func() {
		defer run.Close()
		for i := range 40 {
			if run.Submit(ctx, JobSpec{Shell: "job " + SlotMark, Shard: i}) != nil {
				return
			}
		}
	}()
	st, _, err := run.Wait()
	if err != nil || st.Succeeded != 40 {
		t.Fatalf("run: %v, %+v", err, st)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad {
		t.Error(b)
	}
	if len(used) != 4 {
		t.Errorf("slots used: %v, want both slots of both hosts", used)
	}
}
