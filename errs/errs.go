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

// File operations on a host (package remote's FileOps).
const (
	OpUpload   Op = "upload"
	OpDownload Op = "download"
	OpMkdir    Op = "mkdir"
	OpStat     Op = "stat"
	OpLstat    Op = "lstat"
	OpReadlink Op = "readlink"
	OpGlob     Op = "glob"
	OpReadDir  Op = "readdir"
	OpChmod    Op = "chmod"
	OpSymlink  Op = "symlink"
	OpRemove   Op = "remove"
	OpRename   Op = "rename"
	OpHome     Op = "home"
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
	OpCancel   Op = "cancel"
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
	// Path is the file or directory concerned, if any. For a file the
	// user wrote it may end in ":line" (a hosts file's "hosts.toml:12"),
	// and with no Op the error reads as compilers write theirs:
	// "hosts.toml:12: msg".
	Path string
	Kind Kind
	Err  error
	Hint string // advice for the user, if any ("add it with ssh-keyscan ...")
	// PGID is, for a command whose connection was lost (KindTransport),
	// its remote process group if it was known (else 0). Closing a
	// connection does not kill remote processes, so they may still run.
	PGID int
}

// E is the error of op on host, of kind, wrapping err: the one
// constructor. The fields it does not take are set by the With methods
// on what it returns: errs.E(OpShip, host, KindConfig, err).WithPath(p).
func E(op Op, host string, kind Kind, err error) *Error {
	return &Error{Op: op, Host: host, Kind: kind, Err: err}
}

// Config is a problem in what the user wrote, at path (which may end in
// ":line"): an error with no Op and no host, of KindConfig, that reads
// "path: msg".
func Config(path, msg string) *Error {
	return &Error{Path: path, Kind: KindConfig, Err: errors.New(msg)}
}

// WithPath sets the file or directory concerned, and returns e.
func (e *Error) WithPath(p string) *Error { e.Path = p; return e }

// WithJob sets the job concerned, and returns e.
func (e *Error) WithJob(job int) *Error { e.Job = job; return e }

// WithHint sets the advice for the user, and returns e.
func (e *Error) WithHint(h string) *Error { e.Hint = h; return e }

// WithPGID sets the remote process group a lost command left, and
// returns e.
func (e *Error) WithPGID(pgid int) *Error { e.PGID = pgid; return e }

// Error reads "op path on host, job N: err".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(string(e.Op))
	if e.Path != "" {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString(e.Path)
	}
	if e.Host != "" {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString("on " + e.Host)
	}
	if e.Job != 0 {
		fmt.Fprintf(&b, ", job %d", e.Job)
	}
	if e.Err != nil {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(e.Err.Error())
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

// OpOf is the operation of err's first *Error, or "".
func OpOf(err error) Op {
	var e *Error
	if errors.As(err, &e) {
		return e.Op
	}
	return ""
}

// List is every problem found in one input (all of a hosts file's bad
// lines, so that the user fixes them in one pass). Its Kind is its first
// error's.
type List []*Error

// Error is one problem per line.
func (l List) Error() string {
	var b strings.Builder
	for i, e := range l {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap gives errors.Is and errors.As, and so KindOf, every problem.
func (l List) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}
