package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/inventory"
)

// hostFlags are the flags every command that reaches hosts shares.
type hostFlags struct {
	hostsFile string
	list      string // -w
	exclude   string // -x
	on        string
	sshConfig string
	acceptNew bool
	fanout    int
	// dir, when set, is where a relative default ./hosts.toml is looked
	// up instead of the working directory (a resumed run's directory).
	dir string
}

func (f *hostFlags) register(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.hostsFile, "hosts", "", "hosts file: hosts.toml, or one [user@]host[:port] per line (default $DSUB_HOSTS, then ./hosts.toml)")
	fl.StringVarP(&f.list, "hosts-list", "w", "", "hosts given on the command line, pdsh style: node[01-16],admin@gw:2222 (no hosts file needed)")
	fl.StringVarP(&f.exclude, "exclude", "x", "", "leave out these hosts: names, ranges, globs (web*) or label:NAME, comma-separated")
	fl.StringVar(&f.on, "on", "", "select hosts: names, ranges (node[01-04]), globs (web*) or label:NAME, comma-separated; !ITEM excludes")
	fl.StringVar(&f.sshConfig, "ssh-config", "", "OpenSSH client config to honour, as ssh -F FILE (default ~/.ssh/config; \"none\" disables)")
	fl.BoolVar(&f.acceptNew, "accept-new", false, "trust unknown host keys on first use and record them (a changed key is always refused)")
	fl.IntVar(&f.fanout, "fanout", 64, "SSH handshakes in flight at once")
}

// errNoHosts says every way to give hosts.
var errNoHosts = usagef(`no hosts given: name them with -w 'node[01-04],user@host:port', ` +
	`a hosts file with --hosts FILE (hosts.toml or one host per line), ` +
	`or set $DSUB_HOSTS to a hosts file, or put a hosts.toml in the current directory`)

// hosts loads the selected hosts: from --hosts or -w, else $DSUB_HOSTS,
// else ./hosts.toml; then --on and -x apply. Any problem here is a
// usage/config error: nothing has run anywhere.
func (f *hostFlags) hosts() ([]*inventory.Host, error) {
	if f.fanout < 1 {
		return nil, usagef("--fanout %d: must be at least 1", f.fanout)
	}
	opts := inventory.Options{SSHConfig: f.sshConfig}
	var hosts []*inventory.Host
	var err error
	switch {
	case f.list != "" && f.hostsFile != "":
		return nil, usagef("-w and --hosts are alternatives: to pick hosts of a hosts file, use --on")
	case f.list != "":
		hosts, err = inventory.FromList(f.list, opts)
	default:
		path := f.hostsFile
		if path == "" {
			path = f.defaultPath()
		}
		if path == "" {
			return nil, errNoHosts
		}
		hosts, err = inventory.Load(path, opts)
	}
	if err != nil {
		return nil, usageError{err}
	}
	if hosts, err = inventory.Select(hosts, f.on); err != nil {
		return nil, usageError{err}
	}
	if hosts, err = inventory.Exclude(hosts, f.exclude); err != nil {
		return nil, usageError{err}
	}
	return hosts, nil
}

func (f *hostFlags) defaultPath() string {
	if f.dir == "" || os.Getenv("DSUB_HOSTS") != "" {
		return inventory.DefaultPath()
	}
	p := filepath.Join(f.dir, "hosts.toml")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// cluster loads the selected hosts (see hosts) and prepares connections.
func (f *hostFlags) cluster(stderr io.Writer) (*distributor.Cluster, error) {
	hosts, err := f.hosts()
	if err != nil {
		return nil, err
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
