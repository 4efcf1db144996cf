package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// dockerBackend runs each host as a container on a private network, with
// sshd published on its own 127.0.0.1 port.
type dockerBackend struct{}

func docker(ctx context.Context, args ...string) ([]byte, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("docker %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

func (dockerBackend) setup(ctx context.Context, c *Cluster) error {
	img, err := EnsureImage(ctx, c.log)
	if err != nil {
		return err
	}
	c.Image = img
	network := "dsub-testenv-" + c.Name
	if _, err := docker(ctx, "network", "create", "--label", "dsub.testenv="+c.Name, network); err != nil {
		if strings.Contains(err.Error(), "already exists") {
			return fmt.Errorf("a cluster named %q already runs on this machine (network %s exists): pick another --name, or remove it with testenv down", c.Name, network)
		}
		return err
	}
	c.Network = network // only now is it ours to remove
	return nil
}

func (dockerBackend) create(ctx context.Context, c *Cluster, h *Host, authorizedKey string) error {
	h.Container = "dsub-testenv-" + c.Name + "-" + h.Name
	h.Addr = "127.0.0.1"
	var err error
	// Another process may take the port between freePort and docker run:
	// retry with a fresh one.
	for attempt := 0; attempt < 5; attempt++ {
		if h.Port, err = freePort(h.Addr); err != nil {
			return err
		}
		_, err = docker(ctx, "run", "-d", "--init", "--name", h.Container, "--hostname", h.Name,
			"--network", c.Network, "--network-alias", h.Name, "--label", "dsub.testenv="+c.Name,
			"-p", h.Addr+":"+strconv.Itoa(h.Port)+":22",
			"-e", "DSUB_AUTHORIZED_KEY="+authorizedKey, c.Image)
		if err == nil {
			return nil
		}
		_, _ = docker(ctx, "rm", "-f", h.Container)
		if !strings.Contains(err.Error(), "already allocated") && !strings.Contains(err.Error(), "address already in use") {
			return err
		}
	}
	return err
}

func (dockerBackend) hostKey(ctx context.Context, c *Cluster, h *Host) (string, error) {
	out, err := docker(ctx, "exec", h.Container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return "", err
	}
	f := strings.Fields(string(out))
	if len(f) < 2 {
		return "", fmt.Errorf("bad host key %q", out)
	}
	return f[0] + " " + f[1], nil
}

func (dockerBackend) kill(ctx context.Context, c *Cluster, h *Host) error {
	_, _ = docker(ctx, "unpause", h.Container) // a paused container cannot be killed cleanly
	_, err := docker(ctx, "kill", h.Container)
	return err
}

func (dockerBackend) pause(ctx context.Context, c *Cluster, h *Host) error {
	// The cgroup v1 freezer gives up ("unable to freeze") when it catches
	// the container forking busily, as a host running jobs does; the
	// container is left running, so trying again is safe. Bounded.
	var err error
	for try := 0; try < 10; try++ {
		if _, err = docker(ctx, "pause", h.Container); err == nil || !strings.Contains(err.Error(), "unable to freeze") {
			return err
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
	return err
}

func (dockerBackend) unpause(ctx context.Context, c *Cluster, h *Host) error {
	_, err := docker(ctx, "unpause", h.Container)
	return err
}

func (dockerBackend) restart(ctx context.Context, c *Cluster, h *Host) error {
	_, _ = docker(ctx, "unpause", h.Container)
	_, err := docker(ctx, "restart", "-t", "1", h.Container)
	if err != nil {
		return err
	}
	// The container keeps its filesystem, so its host keys are unchanged;
	// verify rather than assume.
	deadline := time.Now().Add(30 * time.Second)
	for {
		k, kerr := dockerBackend{}.hostKey(ctx, c, h)
		if kerr == nil && h.HostKey != "" && k != h.HostKey {
			return fmt.Errorf("host key changed across restart: was %s, now %s", h.HostKey, k)
		}
		if kerr == nil || time.Now().After(deadline) {
			return kerr
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (dockerBackend) rekey(ctx context.Context, c *Cluster, h *Host) error {
	_, _ = docker(ctx, "unpause", h.Container)
	_, _ = docker(ctx, "start", h.Container)
	if _, err := docker(ctx, "exec", h.Container, "sh", "-c", "rm -f /etc/ssh/ssh_host_*"); err != nil {
		return err
	}
	_, err := docker(ctx, "restart", "-t", "1", h.Container) // the entrypoint makes new keys
	return err
}

func (dockerBackend) exec(ctx context.Context, c *Cluster, h *Host, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", append([]string{"exec", h.Container}, argv...)...)
	return cmd.CombinedOutput()
}

func (dockerBackend) teardown(ctx context.Context, c *Cluster) error {
	var names []string
	for _, h := range c.Hosts {
		if h.Container != "" {
			names = append(names, h.Container)
		}
	}
	var err error
	if len(names) > 0 {
		_, err = docker(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
		if err != nil && strings.Contains(err.Error(), "No such container") {
			err = nil
		}
	}
	if c.Network != "" {
		if _, nerr := docker(ctx, "network", "rm", c.Network); nerr != nil && !strings.Contains(nerr.Error(), "not found") && err == nil {
			err = nerr
		}
	}
	return err
}
