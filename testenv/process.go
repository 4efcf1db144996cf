package testenv

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processBackend runs each host as a plain sshd process on its own
// 127.x.y.z address, with its own system user and home directory so that
// hosts do not share a filesystem. It needs root (sshd must switch users)
// and openssh-server installed.
type processBackend struct{}

const sshdPath = "/usr/sbin/sshd"

func (processBackend) setup(ctx context.Context, c *Cluster) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the process backend needs root (it creates one user per host); run as root or use the docker backend")
	}
	if _, err := os.Stat(sshdPath); err != nil {
		return fmt.Errorf("the process backend needs openssh-server (%s): %w", sshdPath, err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	// A per-cluster /16 of loopback, derived from the name, keeps clusters
	// with different names apart without coordination.
	sum := sha256.Sum256([]byte(c.Name))
	for i, h := range c.Hosts {
		h.Addr = fmt.Sprintf("127.%d.%d.%d", 100+int(sum[0])%100, sum[1], i+1)
		h.User = fmt.Sprintf("dsubt%x%s", sum[2:5], h.Name)
		h.Home = "/home/" + h.User
	}
	return nil
}

func (p processBackend) hostDir(c *Cluster, h *Host) string {
	return filepath.Join(c.Dir, "hosts", h.Name)
}

func (p processBackend) create(ctx context.Context, c *Cluster, h *Host, authorizedKey string) error {
	dir := p.hostDir(c, h)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "useradd", "--create-home", "--home-dir", h.Home, "--shell", "/bin/bash", h.User).CombinedOutput(); err != nil {
		return fmt.Errorf("useradd %s: %w: %s", h.User, err, out)
	}
	if out, err := exec.CommandContext(ctx, "usermod", "-p", "*", h.User).CombinedOutput(); err != nil {
		return fmt.Errorf("usermod %s: %w: %s", h.User, err, out)
	}
	ssh := filepath.Join(h.Home, ".ssh")
	if err := os.MkdirAll(ssh, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(ssh, "authorized_keys"), []byte(authorizedKey+"\n"), 0o600); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "chown", "-R", h.User+":", ssh).CombinedOutput(); err != nil {
		return fmt.Errorf("chown: %w: %s", err, out)
	}
	for _, t := range []string{"ed25519", "rsa"} {
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", t, "-N", "", "-f", filepath.Join(dir, "ssh_host_"+t+"_key")).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	port, err := freePort(h.Addr)
	if err != nil {
		return err
	}
	h.Port = port
	cfg := fmt.Sprintf(`# sshd for testenv host %s of cluster %s: stock settings but for these.
ListenAddress %s:%d
HostKey %s/ssh_host_ed25519_key
HostKey %s/ssh_host_rsa_key
PidFile %s/sshd.pid
AllowUsers %s
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM yes
Subsystem sftp /usr/lib/openssh/sftp-server
`, h.Name, c.Name, h.Addr, h.Port, dir, dir, dir, h.User)
	if err := os.WriteFile(filepath.Join(dir, "sshd_config"), []byte(cfg), 0o600); err != nil {
		return err
	}
	return p.start(c, h)
}

// start launches sshd in its own session so that it outlives the process
// that ran `testenv up`.
func (p processBackend) start(c *Cluster, h *Host) error {
	dir := p.hostDir(c, h)
	logf, err := os.OpenFile(filepath.Join(dir, "sshd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	h.PID = cmd.Process.Pid
	go cmd.Wait() // reap it if it dies while we live
	return nil
}

func (p processBackend) hostKey(ctx context.Context, c *Cluster, h *Host) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.hostDir(c, h), "ssh_host_ed25519_key.pub"))
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return "", fmt.Errorf("bad host key %q", b)
	}
	return f[0] + " " + f[1], nil
}

// hostPIDs lists the sshd listener, all its descendants (per-connection
// monitors and sessions) and every process of the host's user.
func hostPIDs(h *Host) []int {
	if h.PID == 0 {
		return nil
	}
	uid, uidErr := userUID(h.User)
	children := map[int][]int{}
	owner := map[int]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state ppid ...
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 {
				ppid, _ := strconv.Atoi(f[1])
				children[ppid] = append(children[ppid], pid)
			}
		}
		var fi syscall.Stat_t
		if uidErr == nil && syscall.Stat("/proc/"+e.Name(), &fi) == nil && int(fi.Uid) == uid {
			owner[pid] = true
		}
	}
	seen := map[int]bool{}
	var walk func(int)
	walk = func(p int) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(h.PID)
	for p := range owner {
		seen[p] = true
	}
	var out []int
	for p := range seen {
		out = append(out, p)
	}
	return out
}

func userUID(name string) (int, error) {
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

func signalAll(h *Host, sig syscall.Signal) {
	for _, p := range hostPIDs(h) {
		_ = syscall.Kill(p, sig)
	}
}

func (processBackend) kill(ctx context.Context, c *Cluster, h *Host) error {
	signalAll(h, syscall.SIGCONT)
	signalAll(h, syscall.SIGKILL)
	// Wait until the listener is really gone, so the port refuses.
	for i := 0; i < 100 && syscall.Kill(h.PID, 0) == nil && !isZombie(h.PID); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	h.PID = 0
	return nil
}

func isZombie(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(st)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

func (processBackend) pause(ctx context.Context, c *Cluster, h *Host) error {
	signalAll(h, syscall.SIGSTOP)
	return nil
}

func (processBackend) unpause(ctx context.Context, c *Cluster, h *Host) error {
	signalAll(h, syscall.SIGCONT)
	return nil
}

func (p processBackend) restart(ctx context.Context, c *Cluster, h *Host) error {
	if err := p.kill(ctx, c, h); err != nil {
		return err
	}
	return p.start(c, h)
}

func (p processBackend) rekey(ctx context.Context, c *Cluster, h *Host) error {
	if err := p.kill(ctx, c, h); err != nil {
		return err
	}
	dir := p.hostDir(c, h)
	for _, t := range []string{"ed25519", "rsa"} {
		f := filepath.Join(dir, "ssh_host_"+t+"_key")
		os.Remove(f)
		os.Remove(f + ".pub")
		if out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", t, "-N", "", "-f", f).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %w: %s", err, out)
		}
	}
	return p.start(c, h)
}

func (processBackend) exec(ctx context.Context, c *Cluster, h *Host, argv ...string) ([]byte, error) {
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

func (p processBackend) teardown(ctx context.Context, c *Cluster) error {
	var errs []string
	for _, h := range c.Hosts {
		if h.PID != 0 {
			_ = p.kill(ctx, c, h)
		}
		if h.User == "" || h.User == "dsub" {
			continue
		}
		if _, err := userUID(h.User); err != nil {
			continue // never created
		}
		if out, err := exec.CommandContext(ctx, "userdel", "--remove", h.User).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Sprintf("userdel %s: %v: %s", h.User, err, out))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}
