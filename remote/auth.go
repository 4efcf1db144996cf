package remote

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// authMethod builds public-key authentication for cfg. The agent is asked
// first, then identity files. With IdentitiesOnly, agent keys are limited
// to those matching the configured identity files, so that an agent full of
// keys does not exhaust the server's MaxAuthTries. A passphrase-protected
// file is usable only through an agent that holds it.
func (d *Dialer) authMethod(cfg *Config) (ssh.AuthMethod, error) {
	var agentSigners []ssh.Signer
	if d.agent != nil {
		s, err := d.agent.Signers()
		if err == nil {
			agentSigners = s
		}
	}
	var fileSigners []ssh.Signer
	var wanted [][]byte // public keys of the identity files
	var problems []string
	for _, path := range cfg.IdentityFiles {
		r := d.loadKey(path)
		switch {
		case r.signer != nil:
			fileSigners = append(fileSigners, r.signer)
			wanted = append(wanted, r.signer.PublicKey().Marshal())
		case r.pub != nil:
			wanted = append(wanted, r.pub.Marshal())
			if !holds(agentSigners, r.pub) {
				problems = append(problems, fmt.Sprintf("%s is passphrase-protected and no ssh-agent holds it (run: ssh-add %s)", path, path))
			}
		case r.err != nil && !errors.Is(r.err, os.ErrNotExist):
			problems = append(problems, fmt.Sprintf("%s: %v", path, r.err))
		}
	}
	var signers []ssh.Signer
	seen := map[string]bool{}
	add := func(s ssh.Signer) {
		k := string(s.PublicKey().Marshal())
		if !seen[k] {
			seen[k] = true
			signers = append(signers, s)
		}
	}
	for _, s := range agentSigners {
		if containsKey(wanted, s.PublicKey()) {
			add(s)
		}
	}
	if !cfg.IdentitiesOnly {
		for _, s := range agentSigners {
			add(s)
		}
	}
	for _, s := range fileSigners {
		add(s)
	}
	if len(signers) == 0 {
		msg := "no usable private key"
		if len(problems) > 0 {
			msg += ": " + strings.Join(problems, "; ")
		} else {
			msg += fmt.Sprintf(" (identity files %s not found, and no ssh-agent keys)", strings.Join(cfg.IdentityFiles, ", "))
		}
		return nil, errors.New(msg)
	}
	for _, p := range problems {
		d.warn("%s: %s", cfg.Name, p)
	}
	return ssh.PublicKeys(signers...), nil
}

func holds(signers []ssh.Signer, pub ssh.PublicKey) bool {
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), pub.Marshal()) {
			return true
		}
	}
	return false
}

func containsKey(keys [][]byte, pub ssh.PublicKey) bool {
	for _, k := range keys {
		if bytes.Equal(k, pub.Marshal()) {
			return true
		}
	}
	return false
}

// loadKey parses an identity file once per Dialer.
// checkKeyMode refuses a private key file that others can read, as
// OpenSSH does (for a file the user owns), with OpenSSH's words.
func checkKeyMode(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return fmt.Errorf("UNPROTECTED PRIVATE KEY FILE! Permissions %#o for '%s' are too open. "+
		"It is required that your private key files are NOT accessible by others. This private key will be ignored (fix: chmod 600 %s)",
		fi.Mode().Perm(), path, path)
}

func (d *Dialer) loadKey(path string) keyResult {
	d.mu.Lock()
	r, ok := d.keys[path]
	d.mu.Unlock()
	if ok {
		return r
	}
	b, err := os.ReadFile(path)
	if err != nil {
		r.err = err
	} else if err := checkKeyMode(path); err != nil {
		r.err = err
	} else if s, err := ssh.ParsePrivateKey(b); err == nil {
		r.signer = s
	} else {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			r.pub = pm.PublicKey
			if r.pub == nil {
				if pb, err := os.ReadFile(path + ".pub"); err == nil {
					r.pub, _, _, _, _ = ssh.ParseAuthorizedKey(pb)
				}
			}
			if r.pub == nil {
				r.err = fmt.Errorf("passphrase-protected and its public key is unknown (add %s.pub, or load it into ssh-agent)", path)
			}
		} else {
			r.err = err
		}
	}
	d.mu.Lock()
	d.keys[path] = r
	d.mu.Unlock()
	return r
}
