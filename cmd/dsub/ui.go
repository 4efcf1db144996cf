package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/monitor"
	"github.com/dsub-dev/dsub/records"
)

// errStopped is why a run stopped from its --ui page (--ui-control).
var errStopped = errors.New("stopped from the --ui page")

// runUI is a run's --ui monitor; its methods do nothing without --ui.
type runUI struct {
	m   *monitor.Model
	srv *monitor.Server
	run atomic.Pointer[distributor.Run] // set once started: for --ui-control's cancel
}

// startUI serves the --ui page, if asked, and prints its URL. With
// --ui-control, the returned context is the run's: the page's stop
// cancels it as Ctrl-C cancels the root.
func startUI(ctx context.Context, f *runFlags, record runRecord, se *lockedWriter) (context.Context, *runUI, error) {
	if f.ui == "" {
		return ctx, &runUI{}, nil
	}
	u := &runUI{m: monitor.NewModel("dsub run " + strings.Join(record.Args, " "))}
	opts := monitor.ServerOptions{Addr: f.ui}
	if f.uiControl {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		opts.Stop = func() {
			fmt.Fprintln(se, "dsub: stop requested from the monitor page: stopping as on Ctrl-C")
			cancel(errStopped)
		}
		opts.CancelJob = func(ctx context.Context, job int) error {
			r := u.run.Load()
			if r == nil {
				return errors.New("the run has not started")
			}
			return r.CancelJob(ctx, job)
		}
	}
	srv, err := monitor.Serve(u.m, opts)
	if err != nil {
		return ctx, nil, usagef("--ui %s: %w", opts.Addr, err)
	}
	u.srv = srv
	fmt.Fprintf(se, "dsub: monitor: %s\n", srv.URL())
	return ctx, u, nil
}

func (u *runUI) warn(also func(string)) func(string) {
	if u.m == nil {
		return also
	}
	return func(s string) { u.m.Warn(s); also(s) }
}

func (u *runUI) onEvent() func(distributor.Event) {
	if u.m == nil {
		return nil
	}
	return u.m.Event
}

func (u *runUI) attach(r *distributor.Run) {
	if u.m != nil {
		u.m.Attach(r)
		u.run.Store(r)
	}
}

func (u *runUI) finish(st *records.Stats, result string, err error) {
	if u.m != nil {
		u.m.Finish(st, result, err)
	}
}

// close lets a watching page fetch the final state (up to 3 s), then
// stops serving.
func (u *runUI) close(ctx context.Context) {
	if u.srv == nil {
		return
	}
	u.srv.Linger(context.WithoutCancel(ctx), 3*time.Second)
	u.srv.Close()
}
