package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func names(hosts []*Host) string {
	var out []string
	for _, h := range hosts {
		out = append(out, h.Name)
	}
	return strings.Join(out, ",")
}

func TestParseList(t *testing.T) {
	hosts, err := ParseList(strings.NewReader(`# pssh / GNU parallel --slf style
node[01-02]
  admin@gw:2222   # a comment
4/ops@[::1]:2200

8/big
`), "hosts.txt", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hosts); got != "node01,node02,gw:2222,[::1]:2200,big" {
		t.Fatalf("names = %s", got)
	}
	gw, v6, big := hosts[2], hosts[3], hosts[4]
	if gw.User != "admin" || gw.Port != 2222 || gw.Address != "gw" || gw.Source != "hosts.txt:3" {
		t.Errorf("gw = %+v", gw)
	}
	if v6.Address != "::1" || v6.Port != 2200 || v6.User != "ops" || v6.Slots != 4 {
		t.Errorf("v6 = %+v", v6)
	}
	if big.Slots != 8 || big.User != "u" || big.Port != 22 || big.IdentityFiles[0] != "/home/u/.ssh/id_ed25519" {
		t.Errorf("big = %+v", big)
	}
}

func TestListErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"a\nb c\n", "hosts.txt:2: \"b c\""},
		{"a\n0/b\n", "hosts.txt:2:"},
		{"a\n@b\n", "empty user"},
		{"n[1-2]\nn2\n", `hosts.txt:2: duplicate host name "n2" (also at hosts.txt:1)`},
		{"n[3-1]\n", "hosts.txt:1:"},
		{"a:99999\n", "hosts.txt:1:"},
		{"# only comments\n\n", "hosts.txt: no hosts"},
	}
	for _, tt := range tests {
		_, err := ParseList(strings.NewReader(tt.text), "hosts.txt", testOpts)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !IsConfigError(err) {
			t.Errorf("ParseList(%q) = %v; want a config error containing %q", tt.text, err, tt.want)
		}
	}
}

func TestFromList(t *testing.T) {
	hosts, err := FromList("node[01-03],admin@gw:2222", testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hosts); got != "node01,node02,node03,gw:2222" {
		t.Fatalf("names = %s", got)
	}
	if hosts[3].User != "admin" || hosts[3].Source != "-w admin@gw:2222" {
		t.Errorf("gw = %+v", hosts[3])
	}
	if _, err := FromList("a,a", testOpts); err == nil || !strings.Contains(err.Error(), `duplicate host name "a"`) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := FromList(",", testOpts); err == nil {
		t.Error("empty list accepted")
	}
}

// A hosts.toml is told from a plain host list by its name or content.
func TestDetectTOMLOrList(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		want       bool
	}{
		{"hosts.toml", "node1\n", true},
		{"hosts", "[[host]]\naddress = \"a\"\n", true},
		{"hosts", "[defaults]\n", true},
		{"hosts", "# x = y\nnode[01-04]\nuser@h:22\n", false},
		{"hosts", "[::1]:22\n", false},
	} {
		if got := DetectFormat(tt.name, []byte(tt.text)) == "toml"; got != tt.want {
			t.Errorf("DetectFormat(%q, %q) is toml: %v", tt.name, tt.text, got)
		}
	}
}

// TestDirNameCollision: host names that become one directory name are
// refused, naming both.
func TestDirNameCollision(t *testing.T) {
	_, err := parse(t, "[[host]]\naddress = \"a\"\nname = \"a/b\"\n[[host]]\naddress = \"b\"\nname = \"a_b\"\n", testOpts)
	if err == nil || !strings.Contains(err.Error(), `"a/b" (hosts.toml:1) and "a_b" both become the directory name "a_b"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestRelativePaths: identity files, known_hosts and ssh_config in a
// hosts file resolve against the file's own directory.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hosts.toml")
	os.WriteFile(f, []byte("[defaults]\nidentity_files = [\"keys/id\"]\nknown_hosts = [\"kh\", \"/abs/kh\"]\n[[host]]\naddress = \"a\"\n"), 0o600)
	hosts, err := Load(f, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	h := hosts[0]
	if h.IdentityFiles[0] != filepath.Join(dir, "keys/id") || h.KnownHosts[0] != filepath.Join(dir, "kh") || h.KnownHosts[1] != "/abs/kh" {
		t.Errorf("paths = %v %v", h.IdentityFiles, h.KnownHosts)
	}
	// A plain list in the same place loads as a list.
	os.WriteFile(f[:len(f)-5], []byte("u@a\n"), 0o600)
	if hosts, err := Load(f[:len(f)-5], testOpts); err != nil || hosts[0].User != "u" {
		t.Errorf("plain list: %v %v", hosts, err)
	}
}

// TestSSHConfigKnownHostsAndFileKey: UserKnownHostsFile and
// GlobalKnownHostsFile from the OpenSSH config are honoured, as ssh -F
// does, and a hosts file can name its ssh_config (relative to itself).
func TestSSHConfigKnownHostsAndFileKey(t *testing.T) {
	needSSH(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ssh_config"), []byte(`
Host h01
  HostName 127.0.0.9
  Port 2201
  User dsub
Host *
  IdentityFile /keys/id_test
  UserKnownHostsFile /state/known_hosts
  GlobalKnownHostsFile /etc/pinned_hosts
`), 0o600)
	f := filepath.Join(dir, "hosts.toml")
	os.WriteFile(f, []byte("[defaults]\nssh_config = \"ssh_config\"\n[[host]]\naddress = \"h01\"\n"), 0o600)
	opts := testOpts
	opts.SSHConfig = ""
	hosts, err := Load(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	h := hosts[0]
	if h.Name != "h01" || h.Address != "127.0.0.9" || h.Port != 2201 || h.User != "dsub" || h.IdentityFiles[0] != "/keys/id_test" ||
		strings.Join(h.KnownHosts, " ") != "/state/known_hosts /etc/pinned_hosts" {
		t.Errorf("h01 = %+v", h)
	}
	// -w with --ssh-config gets the same.
	opts.SSHConfig = filepath.Join(dir, "ssh_config")
	hosts, err = FromList("h01", opts)
	if err != nil || hosts[0].Port != 2201 || hosts[0].KnownHosts[0] != "/state/known_hosts" {
		t.Errorf("-w h01 = %+v, %v", hosts, err)
	}
	// ssh_config only in [defaults].
	if _, err := parse(t, "[[host]]\naddress = \"a\"\nssh_config = \"x\"\n", testOpts); err == nil || !strings.Contains(err.Error(), "belongs in [defaults]") {
		t.Errorf("ssh_config in [[host]]: %v", err)
	}
}

// TestJumpHostsResolvedThroughSSHConfig: each ProxyJump hop is resolved
// as ssh resolves it, as a host of its own in the same config (HostName,
// User, Port, IdentityFile); what the ProxyJump string spells out wins.
func TestJumpHostsResolvedThroughSSHConfig(t *testing.T) {
	needSSH(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ssh_config")
	os.WriteFile(cfg, []byte(`
Host bastion
  HostName 10.7.7.7
  User jumper
  Port 2222
  IdentityFile /keys/jump
Host inner
  HostName 10.8.8.8
  ProxyJump bastion
Host *
  IdentityFile /keys/default
`), 0o600)
	opts := Options{SSHConfig: cfg, Home: dir, LocalUser: "me"}
	hosts, err := parse(t, "[[host]]\naddress = \"inner\"\n[[host]]\naddress = \"other\"\nproxy_jump = \"ops@bastion:22\"\n", opts)
	if err != nil {
		t.Fatal(err)
	}
	cfgIn, _ := hosts[0].Remote()
	if len(cfgIn.ProxyJump) != 1 {
		t.Fatalf("inner's jumps: %+v", cfgIn.ProxyJump)
	}
	j := cfgIn.ProxyJump[0]
	if j.Host != "10.7.7.7" || j.User != "jumper" || j.Port != 2222 || len(j.IdentityFiles) == 0 || j.IdentityFiles[0] != "/keys/jump" {
		t.Errorf("inner's hop = %+v", j)
	}
	cfgOther, _ := hosts[1].Remote()
	if j := cfgOther.ProxyJump[0]; j.Host != "10.7.7.7" || j.User != "ops" || j.Port != 22 {
		t.Errorf("other's hop (user and port spelled out) = %+v", j)
	}
}

// A host listed k times is k slots, as in a PBS/Torque $PBS_NODEFILE; a
// repeat that gives N/ (or another user) is still an error, naming both
// lines.
func TestParseListPBSNodefile(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{"n1\nn2\nn1\nn1\n", "n1=3 n2=0", ""},
		{"n1\nn1\n", "n1=2", ""},
		{"n1:2222\nn1:2222\nn1\n", "n1:2222=2 n1=0", ""},
		{"4/n1\nn1\n", "", `hosts.txt:2: duplicate host name "n1" (also at hosts.txt:1)`},
		{"n1\n2/n1\n", "", `hosts.txt:2: duplicate host name "n1" (also at hosts.txt:1)`},
		{"n1\nroot@n1\n", "", `hosts.txt:2: duplicate host name "n1"`},
		{"n[1-2]\nn1\n", "", `hosts.txt:2: duplicate host name "n1" (also at hosts.txt:1)`},
	}
	for _, tt := range tests {
		hosts, err := ParseList(strings.NewReader(tt.in), "hosts.txt", testOpts)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tt.in, err)
			continue
		}
		var got []string
		for _, h := range hosts {
			got = append(got, fmt.Sprintf("%s=%d", h.Name, h.Slots))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%q: %s, want %s", tt.in, strings.Join(got, " "), tt.want)
		}
	}
	// A -w list has no such meaning: a repeat is an error.
	if _, err := FromList("n1,n1", testOpts); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("-w n1,n1: %v", err)
	}
}

func TestFromSlurm(t *testing.T) {
	tests := []struct {
		list, cpus, want, wantErr string
	}{
		{"node[01-04,07],gpu[1-2]", "4(x3),8,2(x3)", "node01=4 node02=4 node03=4 node04=8 node07=2 gpu1=2 gpu2=2", ""},
		{"n[1-2]", "", "n1=0 n2=0", ""},
		{"n[1-2]", "4", "", `$SLURM_JOB_CPUS_PER_NODE: "4" gives 1 nodes, $SLURM_JOB_NODELIST 2`},
		{"n[1-2]", "4(x2", "", `item "4(x2": want N or N(xK)`},
		{"n[1-2]", "0(x2)", "", `item "0(x2)"`},
		{"", "4", "", "$SLURM_JOB_NODELIST: not set"},
		{"n[2-1]", "", "", "$SLURM_JOB_NODELIST: "},
	}
	for _, tt := range tests {
		env := map[string]string{"SLURM_JOB_NODELIST": tt.list, "SLURM_JOB_CPUS_PER_NODE": tt.cpus}
		hosts, err := FromSlurm(func(k string) string { return env[k] }, testOpts)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%q %q: err = %v, want %q", tt.list, tt.cpus, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q %q: %v", tt.list, tt.cpus, err)
			continue
		}
		var got []string
		for _, h := range hosts {
			got = append(got, fmt.Sprintf("%s=%d", h.Name, h.Slots))
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("%q %q: %s, want %s", tt.list, tt.cpus, strings.Join(got, " "), tt.want)
		}
	}
}

// GNU parallel's ":" (and "local") is the master's own machine: no SSH
// settings apply to it.
func TestParseListLocal(t *testing.T) {
	hosts, err := ParseList(strings.NewReader("4/:\nn1\n"), "logins", Options{SSHConfig: "none", Home: "/h", LocalUser: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) != 2 || !hosts[0].Local || hosts[0].Name != "local" || hosts[0].Slots != 4 || hosts[1].Local {
		t.Fatalf("hosts = %+v %+v", *hosts[0], *hosts[1])
	}
	// Listed twice, as a PBS nodefile lists a host: two slots.
	if hs, err := ParseList(strings.NewReader(":\nlocal\n"), "logins", Options{SSHConfig: "none"}); err != nil || len(hs) != 1 || hs[0].Slots != 2 || !hs[0].Local {
		t.Errorf("the local machine on two lines: %v, %v; want one local host with 2 slots", hs, err)
	}
}
