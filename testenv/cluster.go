package testenv

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sync/errgroup"
)

// Backend names how a cluster's hosts are provided.
type Backend string

const (
	Docker  Backend = "docker"
	Process Backend = "process"
)

// Options configure Up.
type Options struct {
	N       int     // number of hosts; at least 1
	Name    string  // cluster name, unique on the machine; default "dsub"
	Dir     string  // state directory; required
	Backend Backend // "" picks docker when an engine answers, else process
	Log     io.Writer
}

// Host is one sshd of a cluster.
type Host struct {
	Name      string `json:"name"`                // display name, h01..hNN
	Addr      string `json:"addr"`                // IP address sshd listens on
	Port      int    `json:"port"`                // TCP port sshd listens on
	User      string `json:"user"`                // login user
	Container string `json:"container,omitempty"` // docker: container name
	Home      string `json:"home,omitempty"`      // process: the user's home
	PID       int    `json:"pid,omitempty"`       // process: sshd listener pid
	HostKey   string `json:"host_key"`            // ed25519 host key, authorized_keys format
}

// HostPort is the host's "addr:port" for dialing.
func (h *Host) HostPort() string { return net.JoinHostPort(h.Addr, strconv.Itoa(h.Port)) }

// Cluster is a running set of sshd hosts and the state directory that
// describes them. Its exported paths are absolute.
type Cluster struct {
	Name    string  `json:"name"`
	Backend Backend `json:"backend"`
	Dir     string  `json:"dir"`
	Image   string  `json:"image,omitempty"`
	Network string  `json:"network,omitempty"`
	Hosts   []*Host `json:"hosts"`

	HostsFile  string `json:"-"` // hosts.toml for dsub
	KnownHosts string `json:"-"` // known_hosts with each host's ed25519 key
	KeyFile    string `json:"-"` // client private key (ed25519, no passphrase)
	SSHConfig  string `json:"-"` // ssh_config for `ssh -F`

	log io.Writer
	be  backend
}

// backend is what differs between docker containers and sshd processes.
type backend interface {
	setup(ctx context.Context, c *Cluster) error
	create(ctx context.Context, c *Cluster, h *Host, authorizedKey string) error
	hostKey(ctx context.Context, c *Cluster, h *Host) (string, error)
	kill(ctx context.Context, c *Cluster, h *Host) error
	pause(ctx context.Context, c *Cluster, h *Host) error
	unpause(ctx context.Context, c *Cluster, h *Host) error
	restart(ctx context.Context, c *Cluster, h *Host) error
	rekey(ctx context.Context, c *Cluster, h *Host) error
	exec(ctx context.Context, c *Cluster, h *Host, argv ...string) ([]byte, error)
	teardown(ctx context.Context, c *Cluster) error
}

const stateFile = "cluster.json"

// DockerAvailable reports whether a Docker engine answers.
func DockerAvailable(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").Run() == nil
}

// ChooseBackend resolves "" to a concrete backend: $DSUB_TESTENV_BACKEND if
// set, else docker when an engine answers, else process. When CI=true the
// default must be docker: a missing engine is an error, never a quiet
// fallback. An explicit Process request is honoured everywhere.
func ChooseBackend(ctx context.Context, want Backend) (Backend, error) {
	ci := os.Getenv("CI") == "true"
	if want == "" {
		want = Backend(os.Getenv("DSUB_TESTENV_BACKEND"))
		if want == Process && ci {
			return "", errors.New("testenv: CI=true requires the docker backend, but DSUB_TESTENV_BACKEND=process")
		}
	}
	switch want {
	case Docker:
		if !DockerAvailable(ctx) {
			return "", errors.New("testenv: docker backend requested but no Docker engine answers (docker info failed)")
		}
		return Docker, nil
	case Process:
		return Process, nil
	case "":
		if DockerAvailable(ctx) {
			return Docker, nil
		}
		if ci {
			return "", errors.New("testenv: CI=true requires the docker backend, but no Docker engine answers (docker info failed)")
		}
		return Process, nil
	}
	return "", fmt.Errorf("testenv: unknown backend %q (want docker or process)", want)
}

func newBackend(b Backend) backend {
	if b == Process {
		return &processBackend{}
	}
	return &dockerBackend{}
}

// Up starts a cluster as opts describe and writes its state directory. On
// error, whatever was started is torn down again.
func Up(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.N < 1 {
		return nil, fmt.Errorf("testenv: need at least 1 host, got %d", opts.N)
	}
	if opts.Dir == "" {
		return nil, errors.New("testenv: Options.Dir is required")
	}
	if opts.Name == "" {
		opts.Name = "dsub"
	}
	if !validName(opts.Name) {
		return nil, fmt.Errorf("testenv: cluster name %q: use letters, digits and '-' only", opts.Name)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	b, err := ChooseBackend(ctx, opts.Backend)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err == nil {
		return nil, fmt.Errorf("testenv: %s already holds a cluster; run `testenv down --state %s` first", dir, dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("testenv: create state dir: %w", err)
	}
	c := &Cluster{Name: opts.Name, Backend: b, Dir: dir, log: opts.Log, be: newBackend(b)}
	c.setPaths()
	for i := 1; i <= opts.N; i++ {
		c.Hosts = append(c.Hosts, &Host{Name: fmt.Sprintf("h%02d", i), User: "dsub"})
	}
	defer func() {
		if err != nil {
			_ = c.Down(context.WithoutCancel(ctx))
		}
	}()

	pub, err := writeClientKey(c.KeyFile)
	if err != nil {
		return nil, err
	}
	if err := c.be.setup(ctx, c); err != nil {
		return nil, err
	}
	// Save early so that `down` can clean up a half-started cluster.
	if err := c.save(); err != nil {
		return nil, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, h := range c.Hosts {
		g.Go(func() error {
			if err := c.be.create(gctx, c, h, pub); err != nil {
				return fmt.Errorf("testenv: start %s: %w", h.Name, err)
			}
			if err := waitBanner(gctx, h.HostPort(), 60*time.Second); err != nil {
				return fmt.Errorf("testenv: start %s: %w", h.Name, err)
			}
			k, err := c.be.hostKey(gctx, c, h)
			if err != nil {
				return fmt.Errorf("testenv: host key of %s: %w", h.Name, err)
			}
			h.HostKey = k
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		_ = c.save()
		return nil, err
	}
	if err := c.writeClientFiles(); err != nil {
		return nil, err
	}
	return c, c.save()
}

// Load reopens the cluster whose state directory is dir.
func Load(dir string) (*Cluster, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("testenv: no cluster in %s: %w", dir, err)
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("testenv: %s: %w", filepath.Join(dir, stateFile), err)
	}
	c.Dir = dir
	c.setPaths()
	c.log = io.Discard
	c.be = newBackend(c.Backend)
	return c, nil
}

// SetLog directs progress messages of later calls to w.
func (c *Cluster) SetLog(w io.Writer) { c.log = w }

// Down removes everything Up started: hosts, network, firewall rules and
// the state directory.
func (c *Cluster) Down(ctx context.Context) error {
	errs := []error{healAll(ctx, c)}
	errs = append(errs, c.be.teardown(ctx, c))
	errs = append(errs, os.RemoveAll(c.Dir))
	return errors.Join(errs...)
}

// Host returns the host called name.
func (c *Cluster) Host(name string) (*Host, error) {
	for _, h := range c.Hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return nil, fmt.Errorf("testenv: cluster %s has no host %q", c.Name, name)
}

// Names lists the hosts' names in order.
func (c *Cluster) Names() []string {
	var n []string
	for _, h := range c.Hosts {
		n = append(n, h.Name)
	}
	return n
}

func (c *Cluster) fault(ctx context.Context, op, name string, f func(context.Context, *Cluster, *Host) error) error {
	h, err := c.Host(name)
	if err != nil {
		return err
	}
	if err := f(ctx, c, h); err != nil {
		return fmt.Errorf("testenv: %s %s: %w", op, name, err)
	}
	return c.save()
}

// Kill stops the host abruptly: its sshd is gone and connections are refused.
func (c *Cluster) Kill(ctx context.Context, name string) error {
	return c.fault(ctx, "kill", name, c.be.kill)
}

// Pause freezes every process of the host. TCP connections stay open (the
// kernel still accepts and acknowledges) but nothing answers.
func (c *Cluster) Pause(ctx context.Context, name string) error {
	return c.fault(ctx, "pause", name, c.be.pause)
}

// Unpause resumes a paused host.
func (c *Cluster) Unpause(ctx context.Context, name string) error {
	return c.fault(ctx, "unpause", name, c.be.unpause)
}

// Restart brings the host back, whether running, killed or paused, with the
// same host keys and the same address.
func (c *Cluster) Restart(ctx context.Context, name string) error {
	h, err := c.Host(name)
	if err != nil {
		return err
	}
	if err := c.fault(ctx, "restart", name, c.be.restart); err != nil {
		return err
	}
	return waitBanner(ctx, h.HostPort(), 60*time.Second)
}

// Rekey brings the host back with NEW host keys, as a reinstalled host
// would; known_hosts keeps the old key, so clients must refuse it.
func (c *Cluster) Rekey(ctx context.Context, name string) error {
	h, err := c.Host(name)
	if err != nil {
		return err
	}
	if err := c.fault(ctx, "rekey", name, c.be.rekey); err != nil {
		return err
	}
	return waitBanner(ctx, h.HostPort(), 60*time.Second)
}

// Partition drops every packet to and from the host's sshd, in both
// directions, for new and established connections alike.
func (c *Cluster) Partition(ctx context.Context, name string) error {
	return c.fault(ctx, "partition", name, partition)
}

// Heal removes a partition.
func (c *Cluster) Heal(ctx context.Context, name string) error {
	return c.fault(ctx, "heal", name, heal)
}

// Exec runs argv as root on the host (inside its container for docker) and
// returns its combined output. Tests use it to look for stray processes.
func (c *Cluster) Exec(ctx context.Context, name string, argv ...string) ([]byte, error) {
	h, err := c.Host(name)
	if err != nil {
		return nil, err
	}
	return c.be.exec(ctx, c, h, argv...)
}

func (c *Cluster) setPaths() {
	c.HostsFile = filepath.Join(c.Dir, "hosts.toml")
	c.KnownHosts = filepath.Join(c.Dir, "known_hosts")
	c.KeyFile = filepath.Join(c.Dir, "id_ed25519")
	c.SSHConfig = filepath.Join(c.Dir, "ssh_config")
}

func (c *Cluster) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.Dir, stateFile), append(b, '\n'), 0o600)
}

// slotsLine is the [defaults] slots line of a hosts.toml testenv writes.
var slotsLine = regexp.MustCompile(`(?m)^slots = .*$`)

// WithSlots returns hostsToml, a hosts.toml testenv wrote (or Delay
// rewrote), with slots per host instead of testenv's 2.
func WithSlots(hostsToml string, slots int) string {
	line := fmt.Sprintf("slots = %d", slots)
	if slotsLine.MatchString(hostsToml) {
		return slotsLine.ReplaceAllString(hostsToml, line)
	}
	return strings.Replace(hostsToml, "[defaults]\n", "[defaults]\n"+line+"\n", 1)
}

// writeClientFiles writes known_hosts, hosts.toml and ssh_config.
func (c *Cluster) writeClientFiles() error {
	var kh, ht, sc strings.Builder
	fmt.Fprintf(&ht, "# hosts.toml written by `testenv up` for cluster %q (%s backend).\n", c.Name, c.Backend)
	fmt.Fprintf(&ht, "# Use it with: dsub ping --hosts %s\n\n", c.HostsFile)
	// slots = 2, whatever the CPUs: tests that count jobs per host or in
	// flight must not depend on the machine's size.
	fmt.Fprintf(&ht, "[defaults]\nuser = %q\nidentity_files = [%q]\nknown_hosts = [%q]\nconnect_timeout = \"10s\"\nslots = 2\n", "dsub", c.KeyFile, c.KnownHosts)
	fmt.Fprintf(&sc, "# ssh_config written by `testenv up` for cluster %q. Use: ssh -F %s h01\n", c.Name, c.SSHConfig)
	for _, h := range c.Hosts {
		fmt.Fprintf(&kh, "%s %s\n", knownHostsAddr(h), h.HostKey)
		fmt.Fprintf(&ht, "\n[[host]]\nname = %q\naddress = %q\n", h.Name, h.HostPort())
		if h.User != "dsub" {
			fmt.Fprintf(&ht, "user = %q\n", h.User)
		}
		fmt.Fprintf(&sc, "\nHost %s\n  HostName %s\n  Port %d\n  User %s\n", h.Name, h.Addr, h.Port, h.User)
	}
	fmt.Fprintf(&sc, "\nHost *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  PasswordAuthentication no\n  BatchMode yes\n", c.KeyFile, c.KnownHosts)
	for f, s := range map[string]string{c.KnownHosts: kh.String(), c.HostsFile: ht.String(), c.SSHConfig: sc.String()} {
		if err := writeFileAtomic(f, []byte(s), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// knownHostsAddr is the known_hosts host field OpenSSH looks up for h.
func knownHostsAddr(h *Host) string {
	if h.Port == 22 {
		return h.Addr
	}
	return fmt.Sprintf("[%s]:%d", h.Addr, h.Port)
}

// writeClientKey writes a fresh ed25519 key pair to path and path.pub and
// returns the public key in authorized_keys format.
func writeClientKey(path string) (string, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "dsub testenv")
	if err != nil {
		return "", err
	}
	spub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", err
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(spub))) + " dsub-testenv"
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", err
	}
	return line, writeFileAtomic(path+".pub", []byte(line+"\n"), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("testenv: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("testenv: write %s: %w", path, err)
	}
	return nil
}

// waitBanner waits until addr answers with an SSH identification string.
func waitBanner(ctx context.Context, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		last = readBanner(addr)
		if last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("sshd at %s not ready after %s: %v", addr, timeout, last)
}

func readBanner(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("unexpected banner %q", line)
	}
	return nil
}

// freePort asks the kernel for an unused TCP port on addr.
func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return s != "" && len(s) <= 40
}
