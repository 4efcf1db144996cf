package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// serveAgent runs an in-process ssh-agent holding keys on a unix socket
// and points SSH_AUTH_SOCK at it for the test.
func serveAgent(t *testing.T, keys ...any) {
	t.Helper()
	kr := agent.NewKeyring()
	for _, k := range keys {
		if err := kr.Add(agent.AddedKey{PrivateKey: k}); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go agent.ServeAgent(kr, c)
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
}

// TestAgentAuth: the agent is asked first; a passphrase-protected identity
// file works when the agent holds its key; with IdentitiesOnly, agent keys
// that match no identity file are not offered.
func TestAgentAuth(t *testing.T) {
	needCluster(t)
	b, err := os.ReadFile(cluster.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	clusterKey, err := ssh.ParseRawPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	// The cluster's key, re-saved with a passphrase: unusable from disk.
	dir := t.TempDir()
	blk, _ := ssh.MarshalPrivateKeyWithPassphrase(*clusterKey.(*ed25519.PrivateKey), "", []byte("secret"))
	locked := filepath.Join(dir, "locked")
	os.WriteFile(locked, pem.EncodeToMemory(blk), 0o600)

	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	serveAgent(t, stranger, clusterKey)

	cfg := hostConfig(t, "h01")
	cfg.IdentityFiles = []string{locked}
	cfg.IdentitiesOnly = true
	h := (&remote.Dialer{}).Host(cfg)
	defer h.Close()
	if _, _, err := run(t, h, &remote.Cmd{Argv: []string{"true"}}); err != nil {
		t.Fatalf("passphrase-protected key held by the agent: %v", err)
	}

	// No identity file at all: every agent key is offered, and one works.
	cfg.IdentityFiles, cfg.IdentitiesOnly = nil, false
	h2 := (&remote.Dialer{}).Host(cfg)
	defer h2.Close()
	if _, _, err := run(t, h2, &remote.Cmd{Argv: []string{"true"}}); err != nil {
		t.Fatalf("agent keys only: %v", err)
	}

	// IdentitiesOnly with an identity file the agent does not hold: the
	// agent's keys are not offered, so authentication fails.
	other := filepath.Join(dir, "other")
	_, k3, _ := ed25519.GenerateKey(rand.Reader)
	blk, _ = ssh.MarshalPrivateKey(k3, "")
	os.WriteFile(other, pem.EncodeToMemory(blk), 0o600)
	cfg.IdentityFiles, cfg.IdentitiesOnly = []string{other}, true
	err = (&remote.Dialer{}).Host(cfg).Run(context.Background(), &remote.Cmd{Argv: []string{"true"}})
	if errs.KindOf(err) != errs.KindAuth || !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("IdentitiesOnly with a foreign key: %v", err)
	}
}
