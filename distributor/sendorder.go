package distributor

import (
	"context"
	"sync"
)

// sendOrder makes the jobs sent to a host that queues them (an agent,
// with a window) reach it in the order the dispatcher assigned them.
//
// Each execution runs in its own goroutine, which stages the job's files
// and then sends it. Without an order the first job assigned could be
// sent last: the host would start the jobs assigned after it in its free
// slots and hold it in its window behind them, for as long as they run.
// (A --halt now whose failing job was first waited 341 s behind jobs that
// the halt was meant to kill.)
//
// Tickets are taken in assignment order, on the dispatcher's goroutine.
// An execution waits for its turn before it sends, and gives up its
// ticket (done) once the host holds its job, or when it ends without
// sending. The turn is the lowest ticket not yet given up.
type sendOrder struct {
	mu   sync.Mutex
	next uint64          // the next ticket to hand out
	turn uint64          // the lowest ticket not given up
	gone map[uint64]bool // tickets above turn already given up
	wake chan struct{}   // closed, and replaced, when turn advances
}

// ticket hands out the next ticket.
func (o *sendOrder) ticket() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.next
	o.next++
	return t
}

// wait returns once every ticket before t has been given up, or ctx's
// error if it ends first.
func (o *sendOrder) wait(ctx context.Context, t uint64) error {
	for {
		o.mu.Lock()
		if o.turn >= t {
			o.mu.Unlock()
			return nil
		}
		if o.wake == nil {
			o.wake = make(chan struct{})
		}
		wake := o.wake
		o.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// done gives up ticket t; giving it up again does nothing.
func (o *sendOrder) done(t uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if t < o.turn || o.gone[t] {
		return
	}
	if t > o.turn {
		if o.gone == nil {
			o.gone = map[uint64]bool{}
		}
		o.gone[t] = true
		return
	}
	o.turn++
	for o.gone[o.turn] {
		delete(o.gone, o.turn)
		o.turn++
	}
	if o.wake != nil {
		close(o.wake)
		o.wake = nil
	}
}
