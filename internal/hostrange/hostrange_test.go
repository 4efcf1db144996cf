package hostrange

import (
	"slices"
	"sort"
	"strings"
	"testing"
)

func TestExpand(t *testing.T) {
	tests := []struct {
		in      string
		want    string // comma-joined
		wantErr string
	}{
		{in: "node1", want: "node1"},
		{in: "node[1-3]", want: "node1,node2,node3"},
		{in: "node[01-03].lab:22", want: "node01.lab:22,node02.lab:22,node03.lab:22"},
		{in: "n[8-11]", want: "n8,n9,n10,n11"},
		{in: "n[098-100]", want: "n098,n099,n100"},
		{in: "n[1,3,5-6]", want: "n1,n3,n5,n6"},
		{in: "r[1-2]n[1-2]", want: "r1n1,r1n2,r2n1,r2n2"},
		{in: "[::1]:2222", want: "[::1]:2222"},
		{in: "[fe80::1%eth0]", want: "[fe80::1%eth0]"},
		{in: "", wantErr: "empty"},
		{in: "n[1-", wantErr: "unclosed"},
		{in: "n[]", wantErr: "empty range"},
		{in: "n[3-1]", wantErr: "backwards"},
		{in: "n[a-b]", wantErr: "not a number"},
		{in: "n[1-1000000000]", wantErr: "more than"},
		{in: "n]1[", wantErr: "unclosed"},
		{in: "n]1", wantErr: "stray"},
		{in: "a b", wantErr: "stray"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Expand(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand(%q) error = %v, want containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Expand(%q): %v", tt.in, err)
			}
			if g := strings.Join(got, ","); g != tt.want {
				t.Errorf("Expand(%q) = %s, want %s", tt.in, g, tt.want)
			}
		})
	}
}

func TestExpandList(t *testing.T) {
	got, err := ExpandList("a[1-2], b ,c[7,9]")
	if err != nil {
		t.Fatal(err)
	}
	if g := strings.Join(got, ","); g != "a1,a2,b,c7,c9" {
		t.Errorf("got %s", g)
	}
}

func TestFold(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"h01,h02,h03", "h[01-03]"},
		{"h01,h02,h04", "h[01-02,04]"},
		{"h1,h2,h10", "h[1-2,10]"},
		{"n1.lab,n2.lab,x", "n[1-2].lab,x"},
		{"web,db", "db,web"},
		{"h05", "h05"},
		{"h1,h1,h2", "h[1-2]"},
		{"r1n1,r1n2,r2n1", "r1n[1-2],r2n1"},
		{"r1n1,r1n2,r2n1,r2n2", "r[1-2]n[1-2]"},
		{"h9,h10,h09", "h[9,09-10]"},
		{"a1b3,a1b4,a2b3,a2b4", "a[1-2]b[3-4]"},
		{"n01,n1,n2,n003", "n[1-2,01,003]"},
		{"x-1.lab,x-2.lab", "x-[1-2].lab"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := Fold(strings.Split(tt.in, ","))
			if got != tt.want {
				t.Errorf("Fold(%s) = %s, want %s", tt.in, got, tt.want)
			}
			roundTrips(t, tt.in, got)
		})
	}
}

func roundTrips(t *testing.T, in, folded string) bool {
	t.Helper()
	back, err := ExpandList(folded)
	if err != nil {
		t.Errorf("Fold output %q does not expand: %v", folded, err)
		return false
	}
	want := uniqSorted(strings.Split(in, ","))
	got := uniqSorted(back)
	if !slices.Equal(got, want) {
		t.Errorf("Fold(%s) = %s expands to %v, want %v", in, folded, got, want)
		return false
	}
	return true
}

func uniqSorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

// FuzzExpand checks that Expand never panics or exceeds its bound, and
// that Fold of any expansion expands back to the same set.
func FuzzExpand(f *testing.F) {
	for _, s := range []string{"node[01-16].lab:22", "n[1,3,5-7]", "[::1]:22", "a[1-2]b[3-4]", "x[0-9]", "n[08-11]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		names, err := Expand(s)
		if err != nil {
			return
		}
		if len(names) == 0 || len(names) > MaxHosts {
			t.Fatalf("Expand(%q) gave %d names", s, len(names))
		}
		if len(names) > 1000 {
			return
		}
		for _, n := range names {
			if strings.ContainsAny(n, ",[]") {
				return // IPv6 literal or odd names: Fold passes them through
			}
		}
		folded := Fold(names)
		back, err := ExpandList(folded)
		if err != nil {
			t.Fatalf("Fold(Expand(%q)) = %q does not expand: %v", s, folded, err)
		}
		if !slices.Equal(uniqSorted(back), uniqSorted(names)) {
			t.Fatalf("Fold round trip of %q: %q -> %v, want %v", s, folded, back, names)
		}
	})
}
