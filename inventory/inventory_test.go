package inventory

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testOpts = Options{SSHConfig: "none", Home: "/home/u", LocalUser: "u"}

func parse(t *testing.T, text string, opts Options) ([]*Host, error) {
	t.Helper()
	return Parse(strings.NewReader(text), "hosts.toml", opts)
}

func TestParseDefaultsAndOverrides(t *testing.T) {
	hosts, err := parse(t, `
[defaults]
user = "dsub"
identity_files = ["~/.ssh/id_test"]
slots = 2
keepalive = "3s"
labels = ["all"]

[[host]]
address = "node[01-03].lab:2222"

[[host]]
address = "[::1]:22"
name = "v6"
user = "root"
slots = 8
labels = ["gpu"]
connect_timeout = "500ms"
proxy_jump = "admin@bastion:2200"

[[host]]
address = "plain"
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range hosts {
		names = append(names, h.Name)
	}
	if got := strings.Join(names, ","); got != "node01.lab:2222,node02.lab:2222,node03.lab:2222,v6,plain" {
		t.Fatalf("names = %s", got)
	}
	n1 := hosts[0]
	if n1.Address != "node01.lab" || n1.Port != 2222 || n1.User != "dsub" || n1.Slots != 2 ||
		n1.Keepalive != 3*time.Second || n1.ConnectTimeout != 10*time.Second ||
		n1.IdentityFiles[0] != "/home/u/.ssh/id_test" || n1.Workdir != "~/.cache/dsub" || n1.Source != "hosts.toml:9" {
		t.Errorf("node01 = %+v", n1)
	}
	v6 := hosts[3]
	if v6.Address != "::1" || v6.Port != 22 || v6.User != "root" || v6.Slots != 8 || v6.Labels[0] != "gpu" ||
		v6.ConnectTimeout != 500*time.Millisecond || v6.ProxyJump != "admin@bastion:2200" || v6.Source != "hosts.toml:12" {
		t.Errorf("v6 = %+v", v6)
	}
	if p := hosts[4]; p.Name != "plain" || p.Port != 22 || p.KnownHosts[0] != "/home/u/.ssh/known_hosts" {
		t.Errorf("plain = %+v", p)
	}
	rc, err := v6.Remote()
	if err != nil || len(rc.ProxyJump) != 1 || rc.ProxyJump[0].User != "admin" || rc.ProxyJump[0].Port != 2200 {
		t.Errorf("Remote() = %+v, %v", rc, err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"unknown key", "[[host]]\naddress = \"a\"\nadress = \"b\"\n", []string{"hosts.toml:3:", `unknown key "host.adress"`}},
		{"password", "[defaults]\npassword = \"x\"\n[[host]]\naddress = \"a\"\n", []string{"hosts.toml:2:", "passwords are not supported"}},
		{"bad type", "[[host]]\naddress = \"a\"\nport = \"22\"\n", []string{"hosts.toml:3:", "port"}},
		{"bad duration", "[defaults]\nconnect_timeout = \"10 parsecs\"\n[[host]]\naddress = \"a\"\n", []string{"hosts.toml:2:", "bad duration"}},
		{"missing address", "[[host]]\nname = \"x\"\n", []string{"hosts.toml:1:", "no address"}},
		{"duplicate after expansion", "[[host]]\naddress = \"n[1-3]\"\n\n[[host]]\naddress = \"n2\"\n", []string{"hosts.toml:4:", `duplicate host name "n2"`, "also at hosts.toml:1"}},
		{"empty list", "[defaults]\nuser = \"x\"\n", []string{"no hosts"}},
		{"syntax", "[[host]\naddress = \"a\"\n", []string{"hosts.toml:2:"}},
		{"bad range", "[[host]]\naddress = \"n[5-1]\"\n", []string{"hosts.toml:1:", "backwards"}},
		// A bad value points at its own line, not its entry's.
		{"port range", "[[host]]\naddress = \"a\"\nport = 70000\n", []string{"hosts.toml:3:", "out of range"}},
		{"defaults slots", "[defaults]\nuser = \"u\"\n\nslots = -2\n[[host]]\naddress = \"a\"\n", []string{"hosts.toml:4:", "slots -2"}},
		{"second entry's label", "[[host]]\naddress = \"a\"\nlabels = [\"ok\"]\n[[host]]\naddress = \"b\"\nlabels = [\"a b\"]\n", []string{"hosts.toml:6:", `label "a b"`}},
		{"name size", "[[host]]\naddress = \"n[1-3]\"\nname = \"x\"\n", []string{"range name of the same size"}},
		{"bad jump", "[[host]]\naddress = \"a\"\nproxy_jump = \"@b\"\n", []string{"proxy_jump"}},
		{"conflicting port", "[[host]]\naddress = \"a:22\"\nport = 23\n", []string{"has port 22 but port = 23"}},
		{"workdir home", "[defaults]\nworkdir = \"~\"\n[[host]]\naddress = \"a\"\n", []string{"workdir \"~\": it is the home directory"}},
		{"workdir home slash", "[[host]]\naddress = \"a\"\nworkdir = \"~/\"\n", []string{"it is the home directory"}},
		{"workdir root", "[[host]]\naddress = \"a\"\nworkdir = \"/\"\n", []string{"it is the root directory"}},
		{"workdir system", "[[host]]\naddress = \"a\"\nworkdir = \"/usr/local\"\n", []string{"it is a system directory"}},
		{"workdir top", "[[host]]\naddress = \"a\"\nworkdir = \"/tmp\"\n", []string{"it is a top-level directory"}},
		{"workdir a home", "[[host]]\naddress = \"a\"\nworkdir = \"/home/me\"\n", []string{"it is a home directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hosts, err := parse(t, tt.text, testOpts)
			if err == nil {
				t.Fatalf("no error; hosts = %v", hosts)
			}
			if hosts != nil {
				t.Errorf("hosts returned alongside an error")
			}
			if !IsConfigError(err) {
				t.Errorf("IsConfigError(%v) = false", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadUnreadable(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), testOpts)
	if err == nil || !strings.Contains(err.Error(), "nope.toml: cannot read hosts file") {
		t.Fatalf("err = %v", err)
	}
}

func TestSelect(t *testing.T) {
	hosts, err := parse(t, `
[[host]]
address = "n[1-4]"
[[host]]
address = "g1"
labels = ["gpu"]
[[host]]
address = "g2"
labels = ["gpu", "big"]
`, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ sel, want, err, warn string }{
		{"", "n1,n2,n3,n4,g1,g2", "", ""},
		{"n[2-3]", "n2,n3", "", ""},
		{"!n1", "n2,n3,n4,g1,g2", "", ""},
		{"n*,!n[2-3]", "n1,n4", "", ""},
		{"g?,!label:big", "g1", "", ""},
		{"!label:gpu,!n[1-3]", "n4", "", ""},
		{"!n9", "", `no host named "n9"`, ""},
		{"x*", "", `no host name matches "x*"`, ""},
		{"!*", "", "selects no host", ""},
		{"label:gpu,n1", "n1,g1,g2", "", ""},
		{"g2,label:big", "g2", "", ""},
		{"n9", "", `no host named "n9"`, ""},
		{"label:tpu", "", `no host has label "tpu"`, ""},
		// An inclusion that matches nothing warns when the rest select
		// hosts (an exclusion that matches nothing stays an error).
		{"n[1-2],label:tpu,!n2", "n1", "", `--on label:tpu: no host has label "tpu"; the other items select 1 host`},
		{"x*,g1", "g1", "", `--on x*: no host name matches "x*"`},
		{"n1,!label:tpu", "", `no host has label "tpu"`, ""},
		{"n[1-2],g[1", "", "--on g[1", ""}, // malformed: an error, never a warning
	}
	for _, tt := range tests {
		var warned []string
		got, err := Select(hosts, "--on", tt.sel, func(w string) { warned = append(warned, w) })
		if w := strings.Join(warned, "\n"); tt.warn == "" && w != "" || !strings.Contains(w, tt.warn) {
			t.Errorf("Select(%q) warned %q, want %q", tt.sel, w, tt.warn)
		}
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Select(%q) err = %v, want %q", tt.sel, err, tt.err)
			}
			continue
		}
		var names []string
		for _, h := range got {
			names = append(names, h.Name)
		}
		if g := strings.Join(names, ","); err != nil || g != tt.want {
			t.Errorf("Select(%q) = %s, %v; want %s", tt.sel, g, err, tt.want)
		}
	}
}

func TestExclude(t *testing.T) {
	hosts, _ := parse(t, "[[host]]\naddress = \"n[1-4]\"\n", testOpts)
	got, err := Exclude(hosts, "-x", "n1,n[3-4]")
	if err != nil || names(got) != "n2" {
		t.Errorf("Exclude = %s, %v", names(got), err)
	}
	if _, err := Exclude(hosts, "-x", "m1"); err == nil || !strings.HasPrefix(err.Error(), "-x m1:") {
		t.Errorf("unknown -x: %v", err)
	}
}

// TestSSHConfig checks that ~/.ssh/config, including Match, fills what
// hosts.toml leaves unset and never overrides what it sets.
func TestSSHConfig(t *testing.T) {
	needSSH(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config")
	if err := os.WriteFile(cfg, []byte(`
Host alias1
  HostName 10.9.9.1
  User cfguser
  Port 2200
  IdentityFile ~/.ssh/id_alias
  ProxyJump jump@bastion:22

Match host 10.9.9.2
  User matched
  Port 2300

Host *
  IdentitiesOnly yes
`), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := Options{SSHConfig: cfg, Home: dir, LocalUser: "me"}
	hosts, err := parse(t, `
[[host]]
address = "alias1"
[[host]]
address = "10.9.9.2"
[[host]]
address = "alias1"
name = "override"
user = "tomluser"
port = 22
`, opts)
	if err != nil {
		t.Fatal(err)
	}
	a, m, o := hosts[0], hosts[1], hosts[2]
	if a.Address != "10.9.9.1" || a.User != "cfguser" || a.Port != 2200 || a.ProxyJump != "jump@bastion:22" ||
		a.IdentityFiles[0] != filepath.Join(dir, ".ssh/id_alias") || !a.IdentitiesOnly {
		t.Errorf("alias1 = %+v", a)
	}
	if m.User != "matched" || m.Port != 2300 {
		t.Errorf("Match host: %+v", m)
	}
	if o.User != "tomluser" || o.Port != 22 || o.Address != "10.9.9.1" {
		t.Errorf("hosts.toml must win: %+v", o)
	}
	if _, err := parse(t, "[[host]]\naddress = \"a\"\n", Options{SSHConfig: filepath.Join(dir, "missing")}); err == nil {
		t.Error("a missing explicit --ssh-config is not an error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("[defaults]\nuser = \"x\"\n[[host]]\naddress = \"n[01-04]:22\"\nslots = 2\n")
	f.Add("[[host]]\naddress = \"[::1]:2222\"\nname = \"v6\"\nlabels = [\"a\"]\n")
	f.Add("[[host]]\naddress = \"a\"\nproxy_jump = \"u@b:1,c\"\nconnect_timeout = \"1s\"\n")
	f.Fuzz(func(t *testing.T, text string) {
		hosts, err := Parse(strings.NewReader(text), "f.toml", testOpts)
		if err != nil {
			if hosts != nil {
				t.Fatal("hosts and error both returned")
			}
			if !strings.HasPrefix(err.Error(), "f.toml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		seen := map[string]bool{}
		for _, h := range hosts {
			if h.Name == "" || h.Address == "" || h.Port < 1 || h.Port > 65535 || seen[h.Name] {
				t.Fatalf("invalid host accepted: %+v", h)
			}
			seen[h.Name] = true
		}
	})
}

// needSSH skips a test that evaluates ssh_config with ssh -G when there is
// no OpenSSH client, and fails it under CI=true, where nothing may skip.
func needSSH(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("ssh"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: the OpenSSH client is required")
		}
		t.Skip("no ssh client")
	}
}
