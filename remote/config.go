package remote

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/dsub-dev/dsub/internal/hostrange"
)

// Config is how to reach one host.
type Config struct {
	Name           string // display name, used in every error
	Host           string // address to dial
	Port           int
	User           string
	IdentityFiles  []string // local private key files; missing ones are skipped
	IdentitiesOnly bool     // offer only IdentityFiles' keys, even from the agent
	KnownHosts     []string // known_hosts files; the first receives accept-new entries
	ConnectTimeout time.Duration
	Keepalive      time.Duration // 0 disables keepalives
	ProxyJump      []Jump        // bastions, first hop first

	// MaxPerConn caps concurrent sessions per connection (default 4):
	// sshd's MaxSessions is 10, and under churn opens fail beyond ~5.
	MaxPerConn int
	// MaxConns caps connections to the host (default 8).
	MaxConns int
}

// Jump is one ProxyJump hop.
type Jump struct {
	User string // "" = the target's user
	Host string
	Port int // 0 = 22
	// IdentityFiles are the hop's own keys (nil: the target's), as its
	// own ssh_config entry gives them.
	IdentityFiles []string
}

func (j Jump) addr() string {
	p := j.Port
	if p == 0 {
		p = 22
	}
	return net.JoinHostPort(j.Host, strconv.Itoa(p))
}

// ParseProxyJump parses OpenSSH's ProxyJump syntax: "[user@]host[:port]"
// hops separated by commas. "" and "none" mean no jump.
func ParseProxyJump(s string) ([]Jump, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out []Jump
	for _, hop := range hostrange.SplitList(s) {
		var j Jump
		if u, rest, ok := strings.Cut(hop, "@"); ok {
			j.User, hop = u, rest
			if u == "" {
				return nil, fmt.Errorf("hop %q: empty user", hop)
			}
		}
		h, p := hop, ""
		if strings.HasPrefix(hop, "[") || strings.Count(hop, ":") == 1 {
			var err error
			if h, p, err = net.SplitHostPort(hop); err != nil {
				if !strings.HasSuffix(hop, "]") {
					return nil, fmt.Errorf("hop %q: %v", hop, err)
				}
				h, p = strings.Trim(hop, "[]"), ""
			}
		}
		if h == "" {
			return nil, fmt.Errorf("hop %q: empty host", hop)
		}
		j.Host = h
		if p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("hop %q: bad port %q", hop, p)
			}
			j.Port = n
		}
		out = append(out, j)
	}
	return out, nil
}

func (c *Config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

func (c *Config) withDefaults() Config {
	d := *c
	if d.Port == 0 {
		d.Port = 22
	}
	if d.ConnectTimeout <= 0 {
		d.ConnectTimeout = 10 * time.Second
	}
	if d.MaxPerConn <= 0 {
		d.MaxPerConn = 4
	}
	if d.MaxConns <= 0 {
		d.MaxConns = 8
	}
	if d.Name == "" {
		d.Name = d.Host
	}
	return d
}
