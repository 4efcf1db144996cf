// Package queue is dsub's scheduler: a host→job queue with per-host slots,
// dynamic load balancing, pinning, retries, requeue and exactly-once
// accounting. It is pure Go with no clock, goroutines or I/O, and knows
// nothing of SSH: the distributor's single dispatcher loop owns a Queue and
// drives it with Add, Assign and Finish, so every decision is deterministic
// and unit-tested without a network.
//
// Invariants:
//   - A job is finished exactly once: by its first successful execution
//     (later or duplicate successes are Discarded), or by exhausting its
//     retries (GaveUp).
//   - A command failure (Failed) consumes one of the job's retries and the
//     job is retried on another host where one is up; a lost execution
//     (Lost: host died, connection dropped) is requeued without consuming
//     retries.
//   - Requeued jobs go to the front of the queue, so retries are not
//     starved by a long tail of new work.
//   - Assign fills free slots round-robin across hosts, one slot per host
//     per round, so load spreads evenly at the start and thereafter a free
//     slot takes the next job: fast hosts do more.
package queue
