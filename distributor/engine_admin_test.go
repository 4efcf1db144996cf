package distributor

// More engine tests on fake hosts: shipping, preparation failures,
// records, and the admin commands.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/inventory"
	"github.com/dsub-dev/dsub/records"
	"github.com/dsub-dev/dsub/remote"
	"github.com/dsub-dev/dsub/remote/fakehost"
)

// hashAdmin answers the sha256sum a cache check runs, from h's files.
func hashAdmin(h **fakehost.Host) func(ctx context.Context, c *remote.Cmd) error {
	return func(ctx context.Context, c *remote.Cmd) error {
		if !strings.HasPrefix(c.Shell, "sha256sum -- ") {
			return nil
		}
		p, _, _ := strings.Cut(strings.TrimPrefix(c.Shell, "sha256sum -- "), " ")
		p = strings.Trim(p, "'")
		b, err := (*h).ReadFile(ctx, p)
		if err != nil {
			return fakehost.Exit(1)
		}
		sum := sha256.Sum256(b)
		io.WriteString(c.Stdout, hex.EncodeToString(sum[:])+"  "+p+"\n")
		return nil
	}
}

// The binary is shipped once into the content-addressed cache and found
// there by the next run; --file inputs go into the run directory; a
// resume with another binary is refused.
func TestEngineShipBinaryAndFiles(t *testing.T) {
	ctx := testCtx(t)
	var h *fakehost.Host
	h = fakehost.New("f01", fakehost.Options{Job: printJob, Admin: hashAdmin(&h)})
	c, err := NewClusterOf([]*Member{{Inv: fakeInv("f01", 2), Host: h}})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "prog")
	os.WriteFile(bin, []byte("#!/bin/sh\necho 1\n"), 0o755)
	input := filepath.Join(t.TempDir(), "input.dat")
	os.WriteFile(input, []byte("data"), 0o644)
	sum := sha256.Sum256([]byte("#!/bin/sh\necho 1\n"))
	cached := fakehost.Home + "/.dsub/bin/" + hex.EncodeToString(sum[:])

	var sent []int64
	var first records.RunDir
	for i := 0; i < 2; i++ {
		run := startFake(ctx, t, c, RunOptions{Binary: bin, Files: []string{input}, KeepRemote: true})
		run.submitShell(ctx, t, 3)
		if _, res, err := run.Wait(); err != nil || res != "6" {
			t.Fatalf("run %d: %q, %v\n%s", i, res, err, run.warnings())
		}
		m, err := records.ReadManifest(run.dir)
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, m.Hosts[0].Sent)
		if m.Binary == nil || m.Binary.SHA256 != hex.EncodeToString(sum[:]) || m.Hosts[0].Binary != m.Binary.SHA256 {
			t.Errorf("run.json binary: %+v, host %+v", m.Binary, m.Hosts[0])
		}
		if !h.Exists(fakehost.Home + "/.dsub/runs/" + run.ID() + "/input.dat") {
			t.Errorf("run %d: the --file input is not in the kept run directory", i)
		}
		first = run.dir
	}
	if fi, err := h.Stat(ctx, cached); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("cached binary: %v %v", fi, err)
	}
	if want := int64(len("#!/bin/sh\necho 1\n") + len("data")); sent[0] != want || sent[1] != int64(len("data")) {
		t.Errorf("bytes sent %v, want [%d 4]: the second run finds the binary cached", sent, want)
	}
	os.WriteFile(bin, []byte("#!/bin/sh\necho 2\n"), 0o755)
	if _, err := c.Start(ctx, RunOptions{Binary: bin, ResumeDir: string(first), LogsDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "the binary changed") {
		t.Errorf("resume with another binary: %v", err)
	}
}

func fakeInv(name string, slots int) *inventory.Host {
	return &inventory.Host{Name: name, Address: name, Slots: slots, Workdir: "~/.dsub"}
}

// A host that refuses us (authentication) is left out: the run goes on
// without it, and jobs pinned to it fail, whether they were submitted
// before it was found out or after (late).
func TestEnginePrepareFailure(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(fmt.Sprint("late=", late), func(t *testing.T) { prepareFailure(t, late) })
	}
}

func prepareFailure(t *testing.T, late bool) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 1)
	hs[1].Refuse(errs.E(errs.OpConnect, "f02", errs.KindAuth, errors.New("permission denied")))
	run := startFake(ctx, t, c, RunOptions{})
	if late {
		run.waitWarn(t, "host f02 left out of the run")
	}
	for i := 0; i < 3; i++ {
		spec := JobSpec{Shell: "job"}
		if i == 1 {
			spec.Pin = "f02"
		}
		run.Submit(ctx, spec)
	}
	run.Close()
	st, _, err := run.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.Succeeded != 2 || st.Failed != 1 || !strings.Contains(fmt.Sprint(run.results[2].Err), "pinned to f02, which could not be prepared") {
		t.Errorf("%d succeeded, %d failed; job 2: %v", st.Succeeded, st.Failed, run.results[2].Err)
	}
	if !strings.Contains(run.warnings(), "host f02 left out of the run: connect on f02: permission denied") {
		t.Errorf("warnings:\n%s", run.warnings())
	}
	m, _ := records.ReadManifest(run.dir)
	if m.Hosts[1].Error == "" || m.Hosts[0].OS != "linux" {
		t.Errorf("run.json hosts: %+v", m.Hosts)
	}
	// Every host refused: the run ends at once, saying so.
	hs[0].Refuse(errs.E(errs.OpConnect, "f01", errs.KindAuth, errors.New("permission denied")))
	run = startFake(ctx, t, c, RunOptions{})
	run.submitShell(ctx, t, 2)
	if _, _, err := run.Wait(); err == nil || !strings.Contains(err.Error(), "no host could be prepared") {
		t.Errorf("err = %v", err)
	}
}

// When a job's log cannot be written, the run stops with ErrRecords and
// the job stays unfinished, for a resume.
func TestEngineRecordsUnwritable(t *testing.T) {
	ctx := testCtx(t)
	c, _ := fakeCluster(t, 1, 1)
	run := startFake(ctx, t, c, RunOptions{})
	// output/ becomes a file: no stream can be created in it.
	os.RemoveAll(run.dir.Output())
	os.WriteFile(run.dir.Output(), nil, 0o600)
	run.submitShell(ctx, t, 3)
	st, _, err := run.Wait()
	if !errors.Is(err, ErrRecords) || st.Succeeded != 0 {
		t.Fatalf("err = %v, %d succeeded", err, st.Succeeded)
	}
	rows := 0
	for _, n := range outcomesOf(t, run.dir, "") {
		rows += n
	}
	if rows != 1 { // one slot: the first execution that could not log stops the run
		t.Errorf("%d executions after the records failed, want 1: %v", rows, outcomesOf(t, run.dir, ""))
	}
	if !strings.Contains(run.warnings(), "no new job starts") {
		t.Errorf("warnings:\n%s", run.warnings())
	}
}

// Ping, Exec and Clean fan out over the Host interface.
func TestEngineAdmin(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 3, 0)
	hs[2].Refuse(errs.E(errs.OpConnect, "f03", errs.KindAuth, errors.New("permission denied")))
	pr := c.Ping(ctx, 0)
	if !pr[0].Reachable || !pr[0].AuthOK || pr[0].Slots != 2 || pr[0].Info.OS != "linux" {
		t.Errorf("ping f01: %+v", pr[0])
	}
	if !pr[2].Reachable || pr[2].AuthOK || errs.KindOf(pr[2].Err) != errs.KindAuth {
		t.Errorf("ping f03: %+v", pr[2])
	}
	var outs [3]bytes.Buffer
	for i, h := range hs[:2] {
		h.SetAdmin(func(ctx context.Context, c *remote.Cmd) error {
			io.WriteString(c.Stdout, "hello "+c.Shell)
			if i == 1 {
				return fakehost.Exit(7)
			}
			return nil
		})
	}
	er := c.Exec(ctx, remote.Cmd{Shell: "x"}, 0, func(host string) (io.Reader, io.Writer, io.Writer) {
		i := map[string]int{"f01": 0, "f02": 1, "f03": 2}[host]
		return nil, &outs[i], io.Discard
	})
	if er[0].Err != nil || er[1].Exit != 7 || outs[0].String() != "hello x" || er[2].Err == nil {
		t.Errorf("exec: %+v, outputs %q", er, outs[0].String())
	}
	hs[0].SetAdmin(func(ctx context.Context, c *remote.Cmd) error {
		io.WriteString(c.Stdout, "in use: bin/abc\nnot dsub's: bin/notes.txt\n")
		return nil
	})
	cr := c.Clean(ctx, true)
	if len(cr[0].Kept) != 1 || cr[0].Foreign[0] != "bin/notes.txt" || cr[2].Err == nil {
		t.Errorf("clean: %+v", cr)
	}
}

// Put and Get copy trees through the Host's file operations, keeping
// modes and symlinks.
func TestEnginePutGet(t *testing.T) {
	ctx := testCtx(t)
	c, hs := fakeCluster(t, 2, 0)
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub"), 0o755)
	os.WriteFile(filepath.Join(src, "a.txt"), []byte("alpha"), 0o640)
	os.WriteFile(filepath.Join(src, "sub", "b.sh"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink("a.txt", filepath.Join(src, "link"))
	pr, err := c.Put(ctx, src, "~/dst/", TransferOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range pr {
		if r.Err != nil || r.Files != 2 {
			t.Errorf("put %s: %+v", r.Host, r)
		}
	}
	if fi, err := hs[1].Stat(ctx, "~/dst/tree/sub/b.sh"); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("put: b.sh %v %v", fi, err)
	}
	if l, _ := hs[0].ReadLink(ctx, "~/dst/tree/link"); l != "a.txt" {
		t.Errorf("put: link -> %q", l)
	}
	out := t.TempDir()
	gr, err := c.Get(ctx, "~/dst/tree", out, TransferOptions{Recursive: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range gr {
		if r.Err != nil {
			t.Errorf("get %s: %v", r.Host, r.Err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(out, "f02", "tree", "a.txt")); string(b) != "alpha" {
		t.Errorf("get: a.txt = %q", b)
	}
	if l, _ := os.Readlink(filepath.Join(out, "f01", "tree", "link")); l != "a.txt" {
		t.Errorf("get: link -> %q", l)
	}
	if _, err := c.Get(ctx, "~/dst/nothing*", out, TransferOptions{}); err != nil {
		t.Fatal(err)
	}
}
