package testenv

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed image
var imageFS embed.FS

// ImageRepo is the local repository name of the testenv sshd image. Its tag
// is the first 12 hex digits of the recipe's hash, so an image is rebuilt
// exactly when the recipe (testenv/image) changes.
const ImageRepo = "dsub-testenv-sshd"

// ImageTag returns the image reference for the embedded recipe.
func ImageTag() string { return recipeTag(imageFS) }

// recipeTag hashes every file under image/ in fsys, names and contents, so
// that any change to the recipe gives a new tag (and a rebuild).
func recipeTag(fsys fs.ReadFileFS) string {
	h := sha256.New()
	var names []string
	_ = fs.WalkDir(fsys, "image", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	sort.Strings(names)
	for _, n := range names {
		b, _ := fsys.ReadFile(n)
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(b))
		h.Write(b)
	}
	return ImageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

// EnsureImage builds the sshd image unless an image for the current recipe
// already exists. It writes build progress to log and returns the image
// reference. Builds are serialised across processes with a file lock, so
// parallel test packages build it once.
func EnsureImage(ctx context.Context, log io.Writer) (string, error) {
	tag := ImageTag()
	if imageExists(ctx, tag) {
		return tag, nil
	}
	unlock, err := lockFile(filepath.Join(os.TempDir(), "dsub-testenv-image.lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if imageExists(ctx, tag) { // built by another process while we waited
		return tag, nil
	}
	mirror, err := debianMirror()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "dsub-testenv-recipe")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	if err := os.CopyFS(dir, imageFS); err != nil {
		return "", fmt.Errorf("testenv: unpack image recipe: %w", err)
	}
	for _, f := range []string{"build.sh", "entrypoint.sh"} {
		if err := os.Chmod(filepath.Join(dir, "image", f), 0o755); err != nil {
			return "", err
		}
	}
	start := time.Now()
	fmt.Fprintf(log, "testenv: building image %s from Debian packages (debootstrap, no registry)...\n", tag)
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(dir, "image", "build.sh"), tag, mirror, "bookworm")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("testenv: build image %s: %w", tag, err)
	}
	fmt.Fprintf(log, "testenv: built image %s in %s\n", tag, time.Since(start).Round(time.Second))
	return tag, nil
}

func imageExists(ctx context.Context, tag string) bool {
	return exec.CommandContext(ctx, "docker", "image", "inspect", "--format", "{{.Id}}", tag).Run() == nil
}

// debianMirror returns the Debian archive to debootstrap from: $DSUB_DEBIAN_MIRROR,
// else the first Debian archive that this machine's apt sources name.
func debianMirror() (string, error) {
	if m := os.Getenv("DSUB_DEBIAN_MIRROR"); m != "" {
		return m, nil
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	files = append(files, "/etc/apt/sources.list")
	more, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	files = append(files, more...)
	for _, f := range files {
		if m := mirrorFromSources(f); m != "" {
			return m, nil
		}
	}
	return "", fmt.Errorf("testenv: no Debian archive found in /etc/apt sources; set DSUB_DEBIAN_MIRROR to a Debian mirror URL")
}

// mirrorFromSources reads one apt sources file (deb822 or one-line style)
// and returns its first URI that serves the main Debian archive.
func mirrorFromSources(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var uris []string
		switch {
		case strings.HasPrefix(line, "URIs:"):
			uris = strings.Fields(strings.TrimPrefix(line, "URIs:"))
		case strings.HasPrefix(line, "deb "):
			for _, w := range strings.Fields(line)[1:] {
				if strings.Contains(w, "://") {
					uris = append(uris, w)
					break
				}
			}
		}
		for _, u := range uris {
			u = strings.TrimSuffix(u, "/")
			if strings.HasSuffix(u, "/debian") {
				return u
			}
		}
	}
	return ""
}

var lockMu sync.Mutex

// lockFile takes an exclusive flock on path, creating it if needed.
func lockFile(path string) (func(), error) {
	lockMu.Lock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		lockMu.Unlock()
		return nil, fmt.Errorf("testenv: lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		lockMu.Unlock()
		return nil, fmt.Errorf("testenv: lock %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		lockMu.Unlock()
	}, nil
}
