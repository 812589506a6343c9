// Package chaos is jobhook's chaos suite: tests that run real
// `jobhook serve` processes (the binary is built once per test run) against
// the real PostgreSQL and Redis named by TEST_DATABASE_URL and
// TEST_REDIS_URL, and then hurt them — kill -9 in the middle of a drain,
// wipe the queue's Redis keys, terminate the server's Postgres connections,
// run two servers on one queue and on one flow key (FLOW_LIMITS), SIGTERM
// during a drain, leave a job stuck in processing, let a handler hang past
// its timeout — and check afterwards that every job reached its final
// state, that no job's handler ever ran twice at the same time, that no
// flow key ran more jobs at once than its limit, and how many attempts the
// faults cost.
//
// The jobs are of the test type chaos_record (internal/chaostask), which
// records every handler call in the table chaos_calls of the server's own
// database. The suite builds the binary with -tags chaos, the only build
// that contains it, and serve registers it when JOBHOOK_CHAOS_TASKS=true.
//
// This package is the one exception to the rule that every test also runs
// on the embedded backends (SQLite and the in-process Redis): those live
// inside the serve process, so killing the process would kill the state the
// suite is there to check. Without TEST_DATABASE_URL and TEST_REDIS_URL the
// tests skip, saying so; with them set and a server unreachable they fail.
//
// Each scenario works in a Postgres schema (chaos_<random>) and a Redis key
// prefix of its own and drops both at the end, so the suite can share the
// servers with other tests; it deletes the keys under its own prefix where a
// real outage would FLUSHALL, and terminates only the Postgres connections
// of its own server processes (recognised by their application_name). The
// scenarios run one after the other, never in parallel.
//
// The package holds no code other than its tests.
package chaos
