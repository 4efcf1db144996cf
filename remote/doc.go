// Package remote owns everything dsub says to a host: SSH connections,
// authentication, host-key checking, remote commands, and SFTP file
// operations. It knows nothing of runs, shards or jobs.
//
// The core is the Host interface (host.go, whose doc comment is the
// contract): connect, describe, run a command, kill what a marker names,
// and a small set of file operations, each taking a context first.
// SSHHost is the implementation over golang.org/x/crypto/ssh and
// github.com/pkg/sftp; LocalHost runs on the master's own machine (--local)
// as local processes; remote/fakehost is an in-memory sibling for tests.
// Behaviour such as retries or limits belongs in wrappers around Host, not
// in flags inside the SSH code.
//
// Invariants an SSHHost keeps:
//   - Connections persist. One connection carries many sessions and the
//     SFTP channel; more connections are opened only when a host has more
//     concurrent sessions than one connection can carry (MaxPerConn, below
//     sshd's MaxSessions of 10). A refused channel open is back-pressure:
//     the session waits and retries, and never fails a command.
//   - Host keys are always checked against known_hosts, with the
//     HostKeyAlgorithms taken from what known_hosts holds for the host
//     (golang/go#29286). Unknown hosts are refused unless the Dialer opts
//     into accept-new; a changed key is always refused.
//   - The connect timeout covers TCP, handshake and authentication.
//     Handshakes in flight are limited by the Dialer (sshd's MaxStartups).
//   - Every remote command runs as the leader of its own process group
//     (sshd makes each session a new session) and reports that group's id
//     before anything else; cancelling the context kills the whole group
//     through a separate session, because closing a channel does not kill
//     the remote process and Signal is ignored for root before OpenSSH 10.
//   - The environment travels in the command line (export K='v'; ...),
//     because stock sshd refuses setenv.
//
// Errors are *errs.Error values (package errs's vocabulary) naming the
// operation and the host, with a errs.Kind (transport, auth, host key, remote
// exit, ...) that callers use to decide whether to retry elsewhere.
package remote
