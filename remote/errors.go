package remote

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Errors are package errs's: *errs.Error, naming the operation (errs.Op*
// constants) and the host, with an errs.Kind. There are no aliases here:
// one spelling everywhere.

// ExitError reports a remote command that ran and did not exit 0.
type ExitError struct {
	Status int    // exit status; -1 when killed by a signal
	Signal string // signal name without "SIG", when killed by one
}

// Signal checks a signal name that a host sent (an SSH exit-signal, an
// agent's exit frame): a known signal's name without "SIG" is itself,
// anything else is "UNKNOWN", so that no host's word reaches a record or
// a terminal as it came.
func Signal(name string) string {
	if name == "" {
		return ""
	}
	if _, ok := SignalNumber(name); !ok {
		return "UNKNOWN"
	}
	return name
}

// SignalNumber is the number of a signal named without "SIG" ("TERM":
// 15), as GNU parallel's joblog writes it.
func SignalNumber(name string) (int, bool) {
	n := unix.SignalNum("SIG" + name)
	return int(n), n != 0
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
