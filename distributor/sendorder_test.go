package distributor

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/remote/fakehost"
)

func TestSendOrder(t *testing.T) {
	var o sendOrder
	t0, t1, t2, t3 := o.ticket(), o.ticket(), o.ticket(), o.ticket()
	ready := func(tk uint64) bool {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return o.wait(ctx, tk) == nil
	}
	steps := []struct {
		done  uint64
		ready []bool // t0..t3 may send
	}{
		{done: 99, ready: []bool{true, false, false, false}}, // nothing given up: only the first
		{done: t2, ready: []bool{true, false, false, false}}, // given up out of turn: t1 still waits for t0
		{done: t0, ready: []bool{true, true, false, false}},
		{done: t0, ready: []bool{true, true, false, false}}, // twice: nothing more
		{done: t1, ready: []bool{true, true, true, true}},   // t2 was given up: t3's turn too
	}
	for i, s := range steps {
		if s.done != 99 {
			o.done(s.done)
		}
		for tk, want := range s.ready {
			if got := ready([]uint64{t0, t1, t2, t3}[tk]); got != want {
				t.Errorf("step %d: ticket %d may send = %v, want %v", i, tk, got, want)
			}
		}
	}
}

// A waiter is woken when its turn comes, and one whose context ends
// gives up waiting with its error.
func TestSendOrderWait(t *testing.T) {
	var o sendOrder
	first, second := o.ticket(), o.ticket()
	got := make(chan error, 1)
	go func() { got <- o.wait(context.Background(), second) }()
	select {
	case err := <-got:
		t.Fatalf("second sent before the first was: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	o.done(first)
	if err := <-got; err != nil {
		t.Fatal(err)
	}

	third := o.ticket()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { got <- o.wait(ctx, third) }()
	cancel()
	if err := <-got; !errors.Is(err, context.Canceled) {
		t.Fatalf("wait = %v, want context.Canceled", err)
	}
}

// Jobs reach a host that queues them in the order they were assigned,
// even when the first is slow to get there: it takes a free slot, not
// the window behind jobs assigned after it. Here job 1 fails at once
// under --halt now, so the others are killed before any succeeds. Sent
// out of order (no sendOrder), job 1 waits behind the jobs sent after it
// and the halt comes only when they have succeeded.
func TestEngineSendOrder(t *testing.T) {
	ctx := testCtx(t)
	h := fakehost.New("f01", fakehost.Options{Slots: 2, Transit: func(job int) time.Duration {
		if job == 1 {
			return 100 * time.Millisecond
		}
		return 0
	}})
	var mu sync.Mutex
	var order []int
	var succeeded atomic.Int64
	h.SetJob(func(ctx context.Context, p *fakehost.Proc) error {
		mu.Lock()
		order = append(order, p.Job)
		mu.Unlock()
		if p.Job == 1 {
			return fakehost.Exit(1)
		}
		select {
		case <-ctx.Done():
			return fakehost.Exit(143)
		case <-time.After(time.Second):
			succeeded.Add(1)
			return printJob(ctx, p)
		}
	})
	c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 2), Host: h, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	run := startFake(ctx, t, c, RunOptions{HaltAfter: 1, HaltNow: true})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run.submitShell(ctx, t, 3) // 2 slots and a window of 1
	_, _, err = run.Wait()
	if !errors.Is(err, ErrHalted) {
		t.Fatalf("err = %v, want ErrHalted", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// Jobs 1 and 2 take the slots (which of their funcs runs first is
	// the scheduler's), job 3 waits; job 1's failure halts the run and
	// kills the others. Job 1 held back behind 2 and 3 would let them
	// succeed first.
	if succeeded.Load() != 0 {
		t.Errorf("jobs started in the order %v, and %d succeeded before the halt; want none: job 1 waited behind later jobs", order, succeeded.Load())
	}
}
