package remote_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/dsub-dev/dsub/errs"
	"github.com/dsub-dev/dsub/remote"
)

// hostileServer is an SSH server that answers every exec with an
// exit-signal of the given name: a host's word, as session mode reads it.
// It returns a Config that trusts it.
func hostileServer(t *testing.T, signal string) remote.Config {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serveHostile(c, cfg, signal)
		}
	}()
	dir := t.TempDir()
	_, userPriv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(userPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "id")
	kh := filepath.Join(dir, "known_hosts")
	addr := ln.Addr().(*net.TCPAddr)
	line := "[127.0.0.1]:" + itoa(addr.Port) + " " + string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))
	if err := os.WriteFile(key, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return remote.Config{Name: "hostile", Host: "127.0.0.1", Port: addr.Port, User: "u",
		IdentityFiles: []string{key}, IdentitiesOnly: true, KnownHosts: []string{kh},
		ConnectTimeout: 10 * time.Second, Keepalive: 5 * time.Second}
}

func itoa(n int) string { return strconv.Itoa(n) }

func serveHostile(c net.Conn, cfg *ssh.ServerConfig, signal string) {
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		c.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go func() {
			for r := range creqs {
				if r.WantReply {
					_ = r.Reply(r.Type == "exec" || r.Type == "env", nil)
				}
				if r.Type != "exec" {
					continue
				}
				msg := struct {
					Signal     string
					CoreDumped bool
					Error      string
					Lang       string
				}{Signal: signal, Error: "\x1b[2J forged", Lang: ""}
				_, _ = ch.SendRequest("exit-signal", false, ssh.Marshal(&msg))
				ch.Close()
				return
			}
		}()
	}
}

// A host's SSH exit-signal name reaches dsub only as a signal it can be:
// one that would forge joblog rows (tabs, newlines) or drive a terminal is
// UNKNOWN, while a real one is kept. (The agent's exit frame takes the same
// check: agent's TestHostileAgent.)
func TestHostileExitSignal(t *testing.T) {
	for _, tt := range []struct{ sent, want string }{
		{"KILL", "KILL"},
		{"KILL\t9\n7\th01\t0\t1\t0\t0\tforged", "UNKNOWN"},
		{"\x1b]0;owned\x07", "UNKNOWN"},
	} {
		cfg := hostileServer(t, tt.sent)
		h := (&remote.Dialer{NoAgent: true}).Host(cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := h.Run(ctx, &remote.Cmd{Argv: []string{"true"}})
		cancel()
		h.Close()
		var ee *remote.ExitError
		if !errors.As(err, &ee) || errs.KindOf(err) != errs.KindRemoteExit {
			t.Fatalf("sent %q: err = %v, want a remote exit", tt.sent, err)
		}
		if ee.Signal != tt.want || ee.Status != -1 {
			t.Errorf("sent %q: signal %q status %d, want %q, -1", tt.sent, ee.Signal, ee.Status, tt.want)
		}
	}
}
