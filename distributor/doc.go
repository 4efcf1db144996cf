// Package distributor composes remote (how to reach hosts) and queue (what
// runs where) into a run: ship a binary, feed jobs to hosts, collect and
// reduce results, and keep logs. It is usable as a Go library; cmd/dsub is
// a thin front end over it.
package distributor
