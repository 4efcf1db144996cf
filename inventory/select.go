package inventory

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/dsub-dev/dsub/internal/hostrange"
)

// Select returns the hosts that sel picks, in inventory order. sel is a
// comma-separated list of items: host names, ranges ("node[01-04]"),
// globs ("web*", "node?[1-3]" as path.Match has them) and labels
// ("label:gpu"). An item prefixed with "!" excludes what it matches; a
// list of exclusions alone starts from every host. An empty sel picks
// every host. An exclusion that matches no host is an error, so that a
// typo never keeps a host meant to be left out; an inclusion that matches
// none is told to warn (the README's 'h[01-04],label:gpu,!h02' on hosts
// without GPUs) when the others select some, and an error when nothing
// is selected. Errors and warnings name src, where sel came from (the
// CLI's flag).
func Select(hosts []*Host, src, sel string, warn func(string)) ([]*Host, error) {
	return selectHosts(hosts, sel, src, sel, warn)
}

// Exclude drops the hosts that list names (pdsh's -x): the same items as
// Select takes, each excluding what it matches. Errors name src.
func Exclude(hosts []*Host, src, list string) ([]*Host, error) {
	var items []string
	for _, it := range hostrange.SplitList(list) {
		items = append(items, "!"+strings.TrimPrefix(it, "!"))
	}
	return selectHosts(hosts, strings.Join(items, ","), src, list, nil)
}

// noMatch is an item that is well formed and matches no host.
type noMatch string

func (e noMatch) Error() string { return string(e) }

func noMatchf(format string, args ...any) error { return noMatch(fmt.Sprintf(format, args...)) }

// selectHosts applies sel; flag and shown name it in errors; warn, if not
// nil, is told of inclusions that match nothing (else they are errors).
func selectHosts(hosts []*Host, sel, flag, shown string, warn func(string)) ([]*Host, error) {
	if strings.TrimSpace(sel) == "" {
		return hosts, nil
	}
	want := map[string]bool{}
	drop := map[string]bool{}
	included := false
	var unmatched []error
	for _, item := range hostrange.SplitList(sel) {
		item = strings.TrimSpace(item)
		set := want
		exclusion := false
		if rest, ok := strings.CutPrefix(item, "!"); ok {
			item, set, exclusion = rest, drop, true
		} else {
			included = true
		}
		names, err := match(hosts, item)
		if err != nil && !exclusion && warn != nil && errors.As(err, new(noMatch)) {
			unmatched = append(unmatched, fmt.Errorf("%s %s: %w", flag, item, err))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", flag, item, err)
		}
		for _, n := range names {
			set[n] = true
		}
	}
	var out []*Host
	for _, h := range hosts {
		if (want[h.Name] || !included) && !drop[h.Name] {
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		if len(unmatched) > 0 {
			return nil, errors.Join(unmatched...)
		}
		return nil, fmt.Errorf("%s %s: selects no host", flag, shown)
	}
	for _, err := range unmatched {
		warn(err.Error() + "; the other items select " + plural(len(out), "host"))
	}
	return out, nil
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// match returns the names of the hosts one selection item matches.
func match(hosts []*Host, item string) ([]string, error) {
	var out []string
	if label, ok := strings.CutPrefix(item, "label:"); ok {
		for _, h := range hosts {
			for _, l := range h.Labels {
				if l == label {
					out = append(out, h.Name)
					break
				}
			}
		}
		if len(out) == 0 {
			return nil, noMatchf("no host has label %q", label)
		}
		return out, nil
	}
	if strings.ContainsAny(item, "*?") {
		if _, err := path.Match(item, ""); err != nil {
			return nil, fmt.Errorf("bad glob: %v", err)
		}
		for _, h := range hosts {
			if ok, _ := path.Match(item, h.Name); ok {
				out = append(out, h.Name)
			}
		}
		if len(out) == 0 {
			return nil, noMatchf("no host name matches %q", item)
		}
		return out, nil
	}
	names, err := hostrange.Expand(item)
	if err != nil {
		return nil, err
	}
	byName := map[string]bool{}
	for _, h := range hosts {
		byName[h.Name] = true
	}
	for _, n := range names {
		if !byName[n] {
			return nil, noMatchf("no host named %q in the host list", n)
		}
	}
	return names, nil
}
