package distributor

import (
	"context"
	"errors"
	"fmt"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/queue"
)

// ErrCanceled is why a job canceled by the user (Run.CancelJob) failed:
// its error is of errs.KindCanceled, and wraps ErrCanceled.
var ErrCanceled = errors.New("cancelled by the user")

// canceledErr is job's error when the user canceled it.
func canceledErr(host string, job int) error {
	return errs.E(errs.OpCancel, host, errs.KindCanceled, ErrCanceled).WithJob(job)
}

// cancelReq asks the dispatcher to cancel a job.
type cancelReq struct {
	job   int
	reply chan error
}

// CancelJob gives up job at the user's request (a monitor page's
// button): a waiting job fails now, a running one once its executions
// have been killed, each with ErrCanceled. The run goes on. It is an
// error for a job that is not waiting or running.
func (r *Run) CancelJob(ctx context.Context, job int) error {
	req := cancelReq{job: job, reply: make(chan error, 1)}
	select {
	case r.cancel <- req:
	case <-r.loopDone:
		return errors.New("the run has ended")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// onCancel cancels a job: the queue gives it up, at once if it waits,
// else when the executions this kills have ended (handle).
func (d *dispatcher) onCancel(req cancelReq) {
	running, ok := d.q.Cancel(req.job)
	if !ok {
		req.reply <- fmt.Errorf("job %d is not waiting or running", req.job)
		return
	}
	d.cancelled[req.job] = true
	d.r.opts.Warn(fmt.Sprintf("job %d cancelled by the user", req.job))
	if running {
		for _, es := range d.running {
			if es.job == req.job {
				es.cancel()
			}
		}
		req.reply <- nil
		return
	}
	d.giveUp(completion{e: queue.Exec{Job: &queue.Job{ID: req.job}}, err: canceledErr("", req.job), exit: -1})
	req.reply <- nil
}
