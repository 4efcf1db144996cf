package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/errs"
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
	format    string // --hosts-format
	local     string // --local N|auto
	// slots, when set (run's -j N), is the slots of each host whose
	// slots were not given, as GNU parallel's -j for its sshlogins.
	slots int
	// dir, when set, is where a relative default ./hosts.toml is looked
	// up instead of the working directory (a resumed run's directory).
	dir string
	cmd *cobra.Command // for its stderr: notes while loading
}

func (f *hostFlags) register(c *cobra.Command) {
	f.cmd = c
	fl := c.Flags()
	fl.StringVar(&f.hostsFile, "hosts", "", "hosts file: hosts.toml, an Ansible INI inventory, or one [N/][user@]host[:port] per line (pssh, GNU parallel's --sshloginfile; a host listed k times: k slots, as $PBS_NODEFILE); \"slurm\": the Slurm allocation's nodes (default $DSUB_HOSTS, then ./hosts.toml)")
	fl.StringVar(&f.local, "local", "", "also use this machine as a host, with N slots (auto: its CPUs), as GNU parallel's -S N/: (no hosts file needed)")
	fl.StringVar(&f.format, "hosts-format", "", "the hosts file's format: toml, list or ansible (default: told from its content)")
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
	if f.sshConfig != "" && f.sshConfig != "none" {
		if fi, err := os.Stat(f.sshConfig); err != nil {
			return nil, usagef("--ssh-config: %v", err)
		} else if fi.IsDir() {
			return nil, usagef("--ssh-config %s: is a directory", f.sshConfig)
		}
	}
	if f.format != "" && !slices.Contains(inventory.Formats, f.format) {
		return nil, usagef("--hosts-format %q: want one of %s", f.format, strings.Join(inventory.Formats, ", "))
	}
	if f.format != "" && (f.list != "" || f.hostsFile == "slurm" || f.hostsFile == "" && os.Getenv("DSUB_HOSTS") == "") {
		return nil, usagef("--hosts-format goes with --hosts FILE or $DSUB_HOSTS")
	}
	opts := inventory.Options{SSHConfig: f.sshConfig, Format: f.format}
	if f.cmd != nil {
		w := f.cmd.ErrOrStderr()
		opts.Note = func(msg string) { fmt.Fprintln(w, "dsub: note:", visible(msg)) }
	}
	var hosts []*inventory.Host
	var err error
	local, err := f.localHost()
	if err != nil {
		return nil, err
	}
	switch {
	case local != nil && f.list == "" && f.hostsFile == "" && os.Getenv("DSUB_HOSTS") == "":
		// --local alone: this machine is the cluster.
	case f.list != "" && f.hostsFile != "":
		return nil, usagef("-w and --hosts are alternatives: to pick hosts of a hosts file, use --on")
	case f.list != "":
		hosts, err = inventory.FromList(f.list, opts)
	case f.hostsFile == "slurm":
		// The allocation's nodes (a file named slurm: --hosts ./slurm).
		hosts, err = inventory.FromSlurm(os.Getenv, opts)
	default:
		path := f.hostsFile
		if path == "" {
			path = f.defaultPath()
		}
		if path == "" {
			return nil, errNoHosts
		}
		hosts, err = inventory.Load(path, opts)
		if err != nil && f.hostsFile != "" {
			return nil, usageError{fmt.Errorf("--hosts: %w", err)}
		}
	}
	if err != nil {
		return nil, usageError{err}
	}
	if local != nil {
		for _, h := range hosts {
			if h.Local || h.Name == local.Name {
				return nil, usagef("--local: the hosts given already have %s (%s)", h.Name, h.Source)
			}
		}
		hosts = append(hosts, local)
	}
	for _, h := range hosts {
		if f.slots > 0 && h.Slots == 0 {
			h.Slots, h.Origin.Slots = f.slots, "-j"
		}
	}
	if hosts, err = inventory.Select(hosts, "--on", f.on, f.warn); err != nil {
		return nil, usageError{err}
	}
	if hosts, err = inventory.Exclude(hosts, "-x", f.exclude); err != nil {
		return nil, usageError{err}
	}
	return hosts, nil
}

// warn prints a warning about the host selection on the command's
// stderr.
func (f *hostFlags) warn(msg string) {
	w := io.Writer(os.Stderr)
	if f.cmd != nil {
		w = f.cmd.ErrOrStderr()
	}
	fmt.Fprintln(w, "dsub: warning:", visible(msg))
}

// localHost is the host --local asks for, or nil.
func (f *hostFlags) localHost() (*inventory.Host, error) {
	switch f.local {
	case "":
		return nil, nil
	case "auto":
		return inventory.NewLocal(0, "--local"), nil
	}
	n, err := strconv.Atoi(f.local)
	if err != nil || n < 1 {
		return nil, usagef("--local %q: want a number of slots, or auto (one per CPU)", f.local)
	}
	return inventory.NewLocal(n, "--local"), nil
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
		Fanout: f.fanout, AcceptNew: f.acceptNew, FirstUseHint: "pass --accept-new to trust on first use",
		Warn: func(msg string) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stderr, "dsub: warning:", visible(msg))
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

// linePrefixer writes each line to w prefixed, as one write under w's
// lock, so lines from concurrent hosts never tear or interleave. A line
// is never split, however long: past maxLine bytes it is spilled to a
// temporary file until its newline comes, bounding memory.
type linePrefixer struct {
	w      *lockedWriter // shared by all hosts
	prefix string
	buf    []byte
	spill  *os.File // the current line, when it outgrew buf
	err    error
}

const maxLine = 64 << 10

func (p *linePrefixer) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 && p.err == nil {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i+1]
		}
		b = b[len(chunk):]
		if p.spill == nil && len(p.buf)+len(chunk) > maxLine {
			p.startSpill()
		}
		if p.spill != nil {
			if _, err := p.spill.Write(chunk); err != nil {
				p.err = fmt.Errorf("spill a long line: %w", err)
			}
		} else {
			p.buf = append(p.buf, chunk...)
		}
		if i >= 0 {
			p.emit(false)
		}
	}
	return n, p.err
}

func (p *linePrefixer) startSpill() {
	f, err := unlinkedTemp("dsub-line-*")
	if err != nil {
		p.err = fmt.Errorf("spill a long line: %w", err)
		return
	}
	if _, err := f.Write(p.buf); err != nil {
		p.err = fmt.Errorf("spill a long line: %w", err)
	}
	p.spill, p.buf = f, p.buf[:0]
}

// emit writes the current line, adding a newline if addNL.
func (p *linePrefixer) emit(addNL bool) {
	p.w.mu.Lock()
	defer p.w.mu.Unlock()
	var err error
	if p.spill == nil {
		line := append([]byte(p.prefix), p.buf...)
		if addNL {
			line = append(line, '\n')
		}
		_, err = p.w.w.Write(line)
	} else {
		bw := bufio.NewWriterSize(p.w.w, 64<<10)
		bw.WriteString(p.prefix)
		if _, err = p.spill.Seek(0, io.SeekStart); err == nil {
			_, err = io.Copy(bw, p.spill)
		}
		if addNL {
			bw.WriteByte('\n')
		}
		err = errors.Join(err, bw.Flush(), p.spill.Close())
		p.spill = nil
	}
	if err != nil && p.err == nil {
		p.err = err
	}
	p.buf = p.buf[:0]
	if cap(p.buf) > maxLine {
		p.buf = nil
	}
}

// Flush writes a final unterminated line, adding the newline.
func (p *linePrefixer) Flush() error {
	if len(p.buf) > 0 || p.spill != nil {
		p.emit(true)
	}
	return p.err
}

// plural is n and word, with an s unless n is 1: "1 host", "2 hosts".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// hostMessage is err about host, naming the host once: an error of
// dsub's vocabulary names it already ("get /x on h01: ..."), any other
// gets it as a prefix.
func hostMessage(host string, err error) string {
	var e *errs.Error
	if errors.As(err, &e) && e.Host == host {
		return visible(err.Error())
	}
	return host + ": " + visible(err.Error())
}
