package distributor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// PingResult is one host's answer to Ping.
type PingResult struct {
	Host      string
	Reachable bool // TCP and SSH handshake succeeded (host key included)
	AuthOK    bool
	Info      remote.Info
	Slots     int // configured slots, else the CPU count
	Err       error
}

// Ping connects to every host, authenticates, and probes OS, architecture
// and CPU count. Each host gets at most timeout (if positive) for all of
// it: a host that authenticates and then never finishes a command is
// reported as timed out, and Ping returns.
func (c *Cluster) Ping(ctx context.Context, timeout time.Duration) []PingResult {
	res := make([]PingResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		r := PingResult{Host: m.Name(), Slots: m.Inv.Slots}
		err := m.Host.Connect(ctx)
		if err == nil {
			r.Reachable, r.AuthOK = true, true
			r.Info, err = remote.Probe(ctx, m.Host)
			if err != nil && ctx.Err() == context.DeadlineExceeded {
				err = errs.E(errs.OpPing, m.Name(), errs.KindTimeout, fmt.Errorf("timed out after %s: the host logged us in but did not finish a command", timeout))
			}
		} else {
			switch errs.KindOf(err) {
			case errs.KindAuth:
				r.Reachable = true
			case errs.KindHostKey:
				r.Reachable = true // reached, but refused before auth
			}
		}
		if r.Slots == 0 {
			r.Slots = r.Info.CPUs
		}
		r.Err = err
		res[i] = r
	})
	return res
}

// ExecResult is one host's outcome of Exec.
type ExecResult struct {
	Host     string
	Exit     int // remote exit status; -1 if it did not complete
	Duration time.Duration
	Err      error // nil when the command ran and exited 0
}

// Outputs gives Exec one host's stdin (nil: none) and the writers for
// its stdout and stderr.
type Outputs func(host string) (stdin io.Reader, stdout, stderr io.Writer)

// Exec runs cmd on every host at once. timeout, if positive, bounds each
// host's connect and run; a host that exceeds it has its remote process
// group killed.
func (c *Cluster) Exec(ctx context.Context, cmd remote.Cmd, timeout time.Duration, out Outputs) []ExecResult {
	res := make([]ExecResult, len(c.members))
	c.each(ctx, func(parent context.Context, i int, m *Member) {
		ctx := parent
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(parent, timeout)
			defer cancel()
		}
		hc := cmd
		hc.Stdin, hc.Stdout, hc.Stderr = out(m.Name())
		start := time.Now()
		err := m.Host.Run(ctx, &hc)
		if err != nil && parent.Err() == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = execTimeout(m.Name(), timeout, err)
		}
		res[i] = ExecResult{Host: m.Name(), Exit: remote.ExitStatus(err), Duration: time.Since(start), Err: err}
	})
	return res
}

// execTimeout is the error of a command that ran past Exec's timeout, in
// run's words, not Go's ("context deadline exceeded").
func execTimeout(host string, timeout time.Duration, err error) error {
	var e *errs.Error
	if errors.As(err, &e) && e.Op == errs.OpConnect {
		return errs.E(errs.OpConnect, host, errs.KindTimeout, fmt.Errorf("timed out after %s while connecting", timeout))
	}
	return errs.E(errs.OpExec, host, errs.KindTimeout, fmt.Errorf("timed out after %s; its remote processes were killed", timeout))
}

// CleanResult is what Clean did on one host.
type CleanResult struct {
	Host    string
	Kept    []string // entries left because a process or a live run uses them
	Foreign []string // entries left because dsub does not make such names
	Err     error
}

// WorkdirSentinel marks a workdir as dsub's: every run writes it there.
// Clean refuses a workdir without it, so that a workdir set to a
// directory of the user's ("~", "/usr/local") is never emptied.
const WorkdirSentinel = ".dsub-workdir"

// Clean removes dsub's files from every host: the binary cache
// (<workdir>/bin), the cache of transferred inputs (<workdir>/files, kept
// whole while any run is live) and, with runs, leftover run directories
// (<workdir>/runs, kept by --keep-remote or by an interrupted cleanup),
// and the temporary files of uploads cut off with their connection. It
// works only in a workdir marked with WorkdirSentinel, and removes only
// names dsub makes: 64-hex cache files and their temporary upload names
// in bin, run-id directories in runs. Anything else is reported and left.
// What a run in progress (from this or another master) uses is kept, so
// that it goes on: its run directory and program, known from the file its
// master rewrites there every minute, even between two jobs, and anything
// a live process of the login user uses (its working directory, its
// program; read from /proc on Linux). A run whose master died is cleaned
// three minutes after its last beat, once its processes are gone. Each
// host's clean is bounded by ctx.
func (c *Cluster) Clean(ctx context.Context, runs bool) []CleanResult {
	res := make([]CleanResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		out, errb := remote.NewCappedBuffer(1<<20), remote.NewCappedBuffer(16<<10)
		err := m.Host.Run(ctx, &remote.Cmd{Shell: cleanScript(m.Inv.Workdir, runs), Stdout: out, Stderr: errb})
		if err != nil && errb.String() != "" {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
		}
		r := CleanResult{Host: m.Name(), Err: err}
		for _, l := range strings.Split(out.String(), "\n") {
			if k, ok := strings.CutPrefix(l, "in use: "); ok {
				r.Kept = append(r.Kept, k)
			}
			if k, ok := strings.CutPrefix(l, "not dsub's: "); ok {
				r.Foreign = append(r.Foreign, k)
			}
		}
		res[i] = r
	})
	return res
}

// staleUploads removes what interrupted puts left: each marker in
// <workdir>/puts names a directory (and how deep below it to look) where
// temporary upload files may remain; those not written to for 10 minutes
// are removed, and the marker once none remains. Only files named as
// uploads name their temporary files are removed.
const staleUploads = `for m in "$wd/puts"/*; do [ -f "$m" ] || continue; ` +
	`{ read -r d; read -r depth; } <"$m"; [ -n "$d" ] || continue; case "$depth" in -1) md= ;; *) md="-maxdepth 1" ;; esac; ` +
	`find "$d" $md -type f -name '.*` + remote.TempMarker + `*' -mmin +10 -exec rm -f {} + 2>/dev/null; ` +
	`[ -n "$(find "$d" $md -type f -name '.*` + remote.TempMarker + `*' 2>/dev/null | head -1)" ] || rm -f "$m"; done; ` +
	`rmdir "$wd/puts" 2>/dev/null; `

// runIDGlob is the shell pattern of a run id (see runIDPattern).
const runIDGlob = `[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]-[0-9][0-9][0-9][0-9][0-9][0-9]-[0-9a-f][0-9a-f][0-9a-f][0-9a-f]`

// cleanScript removes dsub's entries of <workdir>/bin, files (and runs) one by
// one, keeping and reporting ("in use: PATH") those a process's cwd,
// executable or command line (a script's interpreter runs it) names, and
// those a live run names: a run directory whose liveFile is fresh
// (rewritten within liveFresh minutes) and the program that file names.
// Entries dsub does not make are reported ("not dsub's: PATH") and kept.
// Then it removes the directories themselves if empty. A workdir without
// the sentinel is refused (exit 3); a missing one has nothing to clean.
func cleanScript(workdir string, runs bool) string {
	dirs := "bin files"
	if runs {
		dirs += " runs"
	}
	return `st=0; wd=` + remote.QuotePath(workdir) + `; ` +
		`[ -e "$wd" ] || exit 0; ` +
		`[ -f "$wd/` + WorkdirSentinel + `" ] || { echo "refused: $wd has no ` + WorkdirSentinel + `, so dsub did not make it: dsub cleans only its own workdir" >&2; exit 3; }; ` +
		staleUploads +
		`busy=$(for p in /proc/[0-9]*; do readlink "$p/cwd"; readlink "$p/exe"; tr '\0' ' ' <"$p/cmdline"; echo; done 2>/dev/null); ` +
		`live=$(find "$wd/runs" -mindepth 2 -maxdepth 2 -name ` + liveFile + ` -mmin -` + strconv.Itoa(liveFresh) + ` 2>/dev/null | while read -r f; do echo "$f"; cat "$f"; done); ` +
		`busy="$busy $live"; ` +
		`for sub in ` + dirs + `; do ` +
		`for e in "$wd/$sub"/* "$wd/$sub"/.[!.]*; do [ -e "$e" ] || [ -L "$e" ] || continue; ` +
		`n=${e##*/}; ours=; ` +
		`case $sub in bin|files) case $n in .*` + remote.TempMarker + `*) n=${n#.}; n=${n%%` + remote.TempMarker + `*} ;; esac; ` +
		`[ ${#n} -eq 64 ] && case $n in *[!0-9a-f]*) ;; *) [ -f "$e" ] && ! [ -L "$e" ] && ours=1 ;; esac ;; ` +
		`runs) case $n in ` + runIDGlob + `) [ -d "$e" ] && ! [ -L "$e" ] && ours=1 ;; esac ;; esac; ` +
		`[ -n "$ours" ] || { echo "not dsub's: $e"; continue; }; ` +
		// Transferred inputs are linked from live runs' job directories.
		`[ $sub = files ] && [ -n "$live" ] && { echo "in use: $e"; continue; }; ` +
		`case "$busy" in *"$e"*) echo "in use: $e" ;; *) rm -rf -- "$e" || st=1 ;; esac; done; ` +
		`rmdir -- "$wd/$sub" 2>/dev/null; done; exit $st`
}
