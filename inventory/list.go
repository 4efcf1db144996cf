package inventory

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/internal/hostrange"
)

// ParseList reads a plain host list, the format of pssh's host files and
// GNU parallel's --sshloginfile: one entry per line,
//
//	[N/][user@]host[:port]
//
// where N is the host's slots and host may be a range ("node[01-04]") or
// a bracketed IPv6 address; "local" or ":" (GNU parallel's) is the
// master's own machine. Blank lines and lines starting with "#" are
// skipped, and " #" starts a comment. Everything else comes from the
// built-in defaults and the OpenSSH client config, as for hosts.toml.
//
// A host listed k times, each time alone on its line without N/ or a
// range, has k slots, as in a PBS/Torque $PBS_NODEFILE (one line per
// slot); listed once, it has the default.
func ParseList(r io.Reader, name string, opts Options) ([]*Host, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	lb := newListBuilder(opts)
	lb.repeatsAreSlots = true
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, " #"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		lb.add(line, fmt.Sprintf("%s:%d", name, n))
		if err := lb.bounded(name); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, errs.Config(name, err.Error())
	}
	if len(lb.problems) == 0 && len(lb.all) == 0 {
		return nil, errs.Config(name, "no hosts: write one host per line, as [user@]host[:port]")
	}
	return lb.finish(opts)
}

// FromList makes hosts from a pdsh/clush-style -w list: comma-separated
// [user@]host[:port] items, each of which may be a range:
// "node[01-16],admin@gw:2222". Errors name the item.
func FromList(list string, opts Options) ([]*Host, error) {
	lb := newListBuilder(opts)
	for _, item := range hostrange.SplitList(list) {
		lb.add(strings.TrimSpace(item), fmt.Sprintf("-w %s", item))
		if err := lb.bounded("-w"); err != nil {
			return nil, err
		}
	}
	if len(lb.problems) == 0 && len(lb.all) == 0 {
		return nil, errs.Config("-w", "no hosts in the list")
	}
	return lb.finish(opts)
}

// bounded stops a list whose items together pass hostrange.MaxHosts: each
// item is bounded alone, the whole must be too.
func (lb *listBuilder) bounded(name string) error {
	if len(lb.all) > hostrange.MaxHosts {
		return errs.Config(name, fmt.Sprintf("the list names more than %d hosts", hostrange.MaxHosts))
	}
	return nil
}

// listBuilder turns list entries into hosts over the built-in defaults.
type listBuilder struct {
	base     *hostState
	all      []*hostState
	where    map[string]string
	problems errs.List
	// repeatsAreSlots: a host listed again without N/ gains a slot per
	// line (PBS); else a repeat is an error.
	repeatsAreSlots bool
	repeats         map[string]*repeat
}

// repeat is how a host was listed so far, for repeatsAreSlots.
type repeat struct {
	h     *hostState
	lines int
	plain bool // its first line was one host without N/ or a range
}

func newListBuilder(opts Options) *listBuilder {
	opts.fill()
	return &listBuilder{base: builtinDefaults(opts), where: map[string]string{}, repeats: map[string]*repeat{}}
}

func (lb *listBuilder) fail(src, format string, args ...any) {
	lb.problems = append(lb.problems, errs.Config(src, fmt.Sprintf(format, args...)))
}

// add parses one entry, "[N/][user@]host[:port]", found at src.
func (lb *listBuilder) add(entry, src string) {
	rest := entry
	slots := -1
	if n, after, ok := strings.Cut(rest, "/"); ok {
		v, err := strconv.Atoi(n)
		if err != nil || v < 1 {
			lb.fail(src, "%q: the slots before / must be a positive number", entry)
			return
		}
		slots, rest = v, after
	}
	user := ""
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		user, rest = rest[:i], rest[i+1:]
		if user == "" {
			lb.fail(src, "%q: empty user before @", entry)
			return
		}
	}
	if rest == ":" {
		rest = LocalAddress // the local machine, in GNU parallel
	}
	if strings.HasPrefix(rest, "-") {
		lb.fail(src, "%q: a host name cannot start with '-'", entry)
		return
	}
	if rest == "" || strings.ContainsAny(rest, " \t") {
		lb.fail(src, "%q: want [N/][user@]host[:port]", entry)
		return
	}
	addrs, err := hostrange.Expand(rest)
	if err != nil {
		lb.fail(src, "%q: %v", entry, err)
		return
	}
	// plain: one host, no N/ and no range, as a $PBS_NODEFILE line.
	plain := slots < 0 && len(addrs) == 1 && addrs[0] == rest
	for _, a := range addrs {
		host, port, err := splitAddress(a)
		if err != nil {
			lb.fail(src, "%v", err)
			return
		}
		h := lb.base.clone()
		h.Source, h.Address, h.Name = src, host, host
		h.Origin.Address = src
		h.Local = a == LocalAddress
		if port != 0 {
			h.Port, h.set["port"], h.Origin.Port = port, true, src
			h.Name = a
		}
		if user != "" {
			h.User, h.set["user"], h.Origin.User = user, true, src
		}
		if slots > 0 {
			h.Slots, h.Origin.Slots = slots, src
		}
		if prev, dup := lb.where[h.Name]; dup {
			rp := lb.repeats[h.Name]
			if !lb.repeatsAreSlots || !rp.plain || !plain || rp.h.User != h.User {
				lb.fail(src, "duplicate host name %q (also at %s)", h.Name, prev)
				continue
			}
			rp.lines++
			rp.h.Slots = rp.lines
			rp.h.Origin.Slots = fmt.Sprintf("%s (listed %d times)", rp.h.Source, rp.lines)
			continue
		}
		lb.where[h.Name] = src
		lb.repeats[h.Name] = &repeat{h: h, lines: 1, plain: plain}
		lb.all = append(lb.all, h)
	}
}

func (lb *listBuilder) finish(opts Options) ([]*Host, error) {
	if len(lb.problems) > 0 {
		return nil, lb.problems
	}
	return finish(lb.all, opts)
}

// FromSlurm makes hosts from a Slurm allocation, as getenv reports it:
// $SLURM_JOB_NODELIST ("node[01-04,07],gpu[1-2]") names the hosts and
// $SLURM_JOB_CPUS_PER_NODE ("4(x3),8": four CPUs on each of the first
// three nodes, then eight) their slots, in the same order. Errors name
// the variable.
func FromSlurm(getenv func(string) string, opts Options) ([]*Host, error) {
	list := getenv("SLURM_JOB_NODELIST")
	if list == "" {
		list = getenv("SLURM_NODELIST")
	}
	if list == "" {
		return nil, errs.Config("$SLURM_JOB_NODELIST", "not set: a Slurm host list is read inside a Slurm allocation (salloc, sbatch)")
	}
	hosts, err := FromList(list, opts)
	if err != nil {
		return nil, errs.Config("$SLURM_JOB_NODELIST", err.Error())
	}
	for _, h := range hosts {
		h.Source, h.Origin.Address = "$SLURM_JOB_NODELIST", "$SLURM_JOB_NODELIST"
	}
	cpus := getenv("SLURM_JOB_CPUS_PER_NODE")
	if cpus == "" {
		return hosts, nil // slots: the defaults (each host's CPUs)
	}
	slots, err := parseCPUsPerNode(cpus, len(hosts))
	if err != nil {
		return nil, errs.Config("$SLURM_JOB_CPUS_PER_NODE", fmt.Sprintf("%q: %v", cpus, err))
	}
	if len(slots) != len(hosts) {
		return nil, errs.Config("$SLURM_JOB_CPUS_PER_NODE", fmt.Sprintf("%q gives %d nodes, $SLURM_JOB_NODELIST %d", cpus, len(slots), len(hosts)))
	}
	for i, h := range hosts {
		h.Slots, h.Origin.Slots = slots[i], "$SLURM_JOB_CPUS_PER_NODE"
	}
	return hosts, nil
}

// parseCPUsPerNode reads Slurm's compressed count list: "N" or "N(xK)"
// items, comma-separated, for nodes nodes: it stops as soon as the list
// gives more (a short "1(x1048576)" would otherwise allocate for each).
func parseCPUsPerNode(s string, nodes int) ([]int, error) {
	var out []int
	for _, item := range strings.Split(s, ",") {
		n, rep := item, "1"
		if i := strings.Index(item, "(x"); i >= 0 && strings.HasSuffix(item, ")") {
			n, rep = item[:i], item[i+2:len(item)-1]
		}
		v, err1 := strconv.Atoi(n)
		k, err2 := strconv.Atoi(rep)
		if err1 != nil || err2 != nil || v < 1 || k < 1 || k > 1<<20 {
			return nil, fmt.Errorf("item %q: want N or N(xK)", item)
		}
		if len(out)+k > nodes {
			return nil, fmt.Errorf("more counts than the %d nodes", nodes)
		}
		for ; k > 0; k-- {
			out = append(out, v)
		}
	}
	return out, nil
}
