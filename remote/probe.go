package remote

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Info is what Probe learns about a host.
type Info struct {
	OS   string        // GOOS-style: linux, darwin, freebsd
	Arch string        // GOARCH-style: amd64, arm64
	CPUs int           // online CPUs
	RTT  time.Duration // one session round trip on an open connection
}

// Probe asks the host for its OS, architecture and CPU count. The first
// call may include connecting; RTT is measured on a second, warm session.
func Probe(ctx context.Context, h Host) (Info, error) {
	var out bytes.Buffer
	cmd := &Cmd{Shell: "uname -s; uname -m; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN", Stdout: &out}
	if err := h.Run(ctx, cmd); err != nil {
		return Info{}, err
	}
	start := time.Now()
	if err := h.Run(ctx, &Cmd{Argv: []string{"true"}}); err != nil {
		return Info{}, err
	}
	info := Info{RTT: time.Since(start)}
	f := strings.Fields(out.String())
	if len(f) < 3 {
		return info, &Error{Op: "probe", Host: h.Name(), Err: fmt.Errorf("unexpected uname/nproc output %q", out.String())}
	}
	info.OS = strings.ToLower(f[0])
	info.Arch = GoArch(f[1])
	info.CPUs, _ = strconv.Atoi(f[2])
	return info, nil
}

// GoArch maps `uname -m` to Go's GOARCH names.
func GoArch(m string) string {
	switch m {
	case "x86_64", "amd64":
		return "amd64"
	case "aarch64", "arm64":
		return "arm64"
	case "i386", "i486", "i586", "i686":
		return "386"
	case "armv6l", "armv7l", "armv8l", "arm":
		return "arm"
	case "ppc64le", "ppc64", "s390x", "riscv64", "mips64", "loong64":
		return m
	}
	return m
}
