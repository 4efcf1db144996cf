package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pkg/sftp"

	"github.com/dsub-dev/dsub/errs"
)

// sftpPath maps "~/x" to "x": sftp-server starts in the home directory, so
// relative paths are home-relative.
func sftpPath(p string) string {
	switch {
	case p == "~":
		return "."
	case strings.HasPrefix(p, "~/"):
		return p[2:]
	}
	return p
}

// sftpClient returns the host's SFTP client, started on first use on one
// of its connections, where it holds one session slot for as long as it
// lives.
func (h *SSHHost) sftpClient(ctx context.Context) (*sftp.Client, error) {
	h.sftpMu.Lock()
	defer h.sftpMu.Unlock()
	if h.sftp != nil {
		select {
		case <-h.sftpConn.done:
			h.sftp.Close()
			h.sftp = nil
		default:
			return h.sftp, nil
		}
	}
	for attempt := 0; ; attempt++ {
		c, err := h.acquire(ctx)
		if err != nil {
			return nil, err
		}
		cl, err := newSFTPClient(c.client)
		if err != nil {
			var oce *ssh.OpenChannelError
			if errors.As(err, &oce) && attempt < 20 {
				h.backOff(c) // refused: MaxSessions back-pressure
				select {
				case <-time.After(time.Duration(10*(attempt+1)) * time.Millisecond):
					continue
				case <-ctx.Done():
					return nil, h.ctxErr(ctx, errs.OpSFTP, "server refused the sftp channel")
				}
			}
			h.release(c)
			return nil, errs.E(errs.OpSFTP, h.cfg.Name, errs.KindTransport, err)
		}
		h.sftp, h.sftpConn = cl, c
		go func() {
			_ = cl.Wait() // returns when the client or its connection closes
			h.release(c)
		}()
		return cl, nil
	}
}

// bigPacket is the data an SFTP read or write carries when the server
// says it takes that much: OpenSSH's sftp-server reports 261120 bytes in
// its limits@openssh.com extension (since 8.6). Eight times the protocol's
// floor of 32 KiB: fewer packets per file, less work at both ends.
const bigPacket = 261120

// newSFTPClient starts an SFTP client on cl, with big packets when the
// server announces the limits that allow them, else the protocol's
// default (asking costs one more channel, only on such servers).
func newSFTPClient(cl *ssh.Client) (*sftp.Client, error) {
	opts := []sftp.ClientOption{sftp.UseConcurrentWrites(true), sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(64)}
	c, err := sftp.NewClient(cl, append(opts, sftp.MaxPacketUnchecked(bigPacket))...)
	if err != nil {
		return nil, err
	}
	if _, ok := c.HasExtension("limits@openssh.com"); ok {
		return c, nil
	}
	c.Close()
	return sftp.NewClient(cl, opts...)
}

// fsErr wraps a file operation's error, classifying a lost connection as a
// transport error.
func (h *SSHHost) fsErr(op errs.Op, p string, err error) error {
	if err == nil {
		return nil
	}
	kind := errs.KindOther
	if errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		kind = errs.KindTransport
		h.sftpMu.Lock()
		if h.sftp != nil {
			h.sftp.Close()
			h.sftp = nil
		}
		h.sftpMu.Unlock()
	}
	return errs.E(op, h.cfg.Name, kind, err).WithPath(p)
}

// withSFTP runs f with the SFTP client; cancelling ctx aborts f by closing
// the client (the next call opens a new one).
func (h *SSHHost) withSFTP(ctx context.Context, op errs.Op, p string, f func(*sftp.Client) error) error {
	cl, err := h.sftpClient(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() {
		h.sftpMu.Lock()
		if h.sftp == cl {
			h.sftp.Close()
			h.sftp = nil
		}
		h.sftpMu.Unlock()
	})
	err = f(cl)
	if !stop() {
		e := h.ctxErr(ctx, op, "interrupted").(*errs.Error)
		e.Path = p
		return e
	}
	return h.fsErr(op, p, err)
}

// TempName is the temporary name an upload to p writes first: a hidden
// sibling, ".NAME.dsub-tmp-RANDOM", that dsub clean recognises.
func TempName(p string) string {
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	return path.Join(path.Dir(p), "."+path.Base(p)+TempMarker+hex.EncodeToString(rnd[:]))
}

// TempMarker is in the name of every temporary upload file.
const TempMarker = ".dsub-tmp-"

// Upload writes src to p with mode perm, through TempName(p). See
// UploadVia.
func (h *SSHHost) Upload(ctx context.Context, p string, src io.Reader, perm fs.FileMode) (int64, error) {
	return h.UploadVia(ctx, p, TempName(p), src, perm)
}

// UploadVia writes src to p with mode perm: to the temporary name tmp
// (in p's directory) with concurrent writes, then renamed into place
// (posix-rename, so a reader never sees a partial file and an existing
// file is replaced atomically). The temporary file is created 0600 and
// gets perm only when complete, so a private file is never readable by
// others on the way. On any failure, cancellation included, tmp is
// removed (through a fresh, bounded session if ctx is done).
func (h *SSHHost) UploadVia(ctx context.Context, p, tmp string, src io.Reader, perm fs.FileMode) (int64, error) {
	p, tmp = sftpPath(p), sftpPath(tmp)
	var n int64
	created := false
	err := h.withSFTP(ctx, errs.OpUpload, p, func(cl *sftp.Client) error {
		dir := path.Dir(p)
		if err := cl.MkdirAll(dir); err != nil {
			return fmt.Errorf("mkdir %s: %w", dir, err)
		}
		f, err := cl.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL)
		if err != nil {
			return err
		}
		created = true
		if err = f.Chmod(0o600); err == nil {
			n, err = f.ReadFromWithConcurrency(src, 0)
		}
		if err == nil {
			err = f.Chmod(perm)
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			if err = cl.PosixRename(tmp, p); err != nil && strings.Contains(err.Error(), "unsupported") {
				_ = cl.Remove(p)
				err = cl.Rename(tmp, p)
			}
		}
		if err == nil {
			created = false
		}
		return err
	})
	if err != nil && created {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_ = h.withSFTP(rctx, "remove", tmp, func(cl *sftp.Client) error { return cl.Remove(tmp) })
		cancel()
	}
	return n, err
}

// Download copies the remote file p into dst.
func (h *SSHHost) Download(ctx context.Context, p string, dst io.Writer) (int64, error) {
	p = sftpPath(p)
	var n int64
	err := h.withSFTP(ctx, errs.OpDownload, p, func(cl *sftp.Client) error {
		f, err := cl.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		n, err = f.WriteTo(dst)
		return err
	})
	return n, err
}

func (h *SSHHost) MkdirAll(ctx context.Context, p string) error {
	p = sftpPath(p)
	return h.withSFTP(ctx, errs.OpMkdir, p, func(cl *sftp.Client) error { return cl.MkdirAll(p) })
}

func (h *SSHHost) Stat(ctx context.Context, p string) (fs.FileInfo, error) {
	p = sftpPath(p)
	var fi fs.FileInfo
	err := h.withSFTP(ctx, errs.OpStat, p, func(cl *sftp.Client) (err error) { fi, err = cl.Stat(p); return })
	return fi, err
}

func (h *SSHHost) Lstat(ctx context.Context, p string) (fs.FileInfo, error) {
	p = sftpPath(p)
	var fi fs.FileInfo
	err := h.withSFTP(ctx, errs.OpLstat, p, func(cl *sftp.Client) (err error) { fi, err = cl.Lstat(p); return })
	return fi, err
}

func (h *SSHHost) ReadLink(ctx context.Context, p string) (string, error) {
	p = sftpPath(p)
	var t string
	err := h.withSFTP(ctx, errs.OpReadlink, p, func(cl *sftp.Client) (err error) { t, err = cl.ReadLink(p); return })
	return t, err
}

func (h *SSHHost) Glob(ctx context.Context, pattern string) ([]string, error) {
	pattern = sftpPath(pattern)
	var m []string
	err := h.withSFTP(ctx, errs.OpGlob, pattern, func(cl *sftp.Client) (err error) { m, err = cl.Glob(pattern); return })
	return m, err
}

func (h *SSHHost) ReadDir(ctx context.Context, p string) ([]fs.FileInfo, error) {
	p = sftpPath(p)
	var fis []fs.FileInfo
	err := h.withSFTP(ctx, errs.OpReadDir, p, func(cl *sftp.Client) (err error) { fis, err = cl.ReadDir(p); return })
	return fis, err
}

func (h *SSHHost) Chmod(ctx context.Context, p string, perm fs.FileMode) error {
	p = sftpPath(p)
	return h.withSFTP(ctx, errs.OpChmod, p, func(cl *sftp.Client) error { return cl.Chmod(p, perm) })
}

func (h *SSHHost) Symlink(ctx context.Context, target, link string) error {
	link = sftpPath(link)
	return h.withSFTP(ctx, errs.OpSymlink, link, func(cl *sftp.Client) error { return cl.Symlink(target, link) })
}

func (h *SSHHost) Remove(ctx context.Context, p string) error {
	p = sftpPath(p)
	return h.withSFTP(ctx, errs.OpRemove, p, func(cl *sftp.Client) error { return cl.Remove(p) })
}

// RemoveAll removes p and everything under it (rm -rf, in one session:
// much faster than walking a big tree over SFTP). A missing p is not an
// error. The home and root directories are refused.
func (h *SSHHost) RemoveAll(ctx context.Context, p string) error {
	if q := strings.TrimSuffix(sftpPath(p), "/"); q == "" || q == "." || q == "/" || q == "~" {
		return errs.E(errs.OpRemoveAll, h.cfg.Name, errs.KindConfig, fmt.Errorf("refusing to remove %q: the home or root directory", p))
	}
	errb := NewCappedBuffer(4 << 10)
	if err := h.Run(ctx, &Cmd{Shell: "rm -rf -- " + QuotePath(p), NoProcessGroup: true, Stderr: errb}); err != nil {
		var e *errs.Error
		if errors.As(err, &e) && e.Kind == errs.KindRemoteExit {
			return errs.E(errs.OpRemoveAll, h.cfg.Name, errs.KindRemoteExit, fmt.Errorf("%s: %s", p, strings.TrimSpace(errb.String())))
		}
		return err
	}
	return nil
}

func (h *SSHHost) Rename(ctx context.Context, from, to string) error {
	from, to = sftpPath(from), sftpPath(to)
	return h.withSFTP(ctx, errs.OpRename, from, func(cl *sftp.Client) error { return cl.PosixRename(from, to) })
}

func (h *SSHHost) ReadFile(ctx context.Context, p string) ([]byte, error) {
	var b strings.Builder
	if _, err := h.Download(ctx, p, &b); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

func (h *SSHHost) WriteFile(ctx context.Context, p string, data []byte, perm fs.FileMode) error {
	_, err := h.Upload(ctx, p, strings.NewReader(string(data)), perm)
	return err
}

// Home returns the login user's home directory (sftp-server's starting
// directory), absolute.
func (h *SSHHost) Home(ctx context.Context) (string, error) {
	var home string
	err := h.withSFTP(ctx, errs.OpHome, "~", func(cl *sftp.Client) (err error) { home, err = cl.Getwd(); return })
	return home, err
}
