package distributor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dsub-dev/dsub/remote"
)

// artifact is a local file to ship, identified by its content.
type artifact struct {
	Path   string
	SHA256 string
	Size   int64
}

func hashFile(p string) (artifact, error) {
	f, err := os.Open(p)
	if err != nil {
		return artifact{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return artifact{}, fmt.Errorf("hash %s: %w", p, err)
	}
	return artifact{Path: p, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}, nil
}

// binaryInfo describes an executable's target, as far as it can be read.
type binaryInfo struct {
	GOOS, GOARCH string // "" when unknown
	Dynamic      bool   // needs a dynamic loader on the host
	Script       bool   // starts with #!
}

var elfArch = map[elf.Machine]string{
	elf.EM_X86_64: "amd64", elf.EM_AARCH64: "arm64", elf.EM_386: "386", elf.EM_ARM: "arm",
	elf.EM_PPC64: "ppc64le", elf.EM_S390: "s390x", elf.EM_RISCV: "riscv64", elf.EM_LOONGARCH: "loong64",
}

// inspectBinary reads what it can of an executable's target.
func inspectBinary(p string) (binaryInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return binaryInfo{}, err
	}
	defer f.Close()
	var magic [4]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil {
		return binaryInfo{}, fmt.Errorf("%s: too short to be a program", p)
	}
	switch {
	case magic[0] == '#' && magic[1] == '!':
		return binaryInfo{Script: true}, nil
	case string(magic[:]) == "\x7fELF":
		ef, err := elf.NewFile(f)
		if err != nil {
			return binaryInfo{}, fmt.Errorf("%s: %w", p, err)
		}
		bi := binaryInfo{GOOS: "linux", GOARCH: elfArch[ef.Machine]}
		for _, prog := range ef.Progs {
			if prog.Type == elf.PT_INTERP {
				bi.Dynamic = true
			}
		}
		if ef.OSABI == elf.ELFOSABI_FREEBSD {
			bi.GOOS = "freebsd"
		}
		return bi, nil
	case bytes.Equal(magic[:], []byte{0xcf, 0xfa, 0xed, 0xfe}):
		return binaryInfo{GOOS: "darwin"}, nil
	case magic[0] == 'M' && magic[1] == 'Z':
		return binaryInfo{GOOS: "windows"}, nil
	}
	return binaryInfo{}, nil
}

// builder builds a Go package once per GOOS/GOARCH, with CGO_ENABLED=0,
// so that a static binary exists for every platform in the cluster.
type builder struct {
	pkg string
	dir string

	mu     sync.Mutex
	builds map[string]*build // "os/arch" → build; guarded by mu
}

type build struct {
	once sync.Once
	art  artifact
	err  error
}

func (b *builder) get(ctx context.Context, goos, goarch string) (artifact, error) {
	key := goos + "/" + goarch
	b.mu.Lock()
	bd := b.builds[key]
	if bd == nil {
		bd = &build{}
		b.builds[key] = bd
	}
	b.mu.Unlock()
	bd.once.Do(func() {
		out := filepath.Join(b.dir, strings.ReplaceAll(path.Base(b.pkg), ".", "_")+"-"+goos+"-"+goarch)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, b.pkg)
		if IsLocalPackage(b.pkg) {
			// Build a directory in its own module, wherever we are.
			cmd = exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, ".")
			cmd.Dir = b.pkg
		}
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
		if msg, err := cmd.CombinedOutput(); err != nil {
			bd.err = fmt.Errorf("build %s for %s: %v\n%s", b.pkg, key, err, strings.TrimSpace(string(msg)))
			return
		}
		bd.art, bd.err = hashFile(out)
	})
	return bd.art, bd.err
}

// IsLocalPackage reports whether a --build argument is a directory path
// (built in its own module) rather than an import path.
func IsLocalPackage(p string) bool {
	return p == "." || p == ".." || strings.HasPrefix(p, "./") || strings.HasPrefix(p, "../") || filepath.IsAbs(p)
}

// ensureRemote makes sure host holds art at dst, the content-addressed
// cache path: an existing file of the right size whose sha256 verifies on
// the host is kept (0 bytes sent); otherwise it is uploaded to a temporary
// name and renamed into place. It returns the bytes sent.
func ensureRemote(ctx context.Context, h remote.Host, art artifact, dst string, perm fs.FileMode) (int64, error) {
	if fi, err := h.Stat(ctx, dst); err == nil && fi.Size() == art.Size {
		if sum, err := remoteSHA256(ctx, h, dst); err == nil && sum == art.SHA256 {
			return 0, nil
		}
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	f, err := os.Open(art.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return h.Upload(ctx, dst, f, perm)
}

// remoteSHA256 hashes a file on the host with sha256sum (or shasum).
func remoteSHA256(ctx context.Context, h remote.Host, p string) (string, error) {
	out := remote.NewCappedBuffer(4 << 10) // a hash line; a flood is dropped
	q := remote.QuotePath(p)
	err := h.Run(ctx, &remote.Cmd{
		Shell:  "sha256sum -- " + q + " 2>/dev/null || shasum -a 256 -- " + q,
		Stdout: out,
	})
	if err != nil {
		return "", err
	}
	f := strings.Fields(out.String())
	if len(f) == 0 || len(f[0]) != 64 {
		return "", fmt.Errorf("unexpected sha256sum output %q", out.String())
	}
	return f[0], nil
}

// CheckBuild checks, before anything runs, that pkg names a Go package
// that can be found: a local directory holding Go files, or an import
// path `go list` resolves. It does not build.
func CheckBuild(ctx context.Context, pkg string) error {
	dir, target := "", pkg
	if IsLocalPackage(pkg) {
		if fi, err := os.Stat(pkg); err != nil {
			return err
		} else if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", pkg)
		}
		dir, target = pkg, "." // built in its own module, as the builder does
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-find", target)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(msg)))
	}
	return nil
}
