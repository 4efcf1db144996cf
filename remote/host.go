package remote

import (
	"context"
	"io"
	"io/fs"
)

// Host is one remote machine. Implementations are safe for concurrent use;
// every method takes the context first and returns *Error values that name
// the operation and the host.
type Host interface {
	// Name is the host's display name.
	Name() string
	// Run runs c to completion. A command that ran and exited non-zero
	// returns an *Error of KindRemoteExit wrapping an *ExitError.
	// Cancelling ctx kills the remote process group.
	Run(ctx context.Context, c *Cmd) error
	// Upload writes src to path atomically (a temporary name, then a
	// rename) with mode perm, and returns the bytes written.
	Upload(ctx context.Context, path string, src io.Reader, perm fs.FileMode) (int64, error)
	// Download copies the file at path into dst and returns the bytes read.
	Download(ctx context.Context, path string, dst io.Writer) (int64, error)
	FileOps
	// Close releases the host's connections.
	Close() error
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
}
