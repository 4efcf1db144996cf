// Package testenv starts real OpenSSH sshd hosts for dsub's tests, demos
// and fault injection.
//
// A Cluster is N hosts, each a stock Debian sshd that dsub reaches on a
// 127.0.0.x address and a port of its own. Two backends provide them:
//
//   - docker: one container per host, from an image built locally from Debian
//     packages (debootstrap + docker import; no registry is ever contacted).
//     Each container has its own hostname, filesystem and host keys.
//   - process: plain sshd processes on distinct 127.0.0.x addresses, one
//     system user and home directory per host. Used where no Docker engine is
//     reachable; it needs root and openssh-server.
//
// Up writes a state directory holding everything a client needs: hosts.toml
// for dsub, known_hosts (ed25519 keys only, as [127.0.0.1]:PORT entries), the
// client key pair and an ssh_config for plain OpenSSH. Load reopens it, so
// the testenv command can inject faults into a cluster that an earlier
// invocation started.
//
// Faults: Kill (the host is gone), Pause/Unpause (the host hangs while TCP
// stays open), Partition/Heal (packets to and from the host are dropped) and
// Restart (the host comes back with the same host keys).
//
// Start is the entry point for tests: it brings a cluster up, reports the
// backend it used, and tears it down with t.Cleanup. When CI=true the docker
// backend is required and its absence fails the test.
package testenv
