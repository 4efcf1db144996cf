package distributor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// writeELF writes the header of a Linux executable for machine: enough
// for inspectBinary, and a distinct hash per name.
func writeELF(t *testing.T, dir, name string, machine elf.Machine) (path, sha string) {
	t.Helper()
	var b bytes.Buffer
	h := elf.Header64{Type: uint16(elf.ET_EXEC), Machine: uint16(machine), Version: uint32(elf.EV_CURRENT), Ehsize: 64}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS], h.Ident[elf.EI_DATA], h.Ident[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)
	binary.Write(&b, binary.LittleEndian, &h)
	b.WriteString(name)
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	return path, hex.EncodeToString(sum[:])
}

// A host whose platform differs from the agent's gets an agent from
// RunOptions.AgentFor, asked once per platform however many hosts share
// it, and checked by what the file is, not what it is called. Without
// one, the host runs jobs as sessions, its note saying why. (Fake hosts
// cannot run an agent, so every host ends in session mode here, each
// after the agent it was sent failed to answer.)
func TestEngineAgentForOtherPlatform(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	amd, amdSHA := writeELF(t, dir, "dsub", elf.EM_X86_64)
	arm, armSHA := writeELF(t, dir, "dsub-linux-arm64", elf.EM_AARCH64)
	notRISCV, _ := writeELF(t, dir, "dsub-linux-riscv64", elf.EM_X86_64)

	var mu sync.Mutex
	started := map[string]string{} // host → the agent binary it was told to start
	calls := map[string]int{}      // arch → AgentFor calls
	arches := map[string]string{"a01": "amd64", "r01": "arm64", "r02": "arm64", "v01": "riscv64", "p01": "ppc64le"}
	var ms []*Member
	for _, name := range []string{"a01", "r01", "r02", "v01", "p01"} {
		name := name
		var h *fakehost.Host
		hash := hashAdmin(&h)
		h = fakehost.New(name, fakehost.Options{Job: printJob, Info: remote.Info{OS: "linux", Arch: arches[name], CPUs: 2},
			Admin: func(ctx context.Context, c *remote.Cmd) error {
				if len(c.Argv) > 1 && c.Argv[1] == "agent" {
					mu.Lock()
					started[name] = c.Argv[0]
					mu.Unlock()
					return nil // no agent answers: the host falls back to sessions
				}
				return hash(ctx, c)
			}})
		ms = append(ms, &Member{Inv: &inventory.Host{Name: name, Address: name, Slots: 2, Workdir: "~/.dsub"}, Host: h, Timeout: time.Second})
	}
	c, err := NewClusterOf(ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	run := startFake(ctx, t, c, RunOptions{Launch: LaunchAuto, Agent: amd,
		AgentFor: func(ctx context.Context, goos, goarch string) (string, error) {
			mu.Lock()
			calls[goos+"/"+goarch]++
			mu.Unlock()
			switch goarch {
			case "arm64":
				return arm, nil
			case "riscv64":
				return notRISCV, nil
			}
			return "", errors.New("none for this platform")
		}})
	// Every host settles its launcher before a job is sent: a run that
	// ended first would leave hosts still preparing.
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	go run.submitShell(ctx, t, 20)
	if _, res, err := run.Wait(); err != nil || res != "210" {
		t.Fatalf("result %q, %v\n%s", res, err, run.warnings())
	}

	mu.Lock()
	defer mu.Unlock()
	if want := map[string]int{"linux/arm64": 1, "linux/riscv64": 1, "linux/ppc64le": 1}; !maps.Equal(calls, want) {
		t.Errorf("AgentFor calls %v, want %v (once per other platform)", calls, want)
	}
	wantBin := map[string]string{"a01": amdSHA, "r01": armSHA, "r02": armSHA}
	for name, sha := range wantBin {
		if got := started[name]; !strings.HasSuffix(got, "/bin/"+sha) {
			t.Errorf("%s (%s) started the agent %q, want the one with hash %s", name, arches[name], got, sha[:12])
		}
	}
	for _, name := range []string{"v01", "p01"} {
		if got, ok := started[name]; ok {
			t.Errorf("%s started an agent (%s), but none suits it", name, got)
		}
	}
	m, err := records.ReadManifest(run.dir)
	if err != nil {
		t.Fatal(err)
	}
	notes := map[string]string{}
	for _, h := range m.Hosts {
		if h.Launcher != LaunchSession {
			t.Errorf("%s: launcher %q, want session (a fake host runs no agent)", h.Name, h.Launcher)
		}
		notes[h.Name] = h.LaunchNote
	}
	for name, want := range map[string]string{
		"v01": "is built for linux/amd64",
		"p01": "no agent for linux/ppc64le: none for this platform",
	} {
		if !strings.Contains(notes[name], want) {
			t.Errorf("%s's note %q, want it to say %q", name, notes[name], want)
		}
	}
}

// A job that waits in its host's window (an agent's queue) is timed from
// when it starts there, not from when it was sent: otherwise job times,
// CPU efficiency and the joblog count the wait, and a host's efficiency
// passes 100%.
func TestEngineWindowWaitIsNotJobTime(t *testing.T) {
	ctx := testCtx(t)
	h := fakehost.New("f01", fakehost.Options{Slots: 1, Job: func(ctx context.Context, p *fakehost.Proc) error {
		if p.Job == 1 {
			time.Sleep(400 * time.Millisecond) // job 2 waits behind it
		}
		return printJob(ctx, p)
	}})
	c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 1), Host: h, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	dur := map[int]time.Duration{}
	run := startFake(ctx, t, c, RunOptions{OnResult: func(r Result) {
		mu.Lock()
		dur[r.Job] = r.Duration
		mu.Unlock()
	}})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run.submitShell(ctx, t, 2)
	if _, res, err := run.Wait(); err != nil || res != "3" {
		t.Fatalf("%q, %v", res, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if dur[1] < 400*time.Millisecond || dur[2] >= 400*time.Millisecond {
		t.Errorf("job times %v, %v: want job 1 ≥ 400ms (it slept) and job 2 < 400ms (it only waited)", dur[1], dur[2])
	}
}

// --timeout runs from a job's start on its host, not from when it was
// sent: a job that waited in an agent's window behind another keeps its
// whole limit. Here each job runs 0.7 of the limit, the second after
// waiting 0.7 of it; a third never ends and is killed at the limit.
func TestEngineTimeoutStartsWhenTheJobDoes(t *testing.T) {
	ctx := testCtx(t)
	const limit = 2 * time.Second
	h := fakehost.New("f01", fakehost.Options{Slots: 1, Job: func(ctx context.Context, p *fakehost.Proc) error {
		d := limit * 7 / 10
		if p.Job == 3 {
			d = time.Hour
		}
		select {
		case <-time.After(d):
			return printJob(ctx, p)
		case <-ctx.Done():
			return fakehost.Exit(143)
		}
	}})
	c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 1), Host: h, Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var mu sync.Mutex
	failed := map[int]error{}
	run := startFake(ctx, t, c, RunOptions{Timeout: limit, OnResult: func(r Result) {
		mu.Lock()
		failed[r.Job] = r.Err
		mu.Unlock()
	}})
	if err := run.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	run.submitShell(ctx, t, 3)
	st, _, _ := run.Wait()
	mu.Lock()
	defer mu.Unlock()
	if failed[1] != nil || failed[2] != nil {
		t.Errorf("job 1: %v; job 2 (it waited in the window first): %v; want both to succeed", failed[1], failed[2])
	}
	if failed[3] == nil || !strings.Contains(failed[3].Error(), "timed out after 2s") {
		t.Errorf("job 3 (never ends): %v, want it timed out", failed[3])
	}
	if st.Succeeded != 2 || st.Failed != 1 {
		t.Errorf("stats %+v, want 2 succeeded and 1 failed", st)
	}
}
