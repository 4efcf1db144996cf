// Package layering holds the test that writes dsub's import rules down,
// checked with `go list -deps` on the real packages.
package layering

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/dsub-dev/dsub"

// deps lists the packages pkg imports, directly or not.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	return strings.Fields(string(out))
}

// TestLayering: the engine's layers import downwards only, and the CLI's
// libraries stay in the CLI.
func TestLayering(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string // prefixes
	}{
		{"errs", []string{module + "/"}},
		{"queue", []string{module + "/"}},
		{"records", []string{module + "/"}},
		{"remote", []string{module + "/distributor", module + "/cmd", module + "/inventory", module + "/queue"}},
		{"remote/fakehost", []string{module + "/distributor", module + "/cmd"}},
		{"agent", []string{module + "/distributor", module + "/cmd", module + "/inventory", module + "/queue"}},
		{"inventory", []string{module + "/distributor", module + "/cmd"}},
		{"distributor", []string{module + "/cmd", module + "/testenv", module + "/monitor"}},
		{"monitor", []string{module + "/cmd", module + "/testenv"}},
		{"distributor/runsynth", []string{module + "/cmd", module + "/testenv", module + "/monitor"}},
		{"internal/hostrange", []string{module + "/"}},
		{"internal/browser", []string{module + "/"}},
		{"internal/layering", []string{module + "/"}},
		{"testenv", []string{module + "/cmd", module + "/distributor", module + "/monitor", module + "/agent", module + "/queue"}},
		{"testenv/cmd/testenv", []string{module + "/cmd", module + "/distributor", module + "/monitor", module + "/agent", module + "/queue"}},
		{"bench/internal/benchutil", []string{module + "/"}},
		{"bench/fanout", []string{module + "/cmd"}},
		{"bench/run", []string{module + "/cmd"}},
		{"bench/engine", []string{module + "/cmd", module + "/testenv"}},
		{"examples/primes", []string{module + "/"}},
		{"examples/wordcount", []string{module + "/"}},
		{"cmd/dsub", []string{module + "/testenv", module + "/bench", module + "/remote/fakehost"}},
	}
	// Every package has its rule: a new one must say where its layer is.
	all, err := exec.Command("go", "list", module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, all)
	}
	ruled := map[string]bool{}
	for _, r := range rules {
		ruled[module+"/"+r.pkg] = true
	}
	for _, p := range strings.Fields(string(all)) {
		if !ruled[p] {
			t.Errorf("%s has no layering rule: add one to TestLayering", p)
		}
	}
	for _, r := range rules {
		for _, d := range deps(t, r.pkg) {
			if d == module+"/"+r.pkg {
				continue
			}
			for _, f := range r.forbidden {
				if strings.HasPrefix(d, f) {
					t.Errorf("%s imports %s", r.pkg, d)
				}
			}
		}
	}
	// Only cmd/dsub imports the CLI's libraries.
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, module+"/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == module+"/cmd/dsub" {
			continue
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "github.com/spf13/cobra") || strings.HasPrefix(imp, "github.com/vbauerster/mpb") {
				t.Errorf("%s imports %s: only cmd/dsub may", f[0], imp)
			}
		}
	}
}
