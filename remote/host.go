package remote

import (
	"context"
	"io"
	"io/fs"
	"time"
)

// Host is one machine that runs commands for dsub. It is the seam between
// "what runs where", which the distributor decides, and "how a command
// reaches a machine", which each implementation owns:
//
//   - SSHHost: one SSH session per command over persistent connections;
//   - fakehost.Host: in memory, with scriptable jobs and faults, for tests
//     of engine logic without sshd;
//   - LocalHost: the master's own machine (--local), as local processes;
//   - agent.Host (package agent): jobs through one dsub agent per host,
//     over one session, everything else over its SSHHost.
//
// The contract every implementation keeps:
//
//   - Methods are safe for concurrent use, take the context first, and
//     return *errs.Error values that name the operation and the host, with a
//     errs.Kind the caller decides by: errs.KindTransport means the host (not the
//     command) failed, so the work may go elsewhere for free; errs.KindRemoteExit
//     is the command's own failure.
//   - Run starts the command as the leader of a new process group. When
//     ctx is cancelled, Run kills the whole group before it returns. When
//     the host is lost instead, the group may live on: the *errs.Error carries
//     its PGID, for KillOrphan once the host answers again.
//   - A Marker (working directory, or an exact environment entry) is how
//     processes are told apart: KillOrphan and KillMarked never touch a
//     process that does not carry it.
//   - A host that fails is not closed: Connect tries again (re-checking the
//     host key); Close releases everything for good.
type Host interface {
	Runner
	// Connect makes sure the host can be reached now: an open connection,
	// or a fresh one.
	Connect(ctx context.Context) error
	// Connected reports whether a connection is open, without dialing.
	Connected() bool
	// Describe learns the host's platform, CPUs and home directory, first
	// creating the directories mkdirs (private, mkdir -p), in one round
	// trip.
	Describe(ctx context.Context, mkdirs ...string) (Info, error)
	// KillOrphan kills process group pgid if it still carries m, and
	// reports whether it did.
	KillOrphan(ctx context.Context, pgid int, m Marker) (found bool, err error)
	// KillMarked kills every process group that carries m and returns
	// how many it killed.
	KillMarked(ctx context.Context, m Marker) (int, error)
	// Upload writes src to path atomically (a temporary name, then a
	// rename) with mode perm, and returns the bytes written.
	Upload(ctx context.Context, path string, src io.Reader, perm fs.FileMode) (int64, error)
	// UploadVia is Upload through the given temporary name (see TempName).
	UploadVia(ctx context.Context, path, tmp string, src io.Reader, perm fs.FileMode) (int64, error)
	// Download copies the file at path into dst and returns the bytes read.
	Download(ctx context.Context, path string, dst io.Writer) (int64, error)
	FileOps
	// Close releases the host's connections.
	Close() error
}

// Runner is what runs commands on a host, and all that a way of running
// jobs there needs to offer: a launcher implements these two methods, not
// the file operations.
type Runner interface {
	// Name is the host's display name.
	Name() string
	// Run runs c to completion. A command that ran and exited non-zero
	// returns an *errs.Error of errs.KindRemoteExit wrapping an *ExitError.
	// Cancelling ctx kills the remote process group.
	Run(ctx context.Context, c *Cmd) error
}

// FileOps are the small file operations an admin needs on a host. Paths
// are remote paths; a leading "~/" is the login user's home directory.
type FileOps interface {
	// Home returns the login user's home directory, absolute.
	Home(ctx context.Context) (string, error)
	MkdirAll(ctx context.Context, path string) error
	Stat(ctx context.Context, path string) (fs.FileInfo, error)
	// Lstat is Stat that does not follow a final symlink.
	Lstat(ctx context.Context, path string) (fs.FileInfo, error)
	// ReadDir lists a directory; entries are not followed (a symlink is
	// reported as one).
	ReadDir(ctx context.Context, path string) ([]fs.FileInfo, error)
	ReadLink(ctx context.Context, path string) (string, error)
	// Glob returns the paths matching pattern (path.Match syntax in each
	// element), sorted.
	Glob(ctx context.Context, pattern string) ([]string, error)
	Chmod(ctx context.Context, path string, perm fs.FileMode) error
	Symlink(ctx context.Context, target, link string) error
	Remove(ctx context.Context, path string) error
	RemoveAll(ctx context.Context, path string) error
	Rename(ctx context.Context, from, to string) error
	ReadFile(ctx context.Context, path string) ([]byte, error)
	WriteFile(ctx context.Context, path string, data []byte, perm fs.FileMode) error
}

// Cmd describes a remote command. Exactly one of Argv and Shell is set.
type Cmd struct {
	// Argv reaches the remote program byte for byte: each argument is
	// quoted for the remote shell.
	Argv []string
	// Shell is a command line interpreted by the remote login shell
	// (pipes, globs, variables).
	Shell string
	// Env is exported before the command runs. Stock sshd refuses the
	// setenv request, so it travels in the command line.
	Env map[string]string
	// Dir is the working directory; "~/" is the home directory.
	Dir string

	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// NoProcessGroup skips the process-group report, for commands that
	// are themselves the kill path.
	NoProcessGroup bool

	// Timeout, if positive, bounds how long the command runs once it has
	// started (one held back in a host's window is not running yet): then
	// its process group is killed and Run returns an errs.KindTimeout error.
	Timeout time.Duration

	// OnStart, if set, is called when the command has started, by an
	// implementation that may hold it back first (an agent whose slots are
	// full queues it). Others start commands at once and need not call it.
	OnStart func()

	// OnQueued, if set, is called once the host holds the command, by an
	// implementation that queues (when an agent's start frame is written,
	// so that it reaches the agent before any sent later). Others need
	// not call it.
	OnQueued func()

	// Usage, if set, receives the command's resource usage when the
	// implementation can measure it (an agent can, from wait4; an SSH
	// session cannot, and leaves it zero).
	Usage *Usage
}

// Usage is a finished command's resource usage.
type Usage struct {
	User, Sys float64 // CPU seconds
	MaxRSS    int64   // KiB
	// Wall is how long the command ran, measured where it ran (0:
	// unknown). A master that learns of a start late, from a frame,
	// records this instead of its own clock's difference.
	Wall time.Duration
}
