package distributor

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/remote"
)

// ClusterOptions configure how a Cluster reaches its hosts.
type ClusterOptions struct {
	// Fanout limits SSH handshakes in flight (default 64).
	Fanout int
	// AcceptNew trusts unknown hosts on first use (never a changed key).
	AcceptNew bool
	// FirstUseHint tells the user how to trust a key on first use (see
	// remote.Dialer).
	FirstUseHint string
	// Warn receives non-fatal notices; nil discards them.
	Warn func(msg string)
}

// Member is one host of a Cluster: its inventory entry and how commands
// reach it.
type Member struct {
	Inv  *inventory.Host
	Host remote.Host
	// Timeout bounds one connection attempt (and a liveness beat).
	Timeout time.Duration
}

// Name is the member's display name.
func (m *Member) Name() string { return m.Inv.Name }

// Cluster is a set of hosts. NewCluster reaches them through one shared
// remote.Dialer, so that handshake admission, keys and jump-host
// connections are shared; connections open lazily and persist until
// Close. NewClusterOf takes hosts of any implementation.
type Cluster struct {
	dialer  *remote.Dialer // nil for NewClusterOf
	members []*Member
}

// NewCluster prepares hosts; it does not connect.
func NewCluster(hosts []*inventory.Host, opts ClusterOptions) (*Cluster, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts selected")
	}
	d := &remote.Dialer{Fanout: opts.Fanout, AcceptNew: opts.AcceptNew, FirstUseHint: opts.FirstUseHint, Warn: opts.Warn}
	c := &Cluster{dialer: d}
	for _, h := range hosts {
		if h.Local {
			c.members = append(c.members, &Member{Inv: h, Host: remote.NewLocalHost(h.Name), Timeout: 10 * time.Second})
			continue
		}
		cfg, err := h.Remote()
		if err != nil {
			return nil, err
		}
		sh := d.Host(cfg)
		c.members = append(c.members, &Member{Inv: h, Host: sh, Timeout: sh.Config().ConnectTimeout})
	}
	return c, nil
}

// NewClusterOf makes a cluster of the given members, whatever their Host
// implementation. A member without a Timeout gets 10 s.
func NewClusterOf(members []*Member) (*Cluster, error) {
	if len(members) == 0 {
		return nil, errors.New("no hosts selected")
	}
	for _, m := range members {
		if m.Timeout == 0 {
			m.Timeout = 10 * time.Second
		}
	}
	return &Cluster{members: members}, nil
}

// Members lists the hosts in inventory order.
func (c *Cluster) Members() []*Member { return c.members }

// Close closes every connection.
func (c *Cluster) Close() error {
	for _, m := range c.members {
		m.Host.Close()
	}
	if c.dialer == nil {
		return nil
	}
	return c.dialer.Close()
}

// each runs f for every member at once and waits. A failing host never
// stops the others: f reports through its own result slot.
func (c *Cluster) each(ctx context.Context, f func(ctx context.Context, i int, m *Member)) {
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(ctx, i, m)
			// Its part done: its connections go (a later command dials
			// again), so that many hosts never hold as many at once.
			if r, ok := m.Host.(interface{ Release() }); ok {
				r.Release()
			}
		}()
	}
	wg.Wait()
}

// Unreachable reports whether err means the host could not be reached or
// logged into, as opposed to a command failing on it.
func Unreachable(err error) bool {
	var e *errs.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Op == errs.OpConnect || e.Kind == errs.KindTransport || e.Kind == errs.KindAuth || e.Kind == errs.KindHostKey
}
