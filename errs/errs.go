// Package errs is dsub's one error vocabulary, shared by remote (how
// commands reach hosts) and distributor (runs): an *Error names the
// operation (an Op), the host, job and path it concerns, and a Kind that
// callers decide by. Upspin's errors.E is the model.
//
// The Kind is what code branches on: a KindTransport failure moves the
// work to another host for free; a KindRemoteExit is the command's own
// failure; KindConfig means nothing should be retried until the user
// fixes something (cmd/dsub maps it, in one place, to exit status 2).
// Messages name no CLI flags: the library does not know them.
package errs

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Op is the operation that failed.
type Op string

// Operations on a host (package remote).
const (
	OpConnect   Op = "connect"
	OpSession   Op = "session"
	OpExec      Op = "exec"
	OpKill      Op = "kill"
	OpProbe     Op = "probe"
	OpSFTP      Op = "sftp"
	OpRemoveAll Op = "remove-all"
)

// Operations of a run or an admin command (package distributor).
const (
	OpPing     Op = "ping"
	OpGet      Op = "get"
	OpPrepare  Op = "prepare"
	OpShip     Op = "ship"
	OpResume   Op = "resume"
	OpRecord   Op = "record"
	OpSetup    Op = "setup"
	OpTeardown Op = "teardown"
	OpTransfer Op = "transfer"
	OpReturn   Op = "return"
)

// Kind classifies an error for the caller's decisions.
type Kind int

const (
	KindOther      Kind = iota
	KindConfig          // bad configuration or input: fix and re-run
	KindTransport       // connection failed or was lost, host unreachable or dead
	KindAuth            // authentication refused
	KindHostKey         // host key unknown or changed: never retried
	KindRemoteExit      // the remote command ran and exited non-zero or by signal
	KindTimeout         // a deadline passed
	KindCanceled        // the caller's context was cancelled
	KindLocal           // the master's own resources failed (its disk, its records)
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
	case KindLocal:
		return "local"
	}
	return "error"
}

// Error is an error of one operation, on one host or job where it
// concerns one.
type Error struct {
	Op   Op
	Host string // display name of the host, if any
	Job  int    // job number, if any (jobs count from 1)
	Path string // the file or directory concerned, if any
	Kind Kind
	Err  error
	Hint string // advice for the user, if any ("add it with ssh-keyscan ...")
	// PGID is, for a command whose connection was lost (KindTransport),
	// its remote process group if it was known (else 0). Closing a
	// connection does not kill remote processes, so they may still run.
	PGID int
}

// E is the error of op on host, of kind, wrapping err: the one
// constructor for the common case (the fields it does not take, Path,
// Job, Hint and PGID, are set on what it returns).
func E(op Op, host string, kind Kind, err error) *Error {
	return &Error{Op: op, Host: host, Kind: kind, Err: err}
}

// Error reads "op path on host, job N: err".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Op))
	if e.Path != "" {
		b.WriteString(" " + e.Path)
	}
	if e.Host != "" {
		b.WriteString(" on " + e.Host)
	}
	if e.Job != 0 {
		fmt.Fprintf(&b, ", job %d", e.Job)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString("\n  hint: " + e.Hint)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of the first *Error in err's chain, KindCanceled
// or KindTimeout for bare context errors, else KindOther.
func KindOf(err error) Kind {
	var e *Error
	var k Kinded
	switch {
	case err == nil:
		return KindOther
	case errors.As(err, &e):
		return e.Kind
	case errors.As(err, &k):
		return k.ErrKind()
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return KindTimeout
	}
	return KindOther
}

// Kinded is an error of a package with errors of its own form (the hosts
// file's "file:line: msg"), which tells its Kind in this vocabulary:
// KindOf, and so exitCode, need no other check.
type Kinded interface {
	error
	ErrKind() Kind
}

// OpOf is the operation of err's first *Error, or "".
func OpOf(err error) Op {
	var e *Error
	if errors.As(err, &e) {
		return e.Op
	}
	return ""
}
