package remote

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Quote returns s quoted for a POSIX shell, such that the shell yields
// exactly s as one word: every byte, including newlines, NULs excepted
// (which no argv can hold).
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	if safeWord.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

var safeWord = regexp.MustCompile(`^[A-Za-z0-9_@%+=:,./-]+$`)

// QuoteArgv quotes each argument and joins them with spaces.
func QuoteArgv(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = Quote(a)
	}
	return strings.Join(q, " ")
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// pgidMarker starts the line a wrapped command writes to stderr before
// anything else, carrying its process group id. The record separator byte
// keeps it from colliding with real output.
const pgidMarker = "\x1edsub-pgid "

// ValidCmd checks what every implementation of Host refuses: a command
// that sets both or neither of Argv and Shell, and a NUL byte anywhere.
func ValidCmd(c *Cmd) error {
	if (len(c.Argv) == 0) == (c.Shell == "") {
		return fmt.Errorf("command: set exactly one of Argv and Shell")
	}
	// A NUL byte cannot cross a command line: sshd drops the whole
	// connection on one, taking every other session on it down.
	for _, a := range c.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("command: argument %q contains a NUL byte", a)
		}
	}
	if strings.IndexByte(c.Shell, 0) >= 0 {
		return fmt.Errorf("command: shell line %q contains a NUL byte", c.Shell)
	}
	if strings.IndexByte(c.Dir, 0) >= 0 {
		return fmt.Errorf("command: directory %q contains a NUL byte", c.Dir)
	}
	for k, v := range c.Env {
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("command: environment variable %s: value %q contains a NUL byte", k, v)
		}
	}
	return nil
}

// CommandLine builds the line sent to the remote login shell for c: report
// the process group, export the environment, change directory, then exec
// the argv (or eval the shell line) so that the command keeps the group
// leader's pid. It fails on an invalid environment name or an empty command.
func CommandLine(c *Cmd) (string, error) {
	if err := ValidCmd(c); err != nil {
		return "", err
	}
	var b strings.Builder
	if !c.NoProcessGroup {
		// sshd starts every session with setsid(), so $$ is the
		// process group id of everything the command starts.
		b.WriteString(`printf '\036dsub-pgid %d\n' $$ >&2; `)
	}
	if len(c.Env) > 0 {
		keys := make([]string, 0, len(c.Env))
		for k := range c.Env {
			if !envName.MatchString(k) {
				return "", fmt.Errorf("command: invalid environment variable name %q", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("export")
		for _, k := range keys {
			b.WriteString(" " + k + "=" + Quote(c.Env[k]))
		}
		b.WriteString("; ")
	}
	if c.Dir != "" {
		b.WriteString("cd " + QuotePath(c.Dir) + " && ")
	}
	if len(c.Argv) > 0 {
		b.WriteString("exec " + QuoteArgv(c.Argv))
	} else {
		b.WriteString("eval " + Quote(c.Shell))
	}
	return b.String(), nil
}

// QuotePath is Quote for a path that may start with "~/", which is left to
// expand to the login user's home directory.
func QuotePath(p string) string {
	switch {
	case p == "~":
		return `"$HOME"`
	case strings.HasPrefix(p, "~/"):
		return `"$HOME"/` + Quote(p[2:])
	case strings.HasPrefix(p, "-"):
		return "./" + Quote(p)
	}
	return Quote(p)
}
