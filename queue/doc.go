// Package queue is dsub's scheduler: a host→job queue with per-host slots,
// dynamic load balancing, pinning, retries and requeue. It is pure Go and
// knows nothing of SSH, so it is tested deterministically with no network.
package queue
