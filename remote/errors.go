package remote

import (
	"context"
	"errors"
	"fmt"
)

// Kind classifies an error for the caller's decisions: a transport error
// may be retried on another host without counting against a job; a remote
// exit is the command's own failure.
type Kind int

const (
	KindOther      Kind = iota
	KindConfig          // bad configuration: fix and re-run
	KindTransport       // connection failed or was lost, host unreachable or dead
	KindAuth            // authentication refused
	KindHostKey         // host key unknown or changed: never retried
	KindRemoteExit      // the remote command ran and exited non-zero or by signal
	KindTimeout         // a deadline passed
	KindCanceled        // the caller's context was cancelled
)

func (k Kind) String() string {
	switch k {
	case KindConfig:
		return "config"
	case KindTransport:
		return "transport"
	case KindAuth:
		return "auth"
	case KindHostKey:
		return "host key"
	case KindRemoteExit:
		return "remote exit"
	case KindTimeout:
		return "timeout"
	case KindCanceled:
		return "canceled"
	}
	return "error"
}

// Error is an error from an operation on one host.
type Error struct {
	Op   string // "connect", "exec", "upload", "stat", ...
	Host string // display name of the host
	Kind Kind
	Err  error
	Hint string // advice for the user, if any ("add it with ssh-keyscan ...")
	// PGID is, for a command whose connection was lost (KindTransport),
	// its remote process group if it was known (else 0). Closing a
	// connection does not kill remote processes, so they may still run:
	// KillOrphan them once the host can be reached again.
	PGID int
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s on %s: %v", e.Op, e.Host, e.Err)
	if e.Hint != "" {
		s += "\n  hint: " + e.Hint
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, KindCanceled
// or KindTimeout for bare context errors, else KindOther.
func KindOf(err error) Kind {
	var e *Error
	switch {
	case err == nil:
		return KindOther
	case errors.As(err, &e):
		return e.Kind
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	}
	return KindOther
}

// ExitError reports a remote command that ran and did not exit 0.
type ExitError struct {
	Status int    // exit status; -1 when killed by a signal
	Signal string // signal name without "SIG", when killed by one
}

func (e *ExitError) Error() string {
	if e.Signal != "" {
		return "killed by signal " + e.Signal
	}
	return fmt.Sprintf("exit status %d", e.Status)
}

// ExitStatus returns the remote exit status carried by err: 0 for nil, the
// status of an *ExitError, and -1 for anything else (the command did not
// complete).
func ExitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Status
	}
	return -1
}
