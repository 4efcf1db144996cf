// Package inventory loads hosts.toml, dsub's list of hosts and how to reach
// them, and selects hosts from it. Parsing goes from an io.Reader, over
// built-in defaults and any matching ~/.ssh/config entry, to validation;
// every error names the file and, where TOML gives one, the line. A file
// with any error yields no hosts at all, so nothing runs on a bad config.
package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/internal/hostrange"
	"github.com/dsub-dev/dsub/remote"
)

// Host is one host of the inventory, fully resolved.
type Host struct {
	Name           string        // unique display name
	Address        string        // host to connect to (after ssh_config HostName)
	Port           int           // TCP port
	User           string        // login user
	IdentityFiles  []string      // private keys, ~ expanded
	IdentitiesOnly bool          // use only IdentityFiles, not every agent key
	KnownHosts     []string      // known_hosts files, ~ expanded
	Slots          int           // concurrent jobs; 0 = the host's CPU count
	Workdir        string        // dsub's directory on the host ("~/" = home)
	ConnectTimeout time.Duration // TCP + handshake + auth
	Keepalive      time.Duration // keepalive interval; 0 disables
	ProxyJump      string        // "user@bastion:port[,next...]"
	// Jumps are the ProxyJump hops, each resolved as its own host
	// through the OpenSSH config (HostName, User, Port, IdentityFile),
	// as ssh does; nil: ProxyJump parsed as written.
	Jumps  []remote.Jump
	Labels []string
	// Local: the master's own machine (address "local", or ":" in a host
	// list as in GNU parallel): jobs run as local processes, no SSH.
	Local  bool
	Source string // "file:line" of the [[host]] entry
	// Origin says where Address, User, Port and Slots came from.
	Origin Origin
}

// Origin says where each of a host's main settings came from, as
// `dsub hosts` shows it: "FILE:LINE" (its entry or line), "FILE
// [defaults]", "-w ITEM", "$SLURM_JOB_NODELIST", "ssh_config" or
// "built-in".
type Origin struct {
	Address, User, Port, Slots string
}

// Remote returns the connection settings of h for package remote.
func (h *Host) Remote() (remote.Config, error) {
	jumps, err := remote.ParseProxyJump(h.ProxyJump)
	if h.Jumps != nil {
		jumps = h.Jumps
	}
	if err != nil {
		return remote.Config{}, errs.Config(h.Source, fmt.Sprintf("host %q: proxy_jump: %v", h.Name, err))
	}
	return remote.Config{
		Name: h.Name, Host: h.Address, Port: h.Port, User: h.User,
		IdentityFiles: h.IdentityFiles, IdentitiesOnly: h.IdentitiesOnly,
		KnownHosts: h.KnownHosts, ConnectTimeout: h.ConnectTimeout,
		Keepalive: h.Keepalive, ProxyJump: jumps,
	}, nil
}

// IsConfigError reports whether err is a problem in what the user
// wrote: a hosts file's, a host list's, an ssh config's.
func IsConfigError(err error) bool { return errs.KindOf(err) == errs.KindConfig }

type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("bad duration %q (use e.g. \"10s\", \"500ms\", \"2m\")", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// settings are the keys allowed in [defaults] and in each [[host]]. A nil
// field was not set.
type settings struct {
	User           *string   `toml:"user"`
	Port           *int      `toml:"port"`
	IdentityFiles  *[]string `toml:"identity_files"`
	IdentitiesOnly *bool     `toml:"identities_only"`
	KnownHosts     *[]string `toml:"known_hosts"`
	Slots          *int      `toml:"slots"`
	Workdir        *string   `toml:"workdir"`
	ConnectTimeout *duration `toml:"connect_timeout"`
	Keepalive      *duration `toml:"keepalive"`
	ProxyJump      *string   `toml:"proxy_jump"`
	Labels         *[]string `toml:"labels"`
	// SSHConfig is the OpenSSH client config for every host of the file
	// (only in [defaults]); a relative path is relative to the file.
	SSHConfig *string `toml:"ssh_config"`
}

type hostEntry struct {
	Address *string `toml:"address"`
	Name    *string `toml:"name"`
	settings
}

type file struct {
	Defaults settings    `toml:"defaults"`
	Host     []hostEntry `toml:"host"`
}

// Options adjust loading.
type Options struct {
	// SSHConfig is the OpenSSH client config consulted for HostName,
	// User, Port, IdentityFile, IdentitiesOnly and ProxyJump: "" means
	// ~/.ssh/config, "none" disables it. Values in hosts.toml win.
	SSHConfig string
	// Home is the local home directory for "~" (default: $HOME).
	Home string
	// LocalUser is the default login user (default: $USER).
	LocalUser string
	// BaseDir resolves relative local paths in the file (identity_files,
	// known_hosts, ssh_config): Load sets it to the file's directory.
	BaseDir string
	// Format is the hosts file's format: "" (told from its content),
	// "toml", "list" (a plain host list: pssh, GNU parallel's
	// --sshloginfile, a PBS nodefile) or "ansible" (an INI inventory).
	Format string
	// Note, if set, is told what was read but not used (Ansible
	// variables dsub ignores).
	Note func(string)
}

// fill sets the defaults of unset options.
func (o *Options) fill() {
	if o.Home == "" {
		o.Home, _ = os.UserHomeDir()
	}
	if o.LocalUser == "" {
		o.LocalUser = os.Getenv("USER")
		if o.LocalUser == "" {
			o.LocalUser = "root"
		}
	}
}

// Load reads and parses the hosts file at path: hosts.toml, a plain host
// list (see ParseList) or an Ansible inventory (see ParseAnsible), told
// apart by DetectFormat unless opts.Format says which. Relative paths in
// the file resolve against its directory.
func Load(path string, opts Options) ([]*Host, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		msg := err.Error()
		if u := errors.Unwrap(err); u != nil {
			msg = u.Error()
		}
		return nil, errs.Config(path, "cannot read hosts file: "+msg)
	}
	if opts.BaseDir == "" {
		opts.BaseDir = filepath.Dir(path)
	}
	format := opts.Format
	if format == "" {
		format = DetectFormat(path, b)
	}
	switch format {
	case "toml":
		return Parse(bytes.NewReader(b), path, opts)
	case "list":
		return ParseList(bytes.NewReader(b), path, opts)
	case "ansible":
		return ParseAnsible(bytes.NewReader(b), path, opts)
	}
	return nil, errs.Config(path, fmt.Sprintf("unknown hosts file format %q: want toml, list or ansible", format))
}

// DefaultPath is the hosts file used when no --hosts or -w is given:
// $DSUB_HOSTS if set, else ./hosts.toml if it exists, else "".
func DefaultPath() string {
	if p := os.Getenv("DSUB_HOSTS"); p != "" {
		return p
	}
	if _, err := os.Stat("hosts.toml"); err == nil {
		return "hosts.toml"
	}
	return ""
}

// LocalAddress is the address of the master's own machine as a host.
const LocalAddress = "local"

// NewLocal is the master's own machine as a host named "local", with
// slots (0: its CPUs); src is where it was asked for (the CLI's flag),
// shown as its source.
func NewLocal(slots int, src string) *Host {
	opts := Options{}
	opts.fill()
	h := builtinDefaults(opts)
	h.Name, h.Address, h.Local, h.Slots = LocalAddress, LocalAddress, true, slots
	h.Source, h.Origin.Address = src, src
	if slots > 0 {
		h.Origin.Slots = src
	}
	return &h.Host
}

// Formats are the hosts file formats, for --hosts-format.
var Formats = []string{"toml", "list", "ansible"}

var (
	ansibleSection = regexp.MustCompile(`^\s*\[[A-Za-z0-9_.-]+(:(vars|children))?\]\s*$`)
	ansibleVarLine = regexp.MustCompile(`(^|\s)ansible_[a-z_]+=`)
)

// DetectFormat tells a hosts file's format from its name and content:
// "toml" for a name ending in .toml, or a [[host]] or [defaults] header,
// or a key = value line; "ansible" for a name ending in .ini, an
// [group] section that is not TOML's, or an ansible_*= variable; else
// "list". Ansible is looked for first: its [g:vars] lines look like TOML.
func DetectFormat(name string, data []byte) string {
	switch {
	case strings.HasSuffix(name, ".toml"):
		return "toml"
	case strings.HasSuffix(name, ".ini"):
		return "ansible"
	}
	format := "list"
	for _, l := range strings.Split(string(data), "\n") {
		switch {
		case ansibleVarLine.MatchString(l) || ansibleSection.MatchString(l) && !tomlHeader.MatchString(l):
			return "ansible"
		case tomlLine.MatchString(l):
			format = "toml" // unless a later line is Ansible's
		}
	}
	return format
}

var tomlHeader = regexp.MustCompile(`^\s*\[\[?\s*(host|defaults)\s*\]`)

// tomlLine is a [[host]] or [defaults] header or a "key = value" line.
var tomlLine = regexp.MustCompile(`^\s*(\[\[?\s*(host|defaults)\s*\]|[A-Za-z_][A-Za-z0-9_-]*\s*=)`)

var tomlLineErr = regexp.MustCompile(`^toml: line (\d+) \(last key ("[^"]*")\): (.*)$`)

var hostHeader = regexp.MustCompile(`^\s*\[\[\s*host\s*\]\]`)

// Parse reads a hosts file from r; name is used in messages.
func Parse(r io.Reader, name string, opts Options) ([]*Host, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, errs.Config(name, err.Error())
	}
	opts.fill()
	f, lines, err := decodeFile(data, name)
	if err != nil {
		return nil, err
	}
	var headers []int   // the [[host]] lines
	sections := []int{} // every [section] line, for where an entry ends
	defaultsAt := 0
	for i, l := range lines {
		if hostHeader.MatchString(l) {
			headers = append(headers, i+1)
		}
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "[") {
			sections = append(sections, i+1)
			if strings.HasPrefix(t, "[defaults]") {
				defaultsAt = i + 1
			}
		}
	}
	// at is the "file:line" of key in the entry whose header is on line
	// from (its lines run to the next section), else fallback.
	at := func(from int, fallback string) func(string) string {
		return func(key string) string {
			to := len(lines) + 1
			for _, sl := range sections {
				if sl > from {
					to = sl
					break
				}
			}
			if l := keyLineIn(lines, key, from, to); l > 0 {
				return fmt.Sprintf("%s:%d", name, l)
			}
			return fallback
		}
	}
	if len(f.Host) == 0 {
		return nil, errs.Config(name, "no hosts: add at least one [[host]] with an address")
	}

	var problems errs.List
	base := builtinDefaults(opts)
	if err := validate(&f.Defaults, at(defaultsAt, name+" [defaults]")); err != nil {
		problems = append(problems, err)
	}
	base.apply(&f.Defaults, name+" [defaults]", opts)
	if f.Defaults.SSHConfig != nil && opts.SSHConfig == "" {
		// --ssh-config wins over the file's.
		opts.SSHConfig = resolve(*f.Defaults.SSHConfig, opts)
	}

	var all []*hostState
	where := map[string]string{}
	for i, e := range f.Host {
		src, from := name, 0
		if i < len(headers) {
			src, from = fmt.Sprintf("%s:%d", name, headers[i]), headers[i]
		}
		hs, es := expandEntry(e, src, at(from, src), base, opts, where)
		all, problems = append(all, hs...), append(problems, es...)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return finish(all, opts)
}

// decodeFile decodes a hosts.toml, refusing unknown keys, and returns it
// with its lines.
func decodeFile(data []byte, name string) (*file, []string, error) {
	var f file
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, nil, errs.Config(fmt.Sprintf("%s:%d", name, pe.Position.Line), tomlMsg(pe))
		}
		// Type mismatches come as plain errors: "toml: line N (last key K): msg".
		if m := tomlLineErr.FindStringSubmatch(err.Error()); m != nil {
			return nil, nil, errs.Config(name+":"+m[1], fmt.Sprintf("key %s: %s", m[2], m[3]))
		}
		return nil, nil, errs.Config(name, err.Error())
	}
	lines := strings.Split(string(data), "\n")
	var problems errs.List
	for _, k := range md.Undecoded() {
		key := k[len(k)-1]
		msg := fmt.Sprintf("unknown key %q", k.String())
		switch strings.ToLower(key) {
		case "password", "passphrase", "pass":
			msg += " (passwords are not supported: use keys or ssh-agent)"
		default:
			msg += " (known keys: address, name, user, port, identity_files, identities_only, known_hosts, slots, workdir, connect_timeout, keepalive, proxy_jump, labels, ssh_config)"
		}
		problems = append(problems, errs.Config(fmt.Sprintf("%s:%d", name, keyLine(lines, key)), msg))
	}
	if len(problems) > 0 {
		return nil, nil, problems
	}
	return &f, lines, nil
}

// expandEntry turns one [[host]] entry (at src) into hosts: its address
// and name ranges expanded, the defaults base under its settings. where
// maps the names taken so far to their source, for duplicates.
func expandEntry(e hostEntry, src string, at func(key string) string, base *hostState, opts Options, where map[string]string) ([]*hostState, errs.List) {
	if err := validate(&e.settings, at); err != nil {
		return nil, errs.List{err}
	}
	if e.SSHConfig != nil {
		return nil, errs.List{errs.Config(src, "ssh_config belongs in [defaults]: one OpenSSH config serves the whole file")}
	}
	if e.Address == nil || strings.TrimSpace(*e.Address) == "" {
		return nil, errs.List{errs.Config(src, "host entry has no address")}
	}
	addrs, err := hostrange.Expand(*e.Address)
	if err != nil {
		return nil, errs.List{errs.Config(src, "address: "+err.Error())}
	}
	names := addrs
	if e.Name != nil {
		names, err = hostrange.Expand(*e.Name)
		if err != nil {
			return nil, errs.List{errs.Config(src, "name: "+err.Error())}
		}
		if len(names) != len(addrs) {
			return nil, errs.List{errs.Config(src, fmt.Sprintf("name %q gives %d names for %d addresses: a range address needs a range name of the same size", *e.Name, len(names), len(addrs)))}
		}
	}
	var out []*hostState
	var problems errs.List
	for j, a := range addrs {
		h := base.clone()
		h.apply(&e.settings, src, opts)
		h.Source, h.Origin.Address = src, src
		if a == LocalAddress {
			h.Local = true
		}
		host, port, err := splitAddress(a)
		if err != nil {
			problems = append(problems, errs.Config(src, err.Error()))
			continue
		}
		h.Address = host
		if port != 0 {
			if e.Port != nil && *e.Port != port {
				problems = append(problems, errs.Config(src, fmt.Sprintf("address %q has port %d but port = %d", a, port, *e.Port)))
				continue
			}
			h.Port, h.Origin.Port = port, src
			h.set["port"] = true
		}
		h.Name = names[j]
		if e.Name == nil && port == 0 {
			h.Name = host
		}
		if prev, dup := where[h.Name]; dup {
			problems = append(problems, errs.Config(src, fmt.Sprintf("duplicate host name %q (also at %s)", h.Name, prev)))
			continue
		}
		where[h.Name] = src
		out = append(out, h)
	}
	return out, problems
}

// finish applies the OpenSSH config to hosts and checks what only the
// whole list shows.
func finish(all []*hostState, opts Options) ([]*Host, error) {
	opts.fill()
	if err := applySSHConfig(all, opts); err != nil {
		return nil, err
	}
	hosts := make([]*Host, len(all))
	dirs := map[string]*hostState{}
	var problems errs.List
	for i, h := range all {
		hosts[i] = &h.Host
		// Host names become local directory and file names (get, exec
		// --out): two that map to one name would lose files.
		d := DirName(h.Name)
		if prev := dirs[d]; prev != nil {
			problems = append(problems, errs.Config(h.Source, fmt.Sprintf("host names %q (%s) and %q both become the directory name %q: rename one", prev.Name, prev.Source, h.Name, d)))
			continue
		}
		dirs[d] = h
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return hosts, nil
}

// DirName makes a host name usable as one local path element: what
// get, exec --out and the run records name a host's files by. finish
// refuses two hosts with one DirName.
func DirName(n string) string {
	n = strings.NewReplacer("/", "_", "\\", "_", "\x00", "_").Replace(n)
	if n == "." || n == ".." || n == "" {
		n = "_" + n
	}
	return n
}

func tomlMsg(pe toml.ParseError) string {
	msg := pe.Message
	if pe.LastKey != "" {
		msg = fmt.Sprintf("key %q: %s", pe.LastKey, msg)
	}
	return msg
}

// keyLineIn finds the first line assigning key among lines from..to-1
// (1-based), or 0.
func keyLineIn(lines []string, key string, from, to int) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i := max(from, 1); i < to && i <= len(lines); i++ {
		if re.MatchString(lines[i-1]) {
			return i
		}
	}
	return 0
}

// keyLine finds the first line assigning key, or 0.
func keyLine(lines []string, key string) int {
	re := regexp.MustCompile(`^\s*"?` + regexp.QuoteMeta(key) + `"?\s*=`)
	for i, l := range lines {
		if re.MatchString(l) {
			return i + 1
		}
	}
	return 0
}

// validate checks an entry's settings; at gives the "file:line" of one
// of its keys (the entry's own line when it cannot tell), so that an
// error points at the offending line.
func validate(s *settings, at func(key string) string) *errs.Error {
	bad := func(key, f string, a ...any) *errs.Error { return errs.Config(at(key), fmt.Sprintf(f, a...)) }
	switch {
	case s.Port != nil && (*s.Port < 1 || *s.Port > 65535):
		return bad("port", "port %d out of range 1-65535", *s.Port)
	case s.Slots != nil && *s.Slots < 0:
		return bad("slots", "slots %d: must be 0 (the host's CPU count) or more", *s.Slots)
	case s.ConnectTimeout != nil && s.ConnectTimeout.Duration == 0:
		return bad("connect_timeout", "connect_timeout must be positive")
	case s.User != nil && *s.User == "":
		return bad("user", "user is empty")
	case s.Workdir != nil && *s.Workdir == "":
		return bad("workdir", "workdir is empty")
	case s.Workdir != nil && unsafeWorkdir(*s.Workdir) != "":
		return bad("workdir", "workdir %q: %s; dsub keeps its cache and runs there and cleans them: use a directory of its own, such as \"~/.cache/dsub\"", *s.Workdir, unsafeWorkdir(*s.Workdir))
	}
	if s.ProxyJump != nil {
		if _, err := remote.ParseProxyJump(*s.ProxyJump); err != nil {
			return bad("proxy_jump", "proxy_jump: %v", err)
		}
	}
	if s.Labels != nil {
		for _, l := range *s.Labels {
			if l == "" || strings.ContainsAny(l, ", \t") {
				return bad("labels", "label %q: labels are non-empty words without commas or spaces", l)
			}
		}
	}
	return nil
}

// unsafeWorkdir says why w cannot be dsub's workdir, or "": the home
// directory, the root, a top-level directory or a system directory.
func unsafeWorkdir(w string) string {
	c := path.Clean(strings.TrimSpace(w))
	switch {
	case c == "~" || c == "." || c == ".." || strings.HasPrefix(c, "../"):
		return "it is the home directory or outside it"
	case c == "/":
		return "it is the root directory"
	case strings.HasPrefix(c, "/") && strings.Count(c, "/") == 1:
		return "it is a top-level directory"
	case strings.HasPrefix(c, "/home/") && strings.Count(c, "/") == 2, strings.HasPrefix(c, "/Users/") && strings.Count(c, "/") == 2:
		return "it is a home directory"
	}
	for _, sys := range []string{"/usr", "/etc", "/var", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/dev", "/proc", "/sys", "/run", "/opt", "/srv"} {
		if strings.HasPrefix(c, sys+"/") && strings.Count(c, "/") == 2 {
			return "it is a system directory"
		}
	}
	return ""
}

// hostState is a Host plus which fields hosts.toml set explicitly (those
// win over ~/.ssh/config).
type hostState struct {
	Host
	set map[string]bool
}

func builtinDefaults(opts Options) *hostState {
	h := &hostState{set: map[string]bool{}}
	h.User = opts.LocalUser
	h.Port = 22
	for _, k := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		h.IdentityFiles = append(h.IdentityFiles, filepath.Join(opts.Home, ".ssh", k))
	}
	h.KnownHosts = []string{filepath.Join(opts.Home, ".ssh", "known_hosts")}
	h.Workdir = "~/.cache/dsub"
	h.ConnectTimeout = 10 * time.Second
	h.Keepalive = 5 * time.Second
	h.Origin = Origin{User: "built-in (you)", Port: "built-in", Slots: "built-in (its CPUs)"}
	return h
}

func (h *hostState) clone() *hostState {
	c := &hostState{Host: h.Host, set: map[string]bool{}}
	for k, v := range h.set {
		c.set[k] = v
	}
	c.IdentityFiles = append([]string(nil), h.IdentityFiles...)
	c.KnownHosts = append([]string(nil), h.KnownHosts...)
	c.Labels = append([]string(nil), h.Labels...)
	return c
}

// resolve expands "~" and makes a relative local path relative to the
// hosts file's directory.
func resolve(p string, opts Options) string {
	p = ExpandHome(p, opts.Home)
	if p != "" && !filepath.IsAbs(p) && opts.BaseDir != "" {
		p = filepath.Join(opts.BaseDir, p)
	}
	return p
}

func resolveAll(ps []string, opts Options) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = resolve(p, opts)
	}
	return out
}

// apply sets what s sets, found at src.
func (h *hostState) apply(s *settings, src string, opts Options) {
	if s.User != nil {
		h.User, h.set["user"], h.Origin.User = *s.User, true, src
	}
	if s.Port != nil {
		h.Port, h.set["port"], h.Origin.Port = *s.Port, true, src
	}
	if s.IdentityFiles != nil {
		h.IdentityFiles, h.set["identity_files"] = resolveAll(*s.IdentityFiles, opts), true
	}
	if s.IdentitiesOnly != nil {
		h.IdentitiesOnly, h.set["identities_only"] = *s.IdentitiesOnly, true
	}
	if s.KnownHosts != nil {
		h.KnownHosts, h.set["known_hosts"] = resolveAll(*s.KnownHosts, opts), true
	}
	if s.Slots != nil {
		h.Slots, h.Origin.Slots = *s.Slots, src
	}
	if s.Workdir != nil {
		h.Workdir = *s.Workdir
	}
	if s.ConnectTimeout != nil {
		h.ConnectTimeout = s.ConnectTimeout.Duration
	}
	if s.Keepalive != nil {
		h.Keepalive = s.Keepalive.Duration
	}
	if s.ProxyJump != nil {
		h.ProxyJump, h.set["proxy_jump"] = *s.ProxyJump, true
	}
	if s.Labels != nil {
		h.Labels = append([]string(nil), *s.Labels...)
	}
}

// ExpandHome expands a leading "~/" (or "~") in a local path.
func ExpandHome(p, home string) string {
	if p == "~" {
		return home
	}
	if strings.HasPrefix(p, "~/") {
		return filepath.Join(home, p[2:])
	}
	return p
}

func expandAll(ps []string, home string) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = ExpandHome(p, home)
	}
	return out
}

// splitAddress splits "host", "host:port", "IP", "[v6]:port" or a bare
// IPv6 address. port is 0 when none is given.
func splitAddress(a string) (string, int, error) {
	if strings.HasPrefix(a, "[") {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			if strings.HasSuffix(a, "]") {
				return a[1 : len(a)-1], 0, nil
			}
			return "", 0, fmt.Errorf("address %q: %v", a, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("address %q: bad port %q", a, p)
		}
		return h, n, nil
	}
	if strings.Count(a, ":") > 1 { // bare IPv6
		if net.ParseIP(a) == nil {
			return "", 0, fmt.Errorf("address %q: not a valid IPv6 address (write [addr]:port)", a)
		}
		return a, 0, nil
	}
	h, p, ok := strings.Cut(a, ":")
	if !ok {
		return a, 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 1 || n > 65535 || h == "" {
		return "", 0, fmt.Errorf("address %q: bad host or port", a)
	}
	return h, n, nil
}
