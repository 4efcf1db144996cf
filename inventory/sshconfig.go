package inventory

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// applySSHConfig fills in what hosts.toml left unset from the OpenSSH
// client config (HostName, User, Port, IdentityFile, IdentitiesOnly,
// ProxyJump, UserKnownHostsFile and GlobalKnownHostsFile), as OpenSSH
// itself evaluates it: `ssh -G` applies Host and
// Match blocks, Include, tokens and first-match-wins exactly as ssh would,
// which no Go parser does completely. It runs only when the config file
// exists, once per distinct address.
func applySSHConfig(all []*hostState, opts Options) error {
	var hosts []*hostState // the local machine takes no SSH settings
	for _, h := range all {
		if !h.Local {
			hosts = append(hosts, h)
		}
	}
	path := opts.SSHConfig
	if path == "none" {
		return nil
	}
	explicit := path != ""
	if path == "" {
		path = filepath.Join(opts.Home, ".ssh", "config")
	}
	path = ExpandHome(path, opts.Home)
	if _, err := os.Stat(path); err != nil {
		if explicit {
			return errs.Config(path, "cannot read ssh config: "+err.Error())
		}
		return nil
	}
	sshBin, err := exec.LookPath("ssh")
	if err != nil {
		return errs.Config(path, "reading ssh config needs the OpenSSH client (ssh) on PATH; install it, or turn ssh config reading off (\"none\")")
	}
	var mu sync.Mutex
	cache := map[string]map[string][]string{}
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(8)
	for _, h := range hosts {
		mu.Lock()
		_, done := cache[h.Address]
		cache[h.Address] = nil
		mu.Unlock()
		if done {
			continue
		}
		addr := h.Address
		g.Go(func() error {
			kv, err := sshG(ctx, sshBin, path, addr)
			if err != nil {
				return errs.Config(path, fmt.Sprintf("evaluating it for %s: %v", addr, err))
			}
			mu.Lock()
			cache[addr] = kv
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, h := range hosts {
		kv := cache[h.Address]
		if v := first(kv, "hostname"); v != "" && v != h.Address {
			h.Address, h.Origin.Address = v, "ssh_config"
		}
		if v := first(kv, "user"); v != "" && !h.set["user"] && v != h.User {
			h.User, h.Origin.User = v, "ssh_config"
		}
		if v := first(kv, "port"); v != "" && !h.set["port"] {
			if n, err := strconv.Atoi(v); err == nil && n != h.Port {
				h.Port, h.Origin.Port = n, "ssh_config"
			}
		}
		if v := kv["identityfile"]; len(v) > 0 && !h.set["identity_files"] {
			h.IdentityFiles = expandAll(v, opts.Home)
		}
		if v := first(kv, "identitiesonly"); v != "" && !h.set["identities_only"] {
			h.IdentitiesOnly = v == "yes"
		}
		if v := first(kv, "proxyjump"); v != "" && v != "none" && !h.set["proxy_jump"] {
			h.ProxyJump = v
		}
		if kh := knownHostsFiles(kv); len(kh) > 0 && !h.set["known_hosts"] {
			h.KnownHosts = expandAll(kh, opts.Home)
		}
	}
	return resolveJumps(hosts, cache, sshBin, path, opts)
}

// knownHostsFiles are the files ssh checks host keys against, in its
// order: UserKnownHostsFile (the first receives --accept-new entries),
// then GlobalKnownHostsFile. Each holds space-separated paths; "none"
// means none.
func knownHostsFiles(kv map[string][]string) []string {
	var out []string
	for _, k := range []string{"userknownhostsfile", "globalknownhostsfile"} {
		for _, v := range kv[k] {
			for _, f := range strings.Fields(v) {
				if f != "none" {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

func first(kv map[string][]string, k string) string {
	if v := kv[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// sshG runs `ssh -G -F path host` and returns its key → values.
func sshG(ctx context.Context, sshBin, path, host string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, sshBin, "-G", "-F", path, "--", host)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("ssh -G: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	kv := map[string][]string{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok {
			kv[k] = append(kv[k], v)
		}
	}
	return kv, nil
}

// resolveJumps resolves each ProxyJump hop as ssh resolves it: as a host
// of its own in the same config (HostName, User, Port, IdentityFile),
// with what the ProxyJump string spells out (user@, :port) winning.
func resolveJumps(hosts []*hostState, cache map[string]map[string][]string, sshBin, path string, opts Options) error {
	for _, h := range hosts {
		jumps, err := remote.ParseProxyJump(h.ProxyJump)
		if err != nil || len(jumps) == 0 {
			continue // validated elsewhere
		}
		for i, j := range jumps {
			kv, ok := cache[j.Host]
			if !ok {
				if kv, err = sshG(context.Background(), sshBin, path, j.Host); err != nil {
					return errs.Config(path, fmt.Sprintf("evaluating it for jump host %s of %s: %v", j.Host, h.Name, err))
				}
				cache[j.Host] = kv
			}
			if v := first(kv, "hostname"); v != "" {
				jumps[i].Host = v
			}
			if v := first(kv, "user"); v != "" && j.User == "" {
				jumps[i].User = v
			}
			if v := first(kv, "port"); v != "" && j.Port == 0 {
				jumps[i].Port, _ = strconv.Atoi(v)
			}
			if v := kv["identityfile"]; len(v) > 0 {
				jumps[i].IdentityFiles = expandAll(v, opts.Home)
			}
		}
		h.Jumps = jumps
	}
	return nil
}
