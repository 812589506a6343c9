package main

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"gorm.io/gorm"
)

// counter counts what a system sends to its backends while a phase runs:
// SQL statements (through GORM's callbacks: every Create, Query, Update,
// Delete, Row and Raw statement; BEGIN and COMMIT are not statements
// here), and Redis round trips (a command, a script call or a pipeline is
// one). Commits are counted by the server (pg_stat_database.xact_commit of
// the bench's database), so they include autocommitted statements.
type counter struct {
	statements atomic.Int64
	redisCalls atomic.Int64
}

// watchGorm counts every statement db runs.
func (c *counter) watchGorm(db *gorm.DB) error {
	count := func(*gorm.DB) { c.statements.Add(1) }
	cb := db.Callback()
	for name, err := range map[string]error{
		"create": cb.Create().After("gorm:create").Register("bench:count_create", count),
		"query":  cb.Query().After("gorm:query").Register("bench:count_query", count),
		"update": cb.Update().After("gorm:update").Register("bench:count_update", count),
		"delete": cb.Delete().After("gorm:delete").Register("bench:count_delete", count),
		"row":    cb.Row().After("gorm:row").Register("bench:count_row", count),
		"raw":    cb.Raw().After("gorm:raw").Register("bench:count_raw", count),
	} {
		if err != nil {
			return fmt.Errorf("count %s statements: %w", name, err)
		}
	}
	return nil
}

// watchRedis counts every round trip rdb makes.
func (c *counter) watchRedis(rdb *redis.Client) { rdb.AddHook(redisCounter{c}) }

type redisCounter struct{ c *counter }

func (h redisCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h redisCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.c.redisCalls.Add(1)
		return next(ctx, cmd)
	}
}

func (h redisCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.c.redisCalls.Add(1)
		return next(ctx, cmds)
	}
}

// snapshot is the counters at one moment.
type snapshot struct {
	statements, redisCalls, commits int64
}

// commits returns the transactions committed in the bench's database.
// A backend reports its counts at most once a second while busy, and an
// idle one within 10 seconds (PostgreSQL 15's PGSTAT_IDLE_INTERVAL), so a
// phase's count is read after its connections have been idle that long.
func (e *env) commits(ctx context.Context) (int64, error) {
	var n int64
	err := e.admin.QueryRow(ctx, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("read commits: %w", err)
	}
	return n, nil
}

// statsFlush is how long a phase waits for the backends' statistics.
const statsFlush = 11 * time.Second

// take reads every counter; c may be nil (a system whose statements and
// Redis calls are not counted).
func take(ctx context.Context, e *env, c *counter) (snapshot, error) {
	time.Sleep(statsFlush)
	n, err := e.commits(ctx)
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{commits: n}
	if c != nil {
		s.statements, s.redisCalls = c.statements.Load(), c.redisCalls.Load()
	}
	return s, nil
}
