package inventory

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const ansibleINI = `# an inventory as Ansible users keep it
mail.example.com

[web]
web[01:03].example.com
www ansible_host=10.0.0.5 ansible_port=2222 ansible_user="deploy"

[db]
db-[a:b].lan dsub_slots=4 ansible_python_interpreter=/usr/bin/python3

[web:vars]
ansible_user=www-data
http_port=80

[db:vars]
ansible_user=dbadmin

[prod:children]
web
db

[prod:vars]
ansible_user=ops
ansible_port=2200

[all:vars]
ansible_user=everyone
`

func TestParseAnsible(t *testing.T) {
	var notes []string
	hosts, err := ParseAnsible(strings.NewReader(ansibleINI), "inv", Options{SSHConfig: "none", LocalUser: "me", Home: "/home/me", Note: func(s string) { notes = append(notes, s) }})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hosts {
		got = append(got, fmt.Sprintf("%s %s@%s:%d slots=%d %v", h.Name, h.User, h.Address, h.Port, h.Slots, h.Labels))
	}
	want := []string{
		// [all:vars] under everything; no group: no label.
		"mail.example.com everyone@mail.example.com:22 slots=0 []",
		// web's vars over prod's (a child over its parent), prod's port.
		"web01.example.com www-data@web01.example.com:2200 slots=0 [prod web]",
		"web02.example.com www-data@web02.example.com:2200 slots=0 [prod web]",
		"web03.example.com www-data@web03.example.com:2200 slots=0 [prod web]",
		// The host's own over every group's.
		"www deploy@10.0.0.5:2222 slots=0 [prod web]",
		// db's user over prod's, though prod sorts after it.
		"db-a.lan dbadmin@db-a.lan:2200 slots=4 [db prod]",
		"db-b.lan dbadmin@db-b.lan:2200 slots=4 [db prod]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("hosts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "ansible_python_interpreter, http_port") {
		t.Errorf("notes = %q, want one naming the ignored variables", notes)
	}
	if o := hosts[4].Origin; o.Address != "inv:6" || o.Port != "inv:6" || o.User != "inv:6" {
		t.Errorf("www's origins = %+v, want its own line", o)
	}
}

func TestAnsibleRanges(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"n[01:03]", "n01 n02 n03"},
		{"n[1:9:4].x", "n1.x n5.x n9.x"},
		{"r[a:c]n[8:10]", "ran8 ran9 ran10 rbn8 rbn9 rbn10 rcn8 rcn9 rcn10"},
		{"plain", "plain"},
	} {
		got, err := expandAnsibleRange(tt.in)
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("expandAnsibleRange(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// Lines dsub cannot read are errors naming file:line.
func TestAnsibleErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"[web\nh1", `inv:1: "[web": want a section`},
		{"[web:stuff]\nh1", `inv:1: "[web:stuff]": want a section`},
		{"h1 ansible_port", `inv:1: "h1 ansible_port": after the host, want name=value`},
		{"h1 ansible_port=ssh", "inv:1: ansible_port=ssh: want a port number"},
		{"[g:vars]\njust words\n[g]\nh", `inv:2: "just words": in [g:vars], want name=value`},
		{"[g:children]\nweb db", `inv:2: "web db": in [g:children], want one group name per line`},
		{"n[3:1]", `inv:1: "n[3:1]": range [3:1] runs backwards`},
		{"n[1-3]", `inv:1: "n[1-3]": range [1-3]: want [start:end]`},
		{`h1 ansible_user="x`, `inv:1: "h1 ansible_user=\"x": unclosed "`},
		{"[a:children]\nb\n[b:children]\na\n[a]\nh", `group "a" is its own child: a > b > a`},
		{"# nothing\n[web]\n", "inv: no hosts"},
	} {
		_, err := ParseAnsible(strings.NewReader(tt.in), "inv", Options{SSHConfig: "none", LocalUser: "me", Home: "/h"})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestDetectFormat(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"hosts.toml", "h1\n", "toml"},
		{"inv.ini", "h1\n", "ansible"},
		{"hosts", "[defaults]\nuser = \"x\"\n[[host]]\naddress = \"a\"\n", "toml"},
		{"hosts", "[web]\nh1\n", "ansible"},
		{"hosts", "[all:vars]\nansible_user=x\nh1\n", "ansible"},
		{"hosts", "h1 ansible_host=10.0.0.1\n", "ansible"},
		{"hosts", "4/user@h1:22\n:\n[::1]:2222\n", "list"},
		{"nodefile", "c1\nc1\nc2\n", "list"},
	} {
		if got := DetectFormat(tt.name, []byte(tt.data)); got != tt.want {
			t.Errorf("DetectFormat(%s, %q) = %s, want %s", tt.name, tt.data, got, tt.want)
		}
	}
}
