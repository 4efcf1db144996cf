package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dsub-dev/dsub/errs"
)

// LocalHost is the master's own machine as a host, as GNU parallel's -S :
// and Parallel Python's local workers: commands run as local processes
// through /bin/sh, with no SSH, and files are the local filesystem's. It
// keeps Host's contract as SSHHost does, with the same command lines and
// kill scripts: each command's shell is a session leader (setsid, as
// sshd makes it), so its process group is its own, and a cancelled
// command's group is killed (TERM, then KILL after two seconds).
// Relative paths are relative to the home directory, as over SFTP.
type LocalHost struct {
	name string
}

// NewLocalHost returns the local machine as a host named name.
func NewLocalHost(name string) *LocalHost { return &LocalHost{name: name} }

var _ Host = (*LocalHost)(nil)

func (h *LocalHost) Name() string                      { return h.name }
func (h *LocalHost) Connect(ctx context.Context) error { return nil }
func (h *LocalHost) Connected() bool                   { return true }
func (h *LocalHost) Close() error                      { return nil }

func (h *LocalHost) Describe(ctx context.Context, mkdirs ...string) (Info, error) {
	return DescribeShell(ctx, h, mkdirs...)
}

// Run runs c as a local process. See Host.
func (h *LocalHost) Run(ctx context.Context, c *Cmd) error {
	cc := *c
	cc.NoProcessGroup = true // the group is the shell's own: its pid
	line, err := CommandLine(&cc)
	if err != nil {
		return errs.E(errs.OpExec, h.name, errs.KindConfig, err)
	}
	if c.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.Timeout)
		defer cancel()
	}
	if ctx.Err() != nil {
		return h.ctxErr(ctx, errs.OpExec, "before start")
	}
	cmd := exec.Command("/bin/sh", "-c", line)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.Stdin, c.Stdout, c.Stderr
	if cmd.Stdout == nil {
		cmd.Stdout = io.Discard
	}
	if cmd.Stderr == nil {
		cmd.Stderr = io.Discard
	}
	// A child that outlives the shell and holds its output open must not
	// keep Run waiting for ever once the group is gone.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return errs.E(errs.OpExec, h.name, errs.KindTransport, err)
	}
	if c.OnStart != nil {
		c.OnStart()
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return h.exitErr(err)
	case <-ctx.Done():
	}
	killLocalGroup(cmd.Process.Pid, done)
	return h.ctxErr(ctx, errs.OpExec, "command interrupted")
}

// killLocalGroup sends TERM to process group pgid, then KILL after up to
// two seconds unless done reports the leader's exit first.
func killLocalGroup(pgid int, done <-chan error) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // children that outlived the leader
}

func (h *LocalHost) exitErr(err error) error {
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		x := &ExitError{Status: ee.ExitCode()}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			x.Status, x.Signal = -1, strings.TrimPrefix(unix.SignalName(ws.Signal()), "SIG")
		}
		return errs.E(errs.OpExec, h.name, errs.KindRemoteExit, x)
	}
	return errs.E(errs.OpExec, h.name, errs.KindOther, err)
}

func (h *LocalHost) ctxErr(ctx context.Context, op errs.Op, what string) error {
	return ctxError(ctx, op, h.name, what)
}

// KillOrphan and KillMarked run SSHHost's scripts, locally.
func (h *LocalHost) KillOrphan(ctx context.Context, pgid int, m Marker) (bool, error) {
	return killOrphan(ctx, h, pgid, m)
}

func (h *LocalHost) KillMarked(ctx context.Context, m Marker) (int, error) {
	return killMarked(ctx, h, m)
}

// path makes p local: "~/x" and relative paths are under the home
// directory, as over SFTP.
func (h *LocalHost) path(p string) (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", errs.E(errs.OpSFTP, h.name, errs.KindConfig, err).WithPath(p)
	}
	sp := sftpPath(p)
	if filepath.IsAbs(sp) {
		return sp, nil
	}
	return filepath.Join(home, sp), nil
}

func (h *LocalHost) fsErr(op errs.Op, p string, err error) error {
	if err == nil {
		return nil
	}
	return errs.E(op, h.name, errs.KindOther, err).WithPath(p)
}

// do runs f on p made local, wrapping its error.
func (h *LocalHost) do(op errs.Op, p string, f func(lp string) error) error {
	lp, err := h.path(p)
	if err != nil {
		return err
	}
	return h.fsErr(op, p, f(lp))
}

func (h *LocalHost) Upload(ctx context.Context, p string, src io.Reader, perm fs.FileMode) (int64, error) {
	return h.UploadVia(ctx, p, TempName(p), src, perm)
}

// UploadVia writes src to tmp (created 0600), gives it perm and renames
// it to p; on failure tmp is removed.
func (h *LocalHost) UploadVia(ctx context.Context, p, tmp string, src io.Reader, perm fs.FileMode) (int64, error) {
	var n int64
	err := h.do(errs.OpUpload, p, func(lp string) error {
		lt, err := h.path(tmp)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(lp), 0o700); err != nil {
			return err
		}
		f, err := os.OpenFile(lt, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		n, err = io.Copy(f, ctxReader{ctx, src})
		if err == nil {
			err = f.Chmod(perm)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(lt, lp)
		}
		if err != nil {
			os.Remove(lt)
		}
		return err
	})
	return n, err
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func (h *LocalHost) Download(ctx context.Context, p string, dst io.Writer) (int64, error) {
	var n int64
	err := h.do(errs.OpDownload, p, func(lp string) error {
		f, err := os.Open(lp)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err = io.Copy(dst, ctxReader{ctx, f})
		return err
	})
	return n, err
}

func (h *LocalHost) Home(ctx context.Context) (string, error) {
	home, err := os.UserHomeDir()
	return home, h.fsErr(errs.OpHome, "~", err)
}

func (h *LocalHost) MkdirAll(ctx context.Context, p string) error {
	return h.do(errs.OpMkdir, p, func(lp string) error { return os.MkdirAll(lp, 0o755) })
}

func (h *LocalHost) Stat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = h.do(errs.OpStat, p, func(lp string) (err error) { fi, err = os.Stat(lp); return })
	return fi, err
}

func (h *LocalHost) Lstat(ctx context.Context, p string) (fi fs.FileInfo, err error) {
	err = h.do(errs.OpLstat, p, func(lp string) (err error) { fi, err = os.Lstat(lp); return })
	return fi, err
}

func (h *LocalHost) ReadLink(ctx context.Context, p string) (t string, err error) {
	err = h.do(errs.OpReadlink, p, func(lp string) (err error) { t, err = os.Readlink(lp); return })
	return t, err
}

func (h *LocalHost) ReadDir(ctx context.Context, p string) (fis []fs.FileInfo, err error) {
	err = h.do(errs.OpReadDir, p, func(lp string) error {
		es, err := os.ReadDir(lp)
		for _, e := range es {
			if fi, ierr := e.Info(); ierr == nil {
				fis = append(fis, fi)
			}
		}
		return err
	})
	return fis, err
}

// Glob returns the matches of pattern, with "~/" and relative patterns
// under the home directory and the matches spelled as the pattern was.
func (h *LocalHost) Glob(ctx context.Context, pattern string) (m []string, err error) {
	err = h.do(errs.OpGlob, pattern, func(lp string) error {
		ms, err := filepath.Glob(lp)
		if err != nil {
			return err
		}
		prefix := strings.TrimSuffix(lp, sftpPath(pattern))
		for _, x := range ms {
			if strings.HasPrefix(pattern, "/") {
				m = append(m, x)
			} else {
				m = append(m, strings.TrimPrefix(x, prefix))
			}
		}
		sort.Strings(m)
		return nil
	})
	return m, err
}

func (h *LocalHost) Chmod(ctx context.Context, p string, perm fs.FileMode) error {
	return h.do(errs.OpChmod, p, func(lp string) error { return os.Chmod(lp, perm) })
}

func (h *LocalHost) Symlink(ctx context.Context, target, link string) error {
	return h.do(errs.OpSymlink, link, func(lp string) error { return os.Symlink(target, lp) })
}

func (h *LocalHost) Remove(ctx context.Context, p string) error {
	return h.do(errs.OpRemove, p, os.Remove)
}

// RemoveAll refuses the home and root directories, as SSHHost's does.
func (h *LocalHost) RemoveAll(ctx context.Context, p string) error {
	if q := strings.TrimSuffix(sftpPath(p), "/"); q == "" || q == "." || q == "/" || q == "~" {
		return errs.E(errs.OpRemoveAll, h.name, errs.KindConfig, fmt.Errorf("refusing to remove %q: the home or root directory", p))
	}
	return h.do(errs.OpRemoveAll, p, os.RemoveAll)
}

func (h *LocalHost) Rename(ctx context.Context, from, to string) error {
	return h.do(errs.OpRename, from, func(lf string) error {
		lt, err := h.path(to)
		if err != nil {
			return err
		}
		return os.Rename(lf, lt)
	})
}

func (h *LocalHost) ReadFile(ctx context.Context, p string) (b []byte, err error) {
	err = h.do(errs.OpDownload, p, func(lp string) (err error) { b, err = os.ReadFile(lp); return })
	return b, err
}

func (h *LocalHost) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	_, err := h.Upload(ctx, p, strings.NewReader(string(data)), perm)
	return err
}
