// Package distributor composes remote (how to reach hosts) and queue (what
// runs where) into a run: ship a binary, feed jobs to hosts, collect and
// reduce results, and keep logs. It is usable as a Go library; cmd/dsub is
// a thin front end over it.
//
// It reaches hosts only through the remote.Host interface, so its logic is
// tested against in-memory fake hosts (remote/fakehost) as well as real
// sshd. A run is one dispatcher goroutine (dispatch.go) that alone owns the
// queue and the records; its methods are the run's events. A run's local
// directory is a records.RunDir and its run.json a records.Manifest.
package distributor
