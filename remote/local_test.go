package remote

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/errs"
)

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	return !strings.Contains(s[strings.LastIndexByte(s, ')'):], ") Z ")
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d is still alive", pid)
	}
}

// The local host keeps Host's contract: exit statuses, environment and
// directory, stdin, and a cancelled command's whole group killed,
// including a child that ignores TERM and outlives its shell.
func TestLocalHostRun(t *testing.T) {
	h := NewLocalHost("local")
	ctx := context.Background()
	dir := t.TempDir()
	var out bytes.Buffer
	err := h.Run(ctx, &Cmd{Argv: []string{"sh", "-c", `echo "$X $(pwd) $(cat)"; exit 3`}, Env: map[string]string{"X": "it's"}, Dir: dir, Stdin: strings.NewReader("in"), Stdout: &out})
	var x *ExitError
	if !errors.As(err, &x) || x.Status != 3 || errs.KindOf(err) != errs.KindRemoteExit {
		t.Fatalf("Run = %v, want exit status 3", err)
	}
	if got := strings.TrimSpace(out.String()); got != "it's "+dir+" in" {
		t.Errorf("stdout %q", got)
	}

	// Cancel: the group dies, the TERM-proof grandchild included.
	pidFile := filepath.Join(dir, "pid")
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- h.Run(cctx, &Cmd{Shell: `sh -c 'trap "" TERM; echo $$ > ` + pidFile + `; while :; do sleep 1; done' & wait`})
	}()
	var pid int
	for i := 0; i < 100 && pid == 0; i++ {
		time.Sleep(50 * time.Millisecond)
		b, _ := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	if pid == 0 {
		t.Fatal("the job never started")
	}
	cancel()
	if err := <-done; errs.KindOf(err) != errs.KindCanceled {
		t.Errorf("cancelled Run = %v, want errs.KindCanceled", err)
	}
	waitGone(t, pid)

	// Timeout: errs.KindTimeout, from the command's start.
	if err := h.Run(ctx, &Cmd{Shell: "sleep 30", Timeout: 200 * time.Millisecond}); errs.KindOf(err) != errs.KindTimeout {
		t.Errorf("Run past its timeout = %v, want errs.KindTimeout", err)
	}
}

// KillMarked kills the groups of processes that carry the marker, and
// leaves the others alone.
func TestLocalHostKillMarked(t *testing.T) {
	h := NewLocalHost("local")
	marker := "DSUB_RUN=local-test-" + strconv.Itoa(os.Getpid())
	start := func(env string) int {
		var out bytes.Buffer
		// The job detaches (setsid, as a lost command would be) and
		// reports its pid; it lives on after Run returns.
		err := h.Run(context.Background(), &Cmd{Shell: `setsid sh -c 'while :; do sleep 1; done' </dev/null >/dev/null 2>&1 & echo $!`, Env: map[string]string{strings.Split(env, "=")[0]: strings.Split(env, "=")[1]}, Stdout: &out})
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(out.String()))
		return pid
	}
	marked, other := start(marker), start("DSUB_RUN=someone-else")
	defer syscall.Kill(other, syscall.SIGKILL)
	time.Sleep(200 * time.Millisecond) // setsid has exec'd
	n, err := h.KillMarked(context.Background(), Marker{Env: marker})
	if err != nil || n != 1 {
		t.Fatalf("KillMarked = %d, %v; want 1", n, err)
	}
	waitGone(t, marked)
	if !alive(other) {
		t.Error("KillMarked killed a process without the marker")
	}
}

// Files: uploads are atomic and private on the way, paths "~/" and
// relative are under the home directory, and RemoveAll refuses home.
func TestLocalHostFiles(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	h := NewLocalHost("local")
	ctx := context.Background()
	if _, err := h.Upload(ctx, "~/a/b/f", strings.NewReader("data"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(home, "a/b/f"))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Fatalf("uploaded file: %v %v", fi, err)
	}
	if b, err := h.ReadFile(ctx, "a/b/f"); err != nil || string(b) != "data" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
	if m, err := h.Glob(ctx, "a/*/f"); err != nil || len(m) != 1 || m[0] != "a/b/f" {
		t.Errorf("Glob = %q, %v", m, err)
	}
	if err := h.RemoveAll(ctx, "~"); errs.KindOf(err) != errs.KindConfig {
		t.Errorf("RemoveAll(~) = %v, want refused", err)
	}
	if err := h.RemoveAll(ctx, "~/a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, "a")); !os.IsNotExist(err) {
		t.Errorf("~/a still there: %v", err)
	}
	if info, err := h.Describe(ctx, "~/.cache/dsub"); err != nil || info.CPUs < 1 || info.Home != home {
		t.Errorf("Describe = %+v, %v", info, err)
	}
}
