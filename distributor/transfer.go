package distributor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/remote"
)

// TransferResult is one host's outcome of Put or Get.
type TransferResult struct {
	Host     string
	Path     string // remote path written (Put) or local path written (Get)
	Files    int    // regular files copied
	Bytes    int64
	Duration time.Duration
	Err      error
}

// TransferOptions adjust Put and Get.
type TransferOptions struct {
	// Recursive copies directories, keeping modes; symlinks are copied as
	// symlinks, never followed.
	Recursive bool
}

// entry is one item of a local tree to upload, relative to its root.
type entry struct {
	rel    string // slash-separated; "" is the root itself
	mode   fs.FileMode
	target string // symlink target
	local  string
}

// Put uploads the local file (or, with Recursive, directory) to every
// host. If remotePath ends in "/" or names an existing directory, the
// upload keeps its base name inside it. Each file is uploaded atomically
// and keeps its mode; an interrupted upload leaves no temporary file
// behind, and one whose connection died is found by `dsub clean` from the
// marker Put leaves in <workdir>/puts until it completes.
// ErrIsDir is why Put or Get refused a directory: it copies one only
// when asked to copy recursively.
var ErrIsDir = errors.New("is a directory")

func (c *Cluster) Put(ctx context.Context, local, remotePath string, opts TransferOptions) ([]TransferResult, error) {
	tree, err := localTree(local, opts.Recursive)
	if err != nil {
		return nil, err
	}
	res := make([]TransferResult, len(c.members))
	c.each(ctx, func(ctx context.Context, i int, m *Member) {
		start := time.Now()
		r := TransferResult{Host: m.Name(), Path: remotePath}
		r.Err = c.putHost(ctx, m, local, tree, &r)
		r.Duration = time.Since(start)
		res[i] = r
	})
	return res, nil
}

// localTree lists what Put uploads, without following symlinks below the
// root.
func localTree(local string, recursive bool) ([]entry, error) {
	fi, err := os.Stat(local)
	if err != nil {
		return nil, fmt.Errorf("put: %w", err)
	}
	switch {
	case fi.Mode().IsRegular():
		return []entry{{mode: fi.Mode(), local: local}}, nil
	case !fi.IsDir():
		return nil, fmt.Errorf("put: %s is not a regular file or directory", local)
	case !recursive:
		return nil, fmt.Errorf("put: %s %w", local, ErrIsDir)
	}
	var tree []entry
	err = filepath.WalkDir(local, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(local, p)
		e := entry{rel: filepath.ToSlash(rel), local: p}
		if e.rel == "." {
			e.rel = ""
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e.mode = info.Mode()
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		case !d.IsDir() && !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file, directory or symlink", p)
		}
		tree = append(tree, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("put: %w", err)
	}
	return tree, nil
}

func (c *Cluster) putHost(ctx context.Context, m *Member, local string, tree []entry, r *TransferResult) error {
	dest := r.Path
	if strings.HasSuffix(dest, "/") {
		dest = path.Join(dest, filepath.Base(local))
	} else if st, err := m.Host.Stat(ctx, dest); err == nil && st.IsDir() {
		dest = path.Join(dest, filepath.Base(local))
	} else if err != nil && Unreachable(err) {
		return err
	}
	r.Path = dest
	marker, depth := path.Join(m.Inv.Workdir, "puts", randomHex()), "1"
	if tree[0].mode.IsDir() {
		depth = "-1"
	}
	// The marker names where temporary files may be left if this put is
	// cut off (the connection lost); dsub clean reads it.
	// The clean script runs in the home directory: "~/" paths are relative.
	dir := path.Dir(dest)
	if dir == "~" {
		dir = "."
	}
	dir = strings.TrimPrefix(dir, "~/")
	if err := m.Host.WriteFile(ctx, marker, []byte(dir+"\n"+depth+"\n"), 0o600); err != nil {
		return err
	}
	if err := m.Host.WriteFile(ctx, path.Join(m.Inv.Workdir, WorkdirSentinel), nil, 0o600); err != nil {
		return err
	}
	var dirs []entry
	for _, e := range tree {
		p := dest
		if e.rel != "" {
			p = path.Join(dest, e.rel)
		}
		switch {
		case e.mode.IsDir():
			if err := m.Host.MkdirAll(ctx, p); err != nil {
				return err
			}
			dirs = append(dirs, entry{rel: p, mode: e.mode})
		case e.mode&fs.ModeSymlink != 0:
			_ = m.Host.Remove(ctx, p)
			if err := m.Host.Symlink(ctx, e.target, p); err != nil {
				return err
			}
		default:
			n, err := putFile(ctx, m.Host, e.local, p, e.mode.Perm())
			r.Bytes += n
			if err != nil {
				return err
			}
			r.Files++
		}
	}
	for i := len(dirs) - 1; i >= 0; i-- { // modes last: a read-only dir was still written into
		if err := m.Host.Chmod(ctx, dirs[i].rel, dirs[i].mode.Perm()); err != nil {
			return err
		}
	}
	return m.Host.Remove(ctx, marker)
}

func putFile(ctx context.Context, h remote.Host, local, p string, perm fs.FileMode) (int64, error) {
	f, err := os.Open(local)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return h.Upload(ctx, p, f, perm)
}

func randomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Get downloads remotePath from every host into localDir/<host>/<base>.
// remotePath may be a glob ('/var/log/*.log'): every match is fetched.
// With Recursive, directories are copied, keeping modes. Symlinks come
// back as symlinks and are never followed. Nothing is written outside
// localDir/<host>: every local write goes through an os.Root there, so
// neither a host name, a remote name nor a symlink can lead out of it.
func (c *Cluster) Get(ctx context.Context, remotePath, localDir string, opts TransferOptions) ([]TransferResult, error) {
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
		g := &getter{h: m.Host, recursive: opts.Recursive, r: TransferResult{Host: m.Name()}}
		g.r.Err = g.run(ctx, remotePath, filepath.Join(absDir, inventory.DirName(m.Name())))
		g.r.Duration = time.Since(start)
		res[i] = g.r
	})
	return res, nil
}

// getter copies from one host into an os.Root.
type getter struct {
	h         remote.Host
	root      *os.Root
	recursive bool
	dirs      []entry // directories, for their modes once filled
	r         TransferResult
}

func (g *getter) run(ctx context.Context, remotePath, dir string) error {
	matches := []string{remotePath}
	if strings.ContainsAny(remotePath, "*?[") {
		var err error
		if matches, err = g.h.Glob(ctx, remotePath); err != nil {
			return err
		}
		if len(matches) == 0 {
			return errs.E(errs.OpGet, g.h.Name(), errs.KindRemoteExit, fmt.Errorf("no file matches %s", remotePath))
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	g.root = root
	g.r.Path = dir
	if len(matches) == 1 {
		g.r.Path = filepath.Join(dir, path.Base(matches[0]))
	}
	for _, m := range matches {
		if err := g.get(ctx, m, path.Base(m)); err != nil {
			return err
		}
	}
	for i := len(g.dirs) - 1; i >= 0; i-- {
		if err := root.Chmod(g.dirs[i].rel, g.dirs[i].mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}

// get copies the remote path p to the local name (relative to the root).
func (g *getter) get(ctx context.Context, p, name string) error {
	fi, err := g.h.Lstat(ctx, p)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := g.h.ReadLink(ctx, p)
		if err != nil {
			return err
		}
		_ = g.root.Remove(name)
		return g.root.Symlink(target, name)
	case fi.IsDir():
		if !g.recursive {
			return fmt.Errorf("get %s from %s: %w", p, g.h.Name(), ErrIsDir)
		}
		if err := g.root.MkdirAll(name, 0o700); err != nil {
			return err
		}
		g.dirs = append(g.dirs, entry{rel: name, mode: fi.Mode()})
		list, err := g.h.ReadDir(ctx, p)
		if err != nil {
			return err
		}
		for _, e := range list {
			n := e.Name()
			if n == "" || n == "." || n == ".." || strings.ContainsAny(n, "/\\\x00") {
				return fmt.Errorf("get %s from %s: refusing the entry name %q", p, g.h.Name(), n)
			}
			if err := g.get(ctx, path.Join(p, n), path.Join(name, n)); err != nil {
				return err
			}
		}
		return nil
	case fi.Mode().IsRegular():
		return g.file(ctx, p, name, fi.Mode().Perm())
	}
	return fmt.Errorf("get %s from %s: not a regular file, directory or symlink", p, g.h.Name())
}

// file downloads to a temporary name beside name, then renames it.
func (g *getter) file(ctx context.Context, p, name string, perm fs.FileMode) error {
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+remote.TempMarker+randomHex())
	f, err := g.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	n, err := g.h.Download(ctx, p, f)
	g.r.Bytes += n
	err = errors.Join(err, f.Close())
	if err == nil {
		err = g.root.Chmod(tmp, perm)
	}
	if err == nil {
		err = g.root.Rename(tmp, name)
	}
	if err != nil {
		_ = g.root.Remove(tmp)
		return err
	}
	g.r.Files++
	return nil
}
