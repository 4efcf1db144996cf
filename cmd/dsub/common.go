package main

import (
	"fmt"
	"io"
	"sync"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
)

// hostFlags are the flags every command that reaches hosts shares.
type hostFlags struct {
	hostsFile string
	on        string
	sshConfig string
	acceptNew bool
	fanout    int
}

func (f *hostFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.hostsFile, "hosts", "", "hosts file (default ./hosts.toml, then $DSUB_HOSTS)")
	fl.StringVar(&f.on, "on", "", "select hosts: names, ranges (node[01-04]) or label:NAME, comma-separated")
	fl.StringVar(&f.sshConfig, "ssh-config", "", "OpenSSH client config to honour (default ~/.ssh/config; \"none\" disables)")
	fl.BoolVar(&f.acceptNew, "accept-new", false, "trust unknown host keys on first use and record them (a changed key is always refused)")
	fl.IntVar(&f.fanout, "fanout", 64, "SSH handshakes in flight at once")
}

// cluster loads the hosts file, applies --on, and prepares connections.
// Any problem here is a usage/config error: nothing has run anywhere.
func (f *hostFlags) cluster(stderr io.Writer) (*distributor.Cluster, error) {
	path := f.hostsFile
	if path == "" {
		path = inventory.DefaultPath()
	}
	hosts, err := inventory.Load(path, inventory.Options{SSHConfig: f.sshConfig})
	if err != nil {
		return nil, usageError{err}
	}
	hosts, err = inventory.Select(hosts, f.on)
	if err != nil {
		return nil, usageError{err}
	}
	if f.fanout < 1 {
		return nil, usagef("--fanout must be at least 1")
	}
	var mu sync.Mutex
	c, err := distributor.NewCluster(hosts, distributor.ClusterOptions{
		Fanout: f.fanout, AcceptNew: f.acceptNew,
		Warn: func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stderr, "dsub: warning:", msg)
		},
	})
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// lockedWriter serialises writes to w; each Write lands whole.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// swap redirects later writes to w.
func (l *lockedWriter) swap(w io.Writer) {
	l.mu.Lock()
	l.w = w
	l.mu.Unlock()
}

// linePrefixer writes each complete line to w as one Write, prefixed, so
// lines from concurrent hosts never tear or interleave mid-line. A line
// longer than maxLine is cut into pieces, bounding memory.
type linePrefixer struct {
	w      io.Writer // a lockedWriter shared by all hosts
	prefix string
	buf    []byte
}

const maxLine = 64 << 10

func (p *linePrefixer) Write(b []byte) (int, error) {
	n := len(b)
	p.buf = append(p.buf, b...)
	var out []byte
	for {
		i := indexByte(p.buf, '\n')
		if i < 0 && len(p.buf) >= maxLine {
			i = maxLine - 1
			out = append(out, p.prefix...)
			out = append(out, p.buf[:i+1]...)
			out = append(out, '\n')
			p.buf = p.buf[i+1:]
			continue
		}
		if i < 0 {
			break
		}
		out = append(out, p.prefix...)
		out = append(out, p.buf[:i+1]...)
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) == 0 {
		p.buf = nil
	}
	if len(out) > 0 {
		if _, err := p.w.Write(out); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Flush writes a final unterminated line, adding the newline.
func (p *linePrefixer) Flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	line := append([]byte(p.prefix), p.buf...)
	p.buf = nil
	_, err := p.w.Write(append(line, '\n'))
	return err
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
