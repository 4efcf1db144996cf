package distributor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
// and CPU count.
func (c *Cluster) Ping(ctx context.Context) []PingResult {
	res := make([]PingResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		r := PingResult{Host: m.Name(), Slots: m.Inv.Slots}
		err := m.Host.Connect(ctx)
		if err == nil {
			r.Reachable, r.AuthOK = true, true
			r.Info, err = remote.Probe(ctx, m.Host)
		} else {
			switch remote.KindOf(err) {
			case remote.KindAuth:
				r.Reachable = true
			case remote.KindHostKey:
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
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		hc := cmd
		hc.Stdin, hc.Stdout, hc.Stderr = out(m.Name())
		start := time.Now()
		err := m.Host.Run(ctx, &hc)
		res[i] = ExecResult{Host: m.Name(), Exit: remote.ExitStatus(err), Duration: time.Since(start), Err: err}
	})
	return res
}

// TransferResult is one host's outcome of Put or Get.
type TransferResult struct {
	Host     string
	Path     string // remote path written (Put) or local path written (Get)
	Bytes    int64
	Duration time.Duration
	Err      error
}

// Put uploads the local file to every host. If remotePath ends in "/" or
// names an existing directory, the file keeps its base name inside it.
// The upload is atomic on each host and keeps the local file's mode.
func (c *Cluster) Put(ctx context.Context, local, remotePath string) ([]TransferResult, error) {
	fi, err := os.Stat(local)
	if err != nil {
		return nil, fmt.Errorf("put: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("put: %s is not a regular file", local)
	}
	res := make([]TransferResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		start := time.Now()
		r := TransferResult{Host: m.Name(), Path: remotePath}
		defer func() { r.Duration = time.Since(start); res[i] = r }()
		if strings.HasSuffix(remotePath, "/") {
			r.Path = path.Join(remotePath, filepath.Base(local))
		} else if st, err := m.Host.Stat(ctx, remotePath); err == nil && st.IsDir() {
			r.Path = path.Join(remotePath, filepath.Base(local))
		} else if err != nil && Unreachable(err) {
			r.Err = err
			return
		}
		f, err := os.Open(local)
		if err != nil {
			r.Err = err
			return
		}
		defer f.Close()
		r.Bytes, r.Err = m.Host.Upload(ctx, r.Path, f, fi.Mode().Perm())
	})
	return res, nil
}

// Get downloads remotePath from every host into localDir/<host>/<base>.
// Neither the host name nor the remote path can place a file outside
// localDir.
func (c *Cluster) Get(ctx context.Context, remotePath, localDir string) ([]TransferResult, error) {
	base := path.Base(remotePath)
	if base == "." || base == ".." || base == "/" || base == "" || strings.ContainsRune(base, '\\') {
		return nil, fmt.Errorf("get: remote path %q does not name a file", remotePath)
	}
	absDir, err := filepath.Abs(localDir)
	if err != nil {
		return nil, err
	}
	res := make([]TransferResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		start := time.Now()
		r := TransferResult{Host: m.Name()}
		defer func() { r.Duration = time.Since(start); res[i] = r }()
		dir, err := containedJoin(absDir, safeName(m.Name()))
		if err == nil {
			r.Path, err = containedJoin(dir, base)
		}
		if err != nil {
			r.Err = err
			return
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			r.Err = err
			return
		}
		tmp, err := os.CreateTemp(dir, "."+base+".dsub-tmp-*")
		if err != nil {
			r.Err = err
			return
		}
		r.Bytes, err = m.Host.Download(ctx, remotePath, tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), r.Path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
		r.Err = err
	})
	return res, nil
}

// safeName makes a host name usable as one path element.
func safeName(n string) string {
	n = strings.NewReplacer("/", "_", "\\", "_", "\x00", "_").Replace(n)
	if n == "." || n == ".." || n == "" {
		n = "_" + n
	}
	return n
}

// containedJoin joins elem to dir and fails if the result leaves dir.
func containedJoin(dir, elem string) (string, error) {
	p := filepath.Join(dir, elem)
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
		return "", &fs.PathError{Op: "get", Path: elem, Err: errors.New("would escape the local directory")}
	}
	return p, nil
}

// CleanResult is what Clean did on one host.
type CleanResult struct {
	Host string
	Kept []string // entries left because a process was using them
	Err  error
}

// Clean removes dsub's files from every host: the binary cache
// (<workdir>/bin) and, with runs, leftover run directories
// (<workdir>/runs, kept by --keep-remote or by an interrupted cleanup).
// What a run in progress (from this or another master) uses is kept, so
// that it goes on: its run directory and program, known from the file its
// master rewrites there every minute, even between two jobs, and anything
// a live process of the login user uses (its working directory, its
// program; read from /proc on Linux). A run whose master died is cleaned
// three minutes after its last beat, once its processes are gone.
func (c *Cluster) Clean(ctx context.Context, runs bool) []CleanResult {
	res := make([]CleanResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		var out, errb strings.Builder
		err := m.Host.Run(ctx, &remote.Cmd{Shell: cleanScript(m.Inv.Workdir, runs), Stdout: &out, Stderr: &errb})
		if err != nil && errb.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
		}
		r := CleanResult{Host: m.Name(), Err: err}
		for _, l := range strings.Split(out.String(), "\n") {
			if k, ok := strings.CutPrefix(l, "in use: "); ok {
				r.Kept = append(r.Kept, k)
			}
		}
		res[i] = r
	})
	return res
}

// cleanScript removes <workdir>/bin/* (and runs/*) entry by entry, keeping
// and reporting ("in use: PATH") those a process's cwd, executable or
// command line (a script's interpreter runs it) names, and those a live
// run names: a run directory whose liveFile is fresh (rewritten within
// liveFresh minutes) and the program that file names. Then it removes the
// directories themselves if empty.
func cleanScript(workdir string, runs bool) string {
	dirs := "bin"
	if runs {
		dirs += " runs"
	}
	return `st=0; wd=` + remote.QuotePath(workdir) + `; ` +
		`busy=$(for p in /proc/[0-9]*; do readlink "$p/cwd"; readlink "$p/exe"; tr '\0' ' ' <"$p/cmdline"; echo; done 2>/dev/null); ` +
		`live=$(find "$wd/runs" -mindepth 2 -maxdepth 2 -name ` + liveFile + ` -mmin -` + strconv.Itoa(liveFresh) + ` 2>/dev/null | while read -r f; do echo "$f"; cat "$f"; done); ` +
		`busy="$busy $live"; ` +
		`for sub in ` + dirs + `; do ` +
		`for e in "$wd/$sub"/* "$wd/$sub"/.[!.]*; do [ -e "$e" ] || [ -L "$e" ] || continue; ` +
		`case "$busy" in *"$e"*) echo "in use: $e" ;; *) rm -rf -- "$e" || st=1 ;; esac; done; ` +
		`rmdir -- "$wd/$sub" 2>/dev/null; done; exit $st`
}
