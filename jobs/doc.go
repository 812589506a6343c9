// Package jobs is jobhook's engine. New builds an Engine from one Config:
// the Service that creates and reads jobs, the Worker whose drains run them
// from the Redis priority queue (its completer writes their outcomes in
// batches, its heartbeat renews their leases), the reaper and reconciler
// that repair the queue, the debounced trigger, and the in-process runner;
// Start and Shutdown run and stop them in a fixed order. The Registry holds
// the job type handlers. It knows no HTTP framework.
package jobs
