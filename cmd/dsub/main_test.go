package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dsub-dev/dsub/testenv"
)

var cluster *testenv.Cluster

func TestMain(m *testing.M) {
	// Agent mode ships the running binary as the agent: in tests, this
	// one, which must then be dsub's agent and nothing else.
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		os.Exit(exitCode(context.Background(), run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr))
	}
	testscript.Main(withCluster{m}, map[string]func(){
		"dsub": func() {
			code := exitCode(context.Background(), run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr), os.Stderr)
			os.Exit(code)
		},
	})
}

// withCluster starts the shared testenv cluster around the package's tests
// (but not around the dsub subprocesses testscript re-executes).
type withCluster struct{ m *testing.M }

func (w withCluster) Run() int {
	return testenv.Main(w.m, 4, func(c *testenv.Cluster) { cluster = c })
}

// TestScripts runs testdata/script/*.txtar against the shared cluster.
// Each script sees $HOSTS (the cluster's hosts.toml), $KEY, $KNOWN, and
// $SSHCONFIG (an ssh_config for ssh -F naming h01..), and $ADDRn /
// $USERn / $HOSTKEYn for host hn.
func TestScripts(t *testing.T) {
	testenv.Require(t, cluster)
	t.Logf("testenv backend: %s", cluster.Backend)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("HOSTS", cluster.HostsFile)
			repo, _ := filepath.Abs("../..")
			env.Setenv("REPO", repo)
			env.Setenv("GOCACHE", os.Getenv("GOCACHE"))
			if env.Getenv("GOCACHE") == "" {
				if c, err := os.UserCacheDir(); err == nil {
					env.Setenv("GOCACHE", filepath.Join(c, "go-build"))
				}
			}
			env.Setenv("GOPATH", goEnv("GOPATH"))
			env.Setenv("GOMODCACHE", goEnv("GOMODCACHE"))
			env.Setenv("PATH", os.Getenv("PATH"))
			env.Setenv("KEY", cluster.KeyFile)
			env.Setenv("KNOWN", cluster.KnownHosts)
			env.Setenv("SSHCONFIG", cluster.SSHConfig)
			env.Setenv("HOME", env.WorkDir) // no ~/.ssh/config, no agent
			env.Setenv("SSH_AUTH_SOCK", "")
			for i, h := range cluster.Hosts {
				env.Setenv(fmt.Sprintf("ADDR%d", i+1), h.HostPort())
				env.Setenv(fmt.Sprintf("USER%d", i+1), h.User)
				env.Setenv(fmt.Sprintf("HOSTKEY%d", i+1), h.HostKey)
				env.Setenv(fmt.Sprintf("KHADDR%d", i+1), fmt.Sprintf("[%s]:%d", h.Addr, h.Port))
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// expand FILE... replaces $VARs in files with the script's env.
			"expand": func(ts *testscript.TestScript, neg bool, args []string) {
				for _, f := range args {
					ts.Check(os.WriteFile(ts.MkAbs(f), []byte(os.Expand(ts.ReadFile(f), ts.Getenv)), 0o600))
				}
			},
			// noprocs PATTERN waits (up to 10 s) until no process on any
			// host matches PATTERN (pgrep -f), failing if one remains.
			"noprocs": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 1 || neg {
					ts.Fatalf("usage: noprocs PATTERN")
				}
				ts.Check(cluster.WaitNoProcesses(context.Background(), args[0], 10*time.Second))
			},
			// pause/unpause HOST inject testenv faults.
			"fault": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: fault pause|unpause|kill|restart HOST")
				}
				f := map[string]func(context.Context, string) error{
					"pause": cluster.Pause, "unpause": cluster.Unpause, "kill": cluster.Kill, "restart": cluster.Restart,
				}[args[0]]
				if f == nil {
					ts.Fatalf("unknown fault %q", args[0])
				}
				ts.Check(f(context.Background(), args[1]))
			},
		},
	})
}

func goEnv(k string) string {
	out, _ := exec.Command("go", "env", k).Output()
	return strings.TrimSpace(string(out))
}

// TestExitCodes checks the documented exit statuses end to end.
func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[[host]]\naddress = \"n[1-3]\"\n[[host]]\naddress = \"n2\"\n"), 0o600)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"version", []string{"version"}, 0, ""},
		{"unknown command", []string{"nope"}, 2, "unknown command"},
		{"unknown flag", []string{"ping", "--nope"}, 2, "unknown flag"},
		{"missing hosts file", []string{"ping", "--hosts", filepath.Join(dir, "missing.toml")}, 2, "missing.toml: cannot read hosts file"},
		{"duplicate after range", []string{"exec", "--hosts", bad, "--", "true"}, 2, `bad.toml:3: duplicate host name "n2"`},
		{"put arity", []string{"put", "x"}, 2, "takes 2 arguments"},
		{"report arity", []string{"report"}, 2, "report takes 1 argument, got 0"},
		{"shared return dir", []string{"run", "--local", "1", "--return", "out.txt", "--return-dir", dir, "--", "true", ":::", "a"}, 2, `--return "out.txt" with --return-dir: every job would write out.txt there`},
		{"report two runs", []string{"report", dir, dir}, 2, "report takes 1 argument, got 2"},
		{"bad selector", []string{"ping", "--hosts", bad, "--on", "zz"}, 2, "bad.toml"},
		{"report of no run", []string{"report", dir}, 2, dir + " is not a run directory"},
		{"ui-control alone", []string{"run", "--local", "1", "--ui-control", "--", "true"}, 2, "--ui-control needs --ui"},
		{"ui address", []string{"run", "--local", "1", "--ui=256.1.1.1:0", "--", "true"}, 2, "--ui 256.1.1.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := exitCode(context.Background(), run(context.Background(), tt.args, nil, &out, &errb), &errb)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d containing %q", code, errb.String(), tt.code, tt.want)
			}
		})
	}
	if cluster == nil {
		return
	}
	var out, errb bytes.Buffer
	code := exitCode(context.Background(), run(context.Background(), []string{"exec", "--hosts", cluster.HostsFile, "--", "exit 3"}, nil, &out, &errb), &errb)
	if code != 1 {
		t.Errorf("remote failure: exit %d, want 1 (%s)", code, errb.String())
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(time.Second); cancel() }()
	code = exitCode(ctx, run(ctx, []string{"exec", "--hosts", cluster.HostsFile, "--", "sleep 30"}, nil, &out, &errb), &errb)
	if code != 130 {
		t.Errorf("interrupted: exit %d, want 130", code)
	}
}

// TestOfflineScripts runs testdata/offline/*.txtar: commands that reach
// no host (dsub hosts, run --dry-run), so they run with -short and no
// Docker. HOME is the script's directory: no ~/.ssh/config applies.
func TestOfflineScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/offline",
		Setup: func(env *testscript.Env) error {
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("PATH", os.Getenv("PATH"))
			env.Setenv("DSUB_HOSTS", "")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			// [have:PROG]: PROG is on PATH (the oracles).
			if prog, ok := strings.CutPrefix(cond, "have:"); ok {
				_, err := exec.LookPath(prog)
				if err != nil && os.Getenv("CI") == "true" {
					return false, fmt.Errorf("CI=true: %s is missing (scripts/setup.sh installs it)", prog)
				}
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}
