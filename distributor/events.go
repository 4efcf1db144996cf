package distributor

import (
	"time"

	"github.com/dsub-dev/dsub/queue"
	"github.com/dsub-dev/dsub/records"
)

// Event is a step in an execution's life, for live monitors
// (RunOptions.OnEvent). An execution is sent to a host (Sent), runs there
// (Started: at once, or when a host that queues jobs gives it a slot) and
// ends (Ended), each once, in that order.
type Event struct {
	Kind    EventKind
	Seq     int // the execution: unique in the run
	Job     int
	Host    string
	Attempt int
	Backup  bool // a speculative execution
	Time    time.Time
	Command string // Sent and Started

	// Ended only.
	Outcome    string // the joblog's Outcome column
	Exit       int
	Signal     string
	Duration   time.Duration // from its start on the host
	StderrTail string
	Output     records.Locator // where its output is (zero if it never ran)
}

// EventKind is what an Event reports.
type EventKind int

const (
	// Sent: the execution was assigned to a host that holds jobs beyond
	// its slots (an agent's window); Started follows when one frees.
	Sent EventKind = iota
	Started
	Ended
	// Prepared: a host is ready for its first job (connected, probed,
	// its program shipped, its setup done); Seq and Job are 0. A page
	// draws the span before it as the host's preparing.
	Prepared
)

func (k EventKind) String() string {
	return [...]string{"sent", "started", "ended", "prepared"}[k]
}

// event reports e, if anyone listens.
func (r *Run) event(e Event) {
	if r.opts.OnEvent != nil {
		r.opts.OnEvent(e)
	}
}

// startEvent is an execution's Sent or Started.
func startEvent(k EventKind, e queue.Exec, je *jobEntry, es *execState, t time.Time) Event {
	return Event{Kind: k, Seq: e.Seq, Job: e.Job.ID, Host: e.Host, Attempt: e.Attempt, Backup: es.backup, Time: t, Command: je.command}
}
