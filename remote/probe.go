package remote

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/errs"
)

// Info is what Probe learns about a host.
type Info struct {
	OS   string        // GOOS-style: linux, darwin, freebsd
	Arch string        // GOARCH-style: amd64, arm64
	CPUs int           // online CPUs
	Home string        // the login user's home directory
	RTT  time.Duration // one session round trip on an open connection (Probe only)
}

// Health is a host's load and memory as it last reported them: hosts
// that report them (an agent, in its heartbeats) implement
// HealthReporter.
type Health struct {
	Load1    float64   // the 1-minute load average
	MemAvail int64     // bytes available to new processes (MemAvailable)
	MemTotal int64     // bytes
	At       time.Time // when the master heard it
}

// HealthReporter is a Host that reports its Health; ok is false until it
// has.
type HealthReporter interface {
	Health() (h Health, ok bool)
}

// DescribeShell is Host.Describe for hosts with a POSIX shell: the OS,
// architecture, CPU count and home directory in one command. mkdirs are
// created first, private (0700; mkdir -p; "~/" is the home directory),
// saving round trips for callers that need them.
func DescribeShell(ctx context.Context, h Runner, mkdirs ...string) (Info, error) {
	out := NewCappedBuffer(64 << 10) // a broken host cannot flood the master
	script := "uname -s; uname -m; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; printf '%s\\n' \"$HOME\""
	if len(mkdirs) > 0 {
		var q []string
		for _, d := range mkdirs {
			q = append(q, QuotePath(d))
		}
		// Private: what dsub keeps on a host is the user's alone.
		script = "umask 077 && mkdir -p -- " + strings.Join(q, " ") + " && chmod 700 -- " + strings.Join(q, " ") + " && { " + script + "; }"
	}
	if err := h.Run(ctx, &Cmd{Shell: script, Stdout: out}); err != nil {
		return Info{}, err
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) < 4 {
		return Info{}, errs.E(errs.OpProbe, h.Name(), errs.KindOther, fmt.Errorf("unexpected uname/nproc output %q", out.String()))
	}
	info := Info{OS: strings.ToLower(strings.TrimSpace(lines[0])), Arch: GoArch(strings.TrimSpace(lines[1])), Home: lines[3]}
	info.CPUs, _ = strconv.Atoi(strings.TrimSpace(lines[2]))
	// What the host says becomes a local file name (dsub-<os>-<arch>)
	// and a build target: only Go's own names are taken.
	if !knownOS[info.OS] || !knownArch[info.Arch] {
		return Info{}, errs.E(errs.OpProbe, h.Name(), errs.KindConfig, fmt.Errorf("platform %q/%q is none that Go builds for", visibleASCII(info.OS), visibleASCII(info.Arch)))
	}
	return info, nil
}

// knownOS and knownArch are Go's GOOS and GOARCH values (go tool dist
// list) that a host can report.
var (
	knownOS = map[string]bool{"aix": true, "android": true, "darwin": true, "dragonfly": true, "freebsd": true, "illumos": true,
		"linux": true, "netbsd": true, "openbsd": true, "solaris": true}
	knownArch = map[string]bool{"386": true, "amd64": true, "arm": true, "arm64": true, "loong64": true, "mips": true, "mips64": true,
		"mips64le": true, "mipsle": true, "ppc64": true, "ppc64le": true, "riscv64": true, "s390x": true}
)

// visibleASCII is s with anything but printable ASCII shown as '?', and
// at most 32 bytes of it: a host's word, for a message.
func visibleASCII(s string) string {
	b := []byte(s)
	if len(b) > 32 {
		b = b[:32]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// Probe is Describe plus the round trip of one more, warm session.
func Probe(ctx context.Context, h Host) (Info, error) {
	info, err := h.Describe(ctx)
	if err != nil {
		return info, err
	}
	start := time.Now()
	if err := h.Run(ctx, &Cmd{Argv: []string{"true"}}); err != nil {
		return Info{}, err
	}
	info.RTT = time.Since(start)
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
