// Package jobs is jobhook's engine: the Service that creates and reads jobs,
// the Redis priority Queue, the Worker that drains it, the Registry of job
// type handlers, and the retry policy. It knows no HTTP framework.
package jobs
