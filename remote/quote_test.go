package remote

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// FuzzCommandLine round-trips arguments, an environment value and a shell
// line through CommandLine and a real local `sh -c` (as sshd runs the
// login shell): each argument reaches the program byte for byte, the
// environment value arrives whole, and a NUL byte anywhere is refused
// rather than sent. Runs locally (no sshd), also under -short.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{"", "a b", "$(x)", "it's", "`id`", "\\", "\n", "-n", "~", "*", "\"", "é\x01\x7f", "a\x00b"} {
		f.Add(s, s+"2")
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		if os.Getenv("CI") == "true" {
			f.Fatal("CI=true: sh is required")
		}
		f.Skip("no sh")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		argv := []string{"printf", `%s\000`, a, b}
		c := &Cmd{Argv: argv, Env: map[string]string{"DSUB_V": b}, NoProcessGroup: true}
		line, err := CommandLine(c)
		if strings.ContainsRune(a+b, 0) {
			if err == nil {
				t.Fatalf("a NUL byte was not refused: %q", line)
			}
			return
		}
		if err != nil {
			t.Fatalf("CommandLine: %v", err)
		}
		out, err := exec.Command(sh, "-c", line).Output()
		if err != nil {
			t.Fatalf("sh -c %q: %v", line, err)
		}
		if want := a + "\x00" + b + "\x00"; string(out) != want {
			t.Fatalf("argv %q arrived as %q", argv[2:], out)
		}
		env, err := CommandLine(&Cmd{Shell: `printf %s "$DSUB_V"`, Env: map[string]string{"DSUB_V": b}, NoProcessGroup: true})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sh, "-c", env).Output(); err != nil || !bytes.Equal(out, []byte(b)) {
			t.Fatalf("environment value %q arrived as %q (%v)", b, out, err)
		}
	})
}

// TestCommandLineRefusesNUL: every field refuses a NUL byte.
func TestCommandLineRefusesNUL(t *testing.T) {
	for _, c := range []Cmd{
		{Argv: []string{"echo", "a\x00b"}},
		{Shell: "echo a\x00b"},
		{Shell: "true", Dir: "/tmp/a\x00b"},
		{Shell: "true", Env: map[string]string{"X": "a\x00b"}},
	} {
		if _, err := CommandLine(&c); err == nil || !strings.Contains(err.Error(), "NUL") {
			t.Errorf("CommandLine(%+v) = %v, want a NUL error", c, err)
		}
	}
}

// A signal name a host sends (an SSH exit-signal, an agent's exit) is
// kept only if it is a signal's: anything else, a forged joblog row
// among them, is UNKNOWN.
func TestSignalFromHost(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "",
		"TERM":                  "TERM",
		"KILL":                  "KILL",
		"SEGV":                  "SEGV",
		"KILL\t9\n7\th01\tx":    "UNKNOWN",
		"term":                  "UNKNOWN",
		"\x1b[31mKILL":          "UNKNOWN",
		strings.Repeat("A", 99): "UNKNOWN",
	} {
		if got := Signal(in); got != want {
			t.Errorf("Signal(%q) = %q, want %q", in, got, want)
		}
	}
}
