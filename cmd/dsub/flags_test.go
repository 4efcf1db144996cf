package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/dsub-dev/dsub/distributor"
	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// TestEveryFlagRejectsBadValues feeds every value-taking flag of every
// command zero, a negative number and garbage. Each value is either
// accepted (listed in accepts, and then only must not panic) or refused
// before anything runs: exit status 2 and a message naming the flag. It
// needs no host: the one host given refuses connections.
func TestEveryFlagRejectsBadValues(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	writeTestKey(t, filepath.Join(home, ".ssh", "id_ed25519"))
	t.Setenv("DSUB_HOSTS", "")
	// accepts lists flag=value pairs that are valid input.
	accepts := map[string]bool{}
	for _, s := range []string{
		"hosts-list=0", "hosts-list=garbage", // host names
		"timeout=0", "retries=0", // no limit, no retries
		"reduce-cmd=0", "reduce-cmd=-1", "reduce-cmd=garbage", // shell command lines
		"setup=0", "setup=-1", "setup=garbage", "teardown=0", "teardown=-1", "teardown=garbage",
		"return=0", "return=-1", "return=garbage", // file names in the job's directory
		"logs=0", "logs=-1", "logs=garbage", "out=0", "out=-1", "out=garbage", // directory names
		"output=0", "output=-1", "output=garbage", // report: file names
		"joblog=0", "joblog=-1", "joblog=garbage", // run: a file name
		"results=0", "results=-1", "results=garbage", // run: a directory name
		"halt=garbage", // checked below: this one must be refused
	} {
		accepts[s] = true
	}
	delete(accepts, "halt=garbage")
	base := map[string][]string{
		"ping": nil, "clean": nil,
		"exec":   {"--", "true"},
		"put":    {filepath.Join(home, ".ssh", "id_ed25519"), "/tmp/x"},
		"get":    {"/tmp/x", "got"},
		"report": {"."},
		"log":    {".", "1"},
	}
	root := newRootCmd(nil, &bytes.Buffer{}, &bytes.Buffer{})
	n := 0
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "version" || c.Name() == "completion" {
			continue
		}
		c.Flags().VisitAll(func(fl *pflag.Flag) {
			if fl.Value.Type() == "bool" {
				return
			}
			for _, v := range []string{"0", "-1", "garbage"} {
				n++
				t.Chdir(t.TempDir()) // valid --logs, --out values create directories
				args := cmdArgs(c, fl.Name, v, base)
				code, stderr := runCaught(t, args)
				name := fl.Name + "=" + v
				switch {
				case accepts[name]:
					if code == -1 {
						t.Errorf("dsub %s: panic: %s", strings.Join(args, " "), stderr)
					}
				case code != exitUsage:
					t.Errorf("dsub %s: exit %d, want 2; stderr:\n%s", strings.Join(args, " "), code, stderr)
				case !strings.Contains(stderr, "--"+fl.Name) && (fl.Shorthand == "" || !strings.Contains(stderr, "-"+fl.Shorthand+" ")):
					t.Errorf("dsub %s: the message does not name --%s:\n%s", strings.Join(args, " "), fl.Name, stderr)
				}
			}
		})
	}
	if n < 60 {
		t.Fatalf("only %d flag values tried: the flags were not found", n)
	}
}

// writeTestKey writes a fresh ed25519 private key to path.
func writeTestKey(t *testing.T, path string) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(path), 0o700)
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

// cmdArgs is a command line for c that is valid but for --flag=value.
func cmdArgs(c *cobra.Command, flag, value string, base map[string][]string) []string {
	args := []string{c.Name(), "--" + flag + "=" + value}
	if flag != "hosts-list" && flag != "hosts" && flag != "resume" && c.Flags().Lookup("hosts") != nil {
		args = append(args, "-w", "127.0.0.1:1")
	}
	if c.Name() == "run" && flag != "binary" && flag != "build" && flag != "commands" && flag != "resume" {
		args = append(args, "--binary", "/bin/true")
	}
	return append(args, base[c.Name()]...)
}

// runCaught runs dsub in-process and returns its exit status (-1 for a
// panic) and stderr.
func runCaught(t *testing.T, args []string) (code int, stderr string) {
	var out, errb bytes.Buffer
	defer func() {
		if r := recover(); r != nil {
			code, stderr = -1, fmt.Sprint(r)
		}
	}()
	ctx := context.Background()
	code = exitCode(ctx, run(ctx, args, nil, &out, &errb), &errb)
	return code, errb.String()
}

// -j N sets the slots of each host whose slots were not given, as GNU
// parallel's -j does for its sshlogins: an explicit N/ (or a hosts
// file's slots) wins.
func TestJobsSetsDefaultSlots(t *testing.T) {
	hf := hostFlags{list: "a,3/b", sshConfig: "none", fanout: 1, slots: 2}
	hosts, err := hf.hosts()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, h := range hosts {
		got[h.Name] = h.Slots
	}
	if got["a"] != 2 || got["b"] != 3 || len(got) != 2 {
		t.Errorf("slots %v, want a:2 (-j) and b:3 (3/b)", got)
	}
}

// exec -S's status is the largest remote one: 128+N for signal N, 255
// for a host that did not run the command.
func TestMaxStatus(t *testing.T) {
	exit := func(n int) error {
		return errs.E("", "", errs.KindRemoteExit, &remote.ExitError{Status: n})
	}
	killed := errs.E("", "", errs.KindRemoteExit, &remote.ExitError{Status: -1, Signal: "KILL"})
	lost := errs.E(errs.OpConnect, "", errs.KindTransport, errors.New("refused"))
	tests := []struct {
		errs []error
		want int
	}{
		{[]error{nil, nil}, 0},
		{[]error{nil, exit(3), exit(7), exit(2)}, 7},
		{[]error{exit(3), killed}, 137},
		{[]error{killed, lost}, 255},
	}
	for _, tt := range tests {
		var res []distributor.ExecResult
		for _, err := range tt.errs {
			res = append(res, distributor.ExecResult{Err: err})
		}
		if got := maxStatus(res); got != tt.want {
			t.Errorf("maxStatus(%v) = %d, want %d", tt.errs, got, tt.want)
		}
	}
}
