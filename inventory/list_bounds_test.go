package inventory

import (
	"fmt"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/internal/hostrange"
)

// Host lists are bounded in total, not only item by item: names, bytes,
// and Slurm's CPU counts, which stop as soon as they pass the nodes (a
// 1,009-byte name around [1-99999] allocated 109 MB; three -w items gave
// 299,997 hosts; a 239-byte CPU list allocated 917 MB).
func TestListsAreBounded(t *testing.T) {
	long := strings.Repeat("n", 1000) + "[1-99999]"
	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{"long name around a wide range", func() error { _, err := FromList(long, testOpts); return err }, "MiB of names"},
		{"three wide -w items", func() error {
			_, err := FromList("a[1-99999],b[1-99999],c[1-99999]", testOpts)
			return err
		}, "more than"},
		{"three wide list lines", func() error {
			_, err := ParseList(strings.NewReader("a[1-99999]\nb[1-99999]\nc[1-99999]\n"), "nodes", testOpts)
			return err
		}, "more than"},
		{"Slurm CPU counts past the nodes", func() error {
			env := map[string]string{"SLURM_JOB_NODELIST": "n[1-4]", "SLURM_JOB_CPUS_PER_NODE": strings.Repeat("1(x1048576),", 20) + "1"}
			_, err := FromSlurm(func(k string) string { return env[k] }, testOpts)
			return err
		}, "more counts than the 4 nodes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one saying %q", err, tt.want)
			}
		})
	}
	if hostrange.MaxHosts < 1000 {
		t.Fatal("MaxHosts too small to matter")
	}
}

// checkHosts is what every host-list parser promises of what it accepts:
// names, addresses that no ssh would read as an option, valid ports,
// and a bounded number of hosts.
func checkHosts(t *testing.T, hosts []*Host, err error, input string) {
	t.Helper()
	if err != nil {
		if hosts != nil {
			t.Fatal("hosts and an error both returned")
		}
		return
	}
	if len(hosts) > hostrange.MaxHosts {
		t.Fatalf("%d hosts from %d bytes", len(hosts), len(input))
	}
	seen := map[string]bool{}
	for _, h := range hosts {
		if h.Name == "" || h.Address == "" || strings.HasPrefix(h.Address, "-") || strings.HasPrefix(h.User, "-") || h.Port < 1 || h.Port > 65535 || seen[h.Name] {
			t.Fatalf("invalid host accepted from %q: %+v", input, h)
		}
		seen[h.Name] = true
	}
}

func FuzzParseList(f *testing.F) {
	f.Add("node[01-04]\n4/admin@gw:2222\n# comment\nn1\nn1\n")
	f.Add(":\n2/:\nu@[::1]:22\n")
	f.Fuzz(func(t *testing.T, text string) {
		hosts, err := ParseList(strings.NewReader(text), "nodes", testOpts)
		checkHosts(t, hosts, err, text)
	})
}

func FuzzFromSlurm(f *testing.F) {
	f.Add("node[01-04,07],gpu[1-2]", "4(x3),8,2(x2),1")
	f.Add("n1", "")
	f.Fuzz(func(t *testing.T, nodes, cpus string) {
		env := map[string]string{"SLURM_JOB_NODELIST": nodes, "SLURM_JOB_CPUS_PER_NODE": cpus}
		hosts, err := FromSlurm(func(k string) string { return env[k] }, testOpts)
		checkHosts(t, hosts, err, nodes+" "+cpus)
		for _, h := range hosts {
			if cpus != "" && h.Slots < 1 {
				t.Fatalf("slots %d from %q", h.Slots, cpus)
			}
		}
	})
}

func FuzzParseAnsible(f *testing.F) {
	f.Add("[web]\nweb[01:03].lab ansible_user=deploy\n[db]\ndb1 ansible_host=10.0.0.5 ansible_port=2222\n[all:vars]\nansible_user=x\n")
	f.Add("[g:children]\nweb\n[web]\nh1\n")
	f.Fuzz(func(t *testing.T, text string) {
		hosts, err := ParseAnsible(strings.NewReader(text), "inventory.ini", testOpts)
		checkHosts(t, hosts, err, text)
	})
}

// A hosts file's errors are configuration errors in errs's vocabulary,
// alone or many at once: exitCode needs no check of its own for them.
func TestErrorsAreConfigKind(t *testing.T) {
	_, one := Parse(strings.NewReader("[[host]]\naddress = \"a\"\nport = 0\n"), "f.toml", testOpts)
	_, many := Parse(strings.NewReader("[[host]]\naddress = \"a\"\nport = 0\n[[host]]\naddress = \"b\"\nslots = -1\n"), "f.toml", testOpts)
	for _, err := range []error{one, many, fmt.Errorf("--hosts: %w", one)} {
		if errs.KindOf(err) != errs.KindConfig {
			t.Errorf("KindOf(%v) = %v, want config", err, errs.KindOf(err))
		}
	}
}
