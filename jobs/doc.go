// Package jobs is jobhook's engine: the Service that creates and reads jobs,
// the Worker that drains the Redis priority queue, the Registry of job
// type handlers, and the retry policy. It knows no HTTP framework.
package jobs
