package hostrange

import (
	"sort"
	"strconv"
	"strings"
)

// Fold is the inverse of ExpandList: it folds names into bracket ranges,
// on every run of digits, as ClusterShell's nodeset -f does:
// a1b3,a1b4,a2b3,a2b4 is a[1-2]b[3-4], and n9,n09,n10,n11 is n[9,09-11].
// The result is sorted and expands back to exactly the input set.
//
// Names are grouped by shape (their text between digit runs); within a
// shape, each name is a point with one coordinate per digit run. Points
// that differ in one coordinate only merge into one item whose
// coordinate is a set; this repeats over every coordinate until nothing
// merges, which leaves a union of boxes, each printed as one pattern.
func Fold(names []string) string {
	shapes := map[string][]*item{}
	var plain []string
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		text, nums := split(n)
		if len(nums) == 0 || strings.ContainsAny(n, "[],") {
			plain = append(plain, n)
			continue
		}
		key := strings.Join(text, "\x00")
		it := &item{text: text, dims: make([]numSet, len(nums))}
		for d, s := range nums {
			it.dims[d] = numSet{s: true}
		}
		shapes[key] = append(shapes[key], it)
	}
	parts := plain
	for _, items := range shapes {
		for _, it := range mergeAll(items) {
			parts = append(parts, it.String())
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// maxDigits bounds a digit run that is folded; a longer one is text.
const maxDigits = 9

// split cuts n into text and digit runs: text[0] num[0] text[1] ...
// text[len(nums)], so len(text) == len(nums)+1.
func split(n string) (text, nums []string) {
	start := 0
	for i := 0; i < len(n); {
		if !isDigit(n[i]) {
			i++
			continue
		}
		j := i
		for j < len(n) && isDigit(n[j]) {
			j++
		}
		if j-i <= maxDigits {
			text = append(text, n[start:i])
			nums = append(nums, n[i:j])
			start = j
		}
		i = j
	}
	return append(text, n[start:]), nums
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// numSet is a set of digit strings ("7", "007").
type numSet map[string]bool

// item is a box: text[0] dims[0] text[1] ... with a set per digit run.
type item struct {
	text []string
	dims []numSet
}

func (it *item) String() string {
	var b strings.Builder
	for d, set := range it.dims {
		b.WriteString(it.text[d])
		b.WriteString(set.String())
	}
	b.WriteString(it.text[len(it.dims)])
	return b.String()
}

// mergeAll merges items along each coordinate in turn, last first, until
// a whole round merges nothing.
func mergeAll(items []*item) []*item {
	for {
		n := len(items)
		for d := len(items[0].dims) - 1; d >= 0; d-- {
			items = mergeOn(items, d)
		}
		if len(items) == n {
			return items
		}
	}
}

// mergeOn merges the items that are equal but in coordinate d.
func mergeOn(items []*item, d int) []*item {
	var out []*item
	byRest := map[string]*item{}
	for _, it := range items {
		var key strings.Builder
		for e, set := range it.dims {
			if e != d {
				key.WriteString(set.String())
			}
			key.WriteByte(0)
		}
		if prev := byRest[key.String()]; prev != nil {
			for s := range it.dims[d] {
				prev.dims[d][s] = true
			}
			continue
		}
		byRest[key.String()] = it
		out = append(out, it)
	}
	return out
}

// String is the set as one digit string, or in brackets as ranges.
func (set numSet) String() string {
	if len(set) == 1 {
		for s := range set {
			return s
		}
	}
	a, b := set.ranges(true), set.ranges(false)
	if len(b) < len(a) {
		a = b
	}
	return "[" + a + "]"
}

// ranges writes the set as comma-separated ranges. A range's first
// number fixes its format: "09-11" is 09 10 11, "9-11" is 9 10 11. So a
// number such as "10" fits a run begun by "09" or by "9": paddedFirst
// says which kind of run takes such numbers first.
func (set numSet) ranges(paddedFirst bool) string {
	type num struct {
		v uint64
		s string
	}
	nums := make([]num, 0, len(set))
	for s := range set {
		v, _ := strconv.ParseUint(s, 10, 64)
		nums = append(nums, num{v, s})
	}
	sort.Slice(nums, func(i, j int) bool {
		if nums[i].v != nums[j].v {
			return nums[i].v < nums[j].v
		}
		return len(nums[i].s) < len(nums[j].s)
	})
	used := map[string]bool{}
	var rs []num // each run's first number, with the run in s
	run := func(n num) {
		padded := len(n.s) > 1 && n.s[0] == '0'
		width := 0
		if padded {
			width = len(n.s)
		}
		last := n
		used[n.s] = true
		for {
			next := strconv.FormatUint(last.v+1, 10)
			if width > 0 {
				if len(next) > width {
					break
				}
				next = strings.Repeat("0", width-len(next)) + next
			}
			if !set[next] || used[next] {
				break
			}
			used[next] = true
			last = num{last.v + 1, next}
		}
		r := n
		if last.s != n.s {
			r.s += "-" + last.s
		}
		rs = append(rs, r)
	}
	// First the runs of the kind that goes first, then the rest.
	for _, pass := range []bool{paddedFirst, !paddedFirst} {
		for _, n := range nums {
			if !used[n.s] && (len(n.s) > 1 && n.s[0] == '0') == pass {
				run(n)
			}
		}
	}
	// In order of their first numbers, as nodeset prints them: [9,09-11].
	first := func(r num) int { a, _, _ := strings.Cut(r.s, "-"); return len(a) }
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].v != rs[j].v {
			return rs[i].v < rs[j].v
		}
		return first(rs[i]) < first(rs[j])
	})
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.s
	}
	return strings.Join(out, ",")
}
