package hostrange

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// nodeset runs ClusterShell's nodeset, the oracle.
func nodeset(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nodeset", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("nodeset %s: %v\n%s", strings.Join(args[:min(len(args), 3)], " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func needNodeset(t *testing.T) {
	if _, err := exec.LookPath("nodeset"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: nodeset (ClusterShell), the oracle, is missing (scripts/setup.sh installs it)")
		}
		t.Skip("nodeset (ClusterShell), the oracle, is not installed")
	}
}

// randomList makes a host list of about most hosts or fewer: patterns with one to
// three bracket groups of padded or unpadded numbers, in names with dots
// and dashes; each pattern has its own prefix, so no name repeats.
func randomList(rng *rand.Rand, most int) string {
	stems := []string{"node", "gpu-", "rack", "c.", "ib-sw", "db.prod-"}
	seps := []string{"n", "-", ".", "s"}
	suffixes := []string{"", "", ".lab", "-ib", ".example.com"}
	group := func(budget int) (string, int) {
		width := 0
		if rng.IntN(2) == 0 {
			width = 2 + rng.IntN(3)
		}
		limit := 999
		if width > 0 {
			limit = min(limit, pow10(width)-1)
		}
		var parts []string
		n, lo := 0, rng.IntN(20)
		for k := 1 + rng.IntN(3); k > 0 && lo <= limit && n < budget; k-- {
			hi := min(lo+rng.IntN(budget-n), limit)
			if hi == lo {
				parts = append(parts, fmt.Sprintf("%0*d", width, lo))
			} else {
				parts = append(parts, fmt.Sprintf("%0*d-%0*d", width, lo, width, hi))
			}
			n += hi - lo + 1
			lo = hi + 2 + rng.IntN(10)
		}
		return "[" + strings.Join(parts, ",") + "]", n
	}
	var items []string
	total := 0
	for i := 0; i < 1+rng.IntN(4) && total < most; i++ {
		p := fmt.Sprintf("%s%d%s", stems[rng.IntN(len(stems))], i, seps[rng.IntN(len(seps))])
		size := 1
		for g := rng.IntN(3); g >= 0; g-- {
			body, n := group(max(1, (most-total)/(size*2)))
			p += body
			size *= n
			if g > 0 {
				p += seps[rng.IntN(len(seps))]
			}
		}
		items = append(items, p+suffixes[rng.IntN(len(suffixes))])
		total += size
	}
	return strings.Join(items, ",")
}

func pow10(n int) int {
	p := 1
	for ; n > 0; n-- {
		p *= 10
	}
	return p
}

// Expansion is nodeset -e's, name for name, and folding gives the same
// set as nodeset -f, in as many characters or fewer, on random sets of 1
// to 5,000 hosts (nodeset is the oracle).
func TestExpandAndFoldMatchNodeset(t *testing.T) {
	needNodeset(t)
	rng := rand.New(rand.NewPCG(11, 13))
	for i := range 40 {
		list := randomList(rng, []int{10, 100, 1000, 5000}[i%4])
		ours, err := ExpandList(list)
		if err != nil {
			t.Fatalf("ExpandList(%q): %v", list, err)
		}
		theirs := strings.Fields(nodeset(t, "-e", list))
		slices.Sort(ours)
		slices.Sort(theirs)
		if !slices.Equal(ours, theirs) {
			t.Fatalf("%q: we expand %d names, nodeset %d (first difference at %d)", list, len(ours), len(theirs), firstDiff(ours, theirs))
		}

		// Fold the names, shuffled, both ways.
		rng.Shuffle(len(ours), func(a, b int) { ours[a], ours[b] = ours[b], ours[a] })
		folded := Fold(ours)
		want := nodeset(t, append([]string{"-f"}, ours...)...)
		back := strings.Fields(nodeset(t, "-e", folded))
		slices.Sort(back)
		if !slices.Equal(back, theirs) {
			t.Fatalf("Fold of %q = %q: nodeset expands it to %d names, not the %d folded", list, folded, len(back), len(theirs))
		}
		if len(folded) > len(want) {
			t.Errorf("Fold of %q = %q (%d chars), longer than nodeset -f's %q (%d)", list, folded, len(folded), want, len(want))
		}
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
