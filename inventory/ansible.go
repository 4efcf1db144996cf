package inventory

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/internal/hostrange"
)

// ParseAnsible reads an Ansible INI inventory:
//
//	mail.example.com
//	[web]
//	web[01:20].example.com ansible_user=deploy
//	db ansible_host=10.0.0.5 ansible_port=2222
//	[web:vars]
//	ansible_user=www
//	[prod:children]
//	web
//
// Groups become labels (--on label:web), [G:children] included: a host
// in web is also in prod. ansible_host, ansible_user, ansible_port (and
// their old ansible_ssh_ forms), ansible_ssh_private_key_file and
// dsub_slots are honoured, a host's own over its groups', a child group's
// over its parent's, every group's over [all:vars]. Other variables are
// ignored, with one note through opts.Note. Ranges are Ansible's:
// [01:20], [1:9:2] (a stride), [a:f].
func ParseAnsible(r io.Reader, name string, opts Options) ([]*Host, error) {
	p := &ansibleParser{name: name, groups: map[string]*ansibleGroup{}, hosts: map[string]*ansibleHost{}, ignored: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		p.line(strings.TrimSpace(sc.Text()), fmt.Sprintf("%s:%d", name, n))
	}
	if err := sc.Err(); err != nil {
		return nil, errs.Config(name, err.Error())
	}
	if len(p.problems) > 0 {
		return nil, p.problems
	}
	if len(p.order) == 0 {
		return nil, errs.Config(name, "no hosts in the Ansible inventory")
	}
	all, err := p.build(opts)
	if err != nil {
		return nil, err
	}
	if len(p.ignored) > 0 && opts.Note != nil {
		var vars []string
		for v := range p.ignored {
			vars = append(vars, v)
		}
		sort.Strings(vars)
		opts.Note(fmt.Sprintf("%s: Ansible variables dsub does not use were ignored: %s", name, strings.Join(vars, ", ")))
	}
	return finish(all, opts)
}

type ansibleParser struct {
	name     string
	section  string // "group", "group:vars" or "group:children"; "" before any
	groups   map[string]*ansibleGroup
	hosts    map[string]*ansibleHost
	order    []string // host names, as first listed
	ignored  map[string]bool
	problems errs.List
}

type ansibleGroup struct {
	name     string
	hosts    []string
	children []string
	vars     []ansibleVar
	src      string
}

type ansibleHost struct {
	src  string // where it was first listed
	vars []ansibleVar
}

type ansibleVar struct{ key, value, src string }

var (
	sectionLine = regexp.MustCompile(`^\[([A-Za-z0-9_.-]+)(?::(vars|children))?\]$`)
	ansibleKey  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

func (p *ansibleParser) fail(src, format string, args ...any) {
	p.problems = append(p.problems, errs.Config(src, fmt.Sprintf(format, args...)))
}

func (p *ansibleParser) group(name, src string) *ansibleGroup {
	g := p.groups[name]
	if g == nil {
		g = &ansibleGroup{name: name, src: src}
		p.groups[name] = g
	}
	return g
}

// line reads one line of the inventory, found at src.
func (p *ansibleParser) line(l, src string) {
	if l == "" || l[0] == '#' || l[0] == ';' {
		return
	}
	if l[0] == '[' {
		m := sectionLine.FindStringSubmatch(l)
		if m == nil {
			p.fail(src, "%q: want a section [group], [group:vars] or [group:children]", l)
			return
		}
		p.section = m[1]
		if m[2] != "" {
			p.section += ":" + m[2]
		}
		p.group(m[1], src)
		return
	}
	group, kind, _ := strings.Cut(p.section, ":")
	switch kind {
	case "vars":
		k, v, ok := strings.Cut(l, "=")
		k = strings.TrimSpace(k)
		if !ok || !ansibleKey.MatchString(k) {
			p.fail(src, "%q: in [%s], want name=value", l, p.section)
			return
		}
		p.group(group, src).vars = append(p.group(group, src).vars, ansibleVar{k, unquote(strings.TrimSpace(v)), src})
	case "children":
		if strings.ContainsAny(l, " \t=") {
			p.fail(src, "%q: in [%s], want one group name per line", l, p.section)
			return
		}
		g := p.group(group, src)
		g.children = append(g.children, l)
	default:
		p.hostLine(l, src, group)
	}
}

// hostLine reads "pattern [key=value ...]" in group ("" before any).
func (p *ansibleParser) hostLine(l, src, group string) {
	fields, err := splitAnsibleFields(l)
	if err != nil {
		p.fail(src, "%q: %v", l, err)
		return
	}
	var vars []ansibleVar
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		if !ok || !ansibleKey.MatchString(k) {
			p.fail(src, "%q: after the host, want name=value, not %q", l, f)
			return
		}
		vars = append(vars, ansibleVar{k, unquote(v), src})
	}
	names, err := expandAnsibleRange(fields[0])
	if err != nil {
		p.fail(src, "%q: %v", fields[0], err)
		return
	}
	for _, n := range names {
		h := p.hosts[n]
		if h == nil {
			h = &ansibleHost{src: src}
			p.hosts[n] = h
			p.order = append(p.order, n)
		}
		h.vars = append(h.vars, vars...)
		if group != "" {
			g := p.group(group, src)
			g.hosts = append(g.hosts, n)
		}
	}
}

// splitAnsibleFields splits at blanks outside quotes.
func splitAnsibleFields(l string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quote := byte(0)
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
			cur.WriteByte(c)
		case c == '"' || c == '\'':
			quote = c
			cur.WriteByte(c)
		case c == '#' && cur.Len() == 0:
			i = len(l) // a comment
		case c == ' ' || c == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteByte(c)
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unclosed %c", quote)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

var ansibleRange = regexp.MustCompile(`\[([^\]]*)\]`)

// expandAnsibleRange expands Ansible's host ranges: [01:20] (padded as
// its start), [1:9:2] (a stride) and [a:f] (letters), several in one
// name giving every combination.
func expandAnsibleRange(pattern string) ([]string, error) {
	out := []string{""}
	last := 0
	for _, m := range ansibleRange.FindAllStringSubmatchIndex(pattern, -1) {
		vals, err := ansibleRangeValues(pattern[m[2]:m[3]])
		if err != nil {
			return nil, err
		}
		if len(out)*len(vals) > hostrange.MaxHosts {
			return nil, fmt.Errorf("expands to more than %d hosts", hostrange.MaxHosts)
		}
		var next []string
		for _, o := range out {
			for _, v := range vals {
				next = append(next, o+pattern[last:m[0]]+v)
			}
		}
		out, last = next, m[1]
	}
	for i := range out {
		out[i] += pattern[last:]
	}
	if strings.ContainsAny(pattern[last:], "[]") || strings.ContainsAny(out[0], "[]") {
		return nil, fmt.Errorf("stray bracket")
	}
	return out, nil
}

func ansibleRangeValues(body string) ([]string, error) {
	parts := strings.Split(body, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("range [%s]: want [start:end] or [start:end:stride]", body)
	}
	step := 1
	if len(parts) == 3 {
		s, err := strconv.Atoi(parts[2])
		if err != nil || s < 1 {
			return nil, fmt.Errorf("range [%s]: the stride must be a positive number", body)
		}
		step = s
	}
	lo, hi := parts[0], parts[1]
	if len(lo) == 1 && len(hi) == 1 && isLetter(lo[0]) && isLetter(hi[0]) {
		if hi[0] < lo[0] {
			return nil, fmt.Errorf("range [%s] runs backwards", body)
		}
		var out []string
		for c := lo[0]; c <= hi[0]; c += byte(step) {
			out = append(out, string(c))
			if int(c)+step > 255 {
				break
			}
		}
		return out, nil
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 0 {
		return nil, fmt.Errorf("range [%s]: want numbers or single letters", body)
	}
	if b < a {
		return nil, fmt.Errorf("range [%s] runs backwards", body)
	}
	if (b-a)/step >= hostrange.MaxHosts {
		return nil, fmt.Errorf("range [%s] has more than %d hosts", body, hostrange.MaxHosts)
	}
	width := 0
	if len(lo) > 1 && lo[0] == '0' {
		width = len(lo)
	}
	var out []string
	for n := a; n <= b; n += step {
		out = append(out, fmt.Sprintf("%0*d", width, n))
	}
	return out, nil
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// build makes the hosts: each with its groups as labels and the
// variables of its groups and its own applied in order of precedence.
func (p *ansibleParser) build(opts Options) ([]*hostState, error) {
	depth := map[string]int{}
	member := map[string]map[string]bool{} // group → its hosts, children's included
	var visit func(g string, path []string) map[string]bool
	visit = func(g string, path []string) map[string]bool {
		if slices.Contains(path, g) {
			p.fail(p.groups[g].src, "group %q is its own child: %s", g, strings.Join(append(path, g), " > "))
			return nil
		}
		if m, ok := member[g]; ok {
			return m
		}
		m := map[string]bool{}
		grp := p.group(g, p.name)
		for _, h := range grp.hosts {
			m[h] = true
		}
		for _, c := range grp.children {
			depth[c] = max(depth[c], len(path)+1)
			for h := range visit(c, append(path, g)) {
				m[h] = true
			}
		}
		member[g] = m
		return m
	}
	names := make([]string, 0, len(p.groups))
	for g := range p.groups {
		names = append(names, g)
	}
	sort.Strings(names)
	for _, g := range names {
		visit(g, nil)
	}
	if len(p.problems) > 0 {
		return nil, p.problems
	}
	depth["all"] = -1
	sort.SliceStable(names, func(i, j int) bool { return depth[names[i]] < depth[names[j]] })

	opts.fill()
	base := builtinDefaults(opts)
	var out []*hostState
	for _, n := range p.order {
		h := base.clone()
		src := p.hosts[n].src
		h.Name, h.Address, h.Source, h.Origin.Address = n, n, src, src
		var vars []ansibleVar
		for _, g := range names {
			if g == "all" || member[g][n] {
				vars = append(vars, p.groups[g].vars...)
				if g != "all" && g != "ungrouped" {
					h.Labels = append(h.Labels, g)
				}
			}
		}
		for _, v := range append(vars, p.hosts[n].vars...) {
			p.apply(h, v, opts)
		}
		sort.Strings(h.Labels)
		out = append(out, h)
	}
	if len(p.problems) > 0 {
		return nil, p.problems
	}
	return out, nil
}

// apply sets what variable v means for h.
func (p *ansibleParser) apply(h *hostState, v ansibleVar, opts Options) {
	switch v.key {
	case "ansible_host", "ansible_ssh_host":
		h.Address, h.Origin.Address = v.value, v.src
	case "ansible_user", "ansible_ssh_user":
		h.User, h.set["user"], h.Origin.User = v.value, true, v.src
	case "ansible_port", "ansible_ssh_port":
		port, err := strconv.Atoi(v.value)
		if err != nil || port < 1 || port > 65535 {
			p.fail(v.src, "%s=%s: want a port number", v.key, v.value)
			return
		}
		h.Port, h.set["port"], h.Origin.Port = port, true, v.src
	case "ansible_ssh_private_key_file":
		h.IdentityFiles, h.set["identity_files"] = []string{resolve(v.value, opts)}, true
	case "dsub_slots":
		n, err := strconv.Atoi(v.value)
		if err != nil || n < 0 {
			p.fail(v.src, "dsub_slots=%s: want a number of slots (0: the host's CPUs)", v.value)
			return
		}
		h.Slots, h.Origin.Slots = n, v.src
	default:
		p.ignored[v.key] = true
	}
}
