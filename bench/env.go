package main

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// schema is the Postgres schema every system's tables live in.
const schema = "bench"

// Redis key prefixes of jobhook's library and HTTP runs; asynq's keys all
// start with "asynq:".
const (
	jobhookPrefix = "jobhook-bench:"
	httpPrefix    = "jobhook-bench-http:"
)

// env is the shared Postgres and Redis.
type env struct {
	// dbURL points at the database with search_path set to schema.
	dbURL string
	admin *pgxpool.Pool
	// redisOpts is the Redis URL parsed; every system builds its own
	// client from it.
	redisOpts *redis.Options
	redisURL  string
	rdb       *redis.Client
}

// openEnv creates the database if missing, recreates the schema, and
// deletes the bench's Redis keys.
func openEnv(ctx context.Context, o options) (*env, error) {
	if err := createDatabase(ctx, o.db); err != nil {
		return nil, err
	}
	u, err := url.Parse(o.db)
	if err != nil {
		return nil, fmt.Errorf("parse -db: %w", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	e := &env{dbURL: u.String(), redisURL: o.redis}
	if e.admin, err = pgxpool.New(ctx, o.db); err != nil {
		return nil, fmt.Errorf("connect to Postgres: %w", err)
	}
	if _, err := e.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE; CREATE SCHEMA "+schema); err != nil {
		e.admin.Close()
		return nil, fmt.Errorf("recreate schema %s: %w", schema, err)
	}
	if e.redisOpts, err = redis.ParseURL(o.redis); err != nil {
		e.admin.Close()
		return nil, fmt.Errorf("parse -redis: %w", err)
	}
	e.rdb = redis.NewClient(e.redisOpts)
	if err := e.resetRedis(ctx); err != nil {
		e.admin.Close()
		return nil, err
	}
	return e, nil
}

// createDatabase creates the URL's database when it does not exist,
// connecting to the server's "postgres" database to do so.
func createDatabase(ctx context.Context, dbURL string) error {
	u, err := url.Parse(dbURL)
	if err != nil {
		return fmt.Errorf("parse -db: %w", err)
	}
	name := strings.TrimPrefix(u.Path, "/")
	if name == "" || name == "postgres" {
		return nil
	}
	u.Path = "/postgres"
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look for database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// newRedis returns a client of the bench's Redis with a pool of size n.
func (e *env) newRedis(n int) *redis.Client {
	opts := *e.redisOpts
	opts.PoolSize = n
	return redis.NewClient(&opts)
}

// resetRedis deletes every key of the bench: jobhook's prefixes and
// asynq's keys.
func (e *env) resetRedis(ctx context.Context) error {
	for _, pattern := range []string{jobhookPrefix + "*", httpPrefix + "*", "asynq:*"} {
		iter := e.rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan Redis keys %s: %w", pattern, err)
		}
		for len(keys) > 0 {
			n := min(len(keys), 500)
			if err := e.rdb.Del(ctx, keys[:n]...).Err(); err != nil {
				return fmt.Errorf("delete Redis keys %s: %w", pattern, err)
			}
			keys = keys[n:]
		}
	}
	return nil
}

// truncate empties tables of the schema.
func (e *env) truncate(ctx context.Context, tables ...string) error {
	for i, t := range tables {
		tables[i] = schema + "." + t
	}
	if _, err := e.admin.Exec(ctx, "TRUNCATE "+strings.Join(tables, ", ")+" RESTART IDENTITY CASCADE"); err != nil {
		return fmt.Errorf("truncate %s: %w", strings.Join(tables, ", "), err)
	}
	return nil
}

// close drops the schema and deletes the Redis keys.
func (e *env) close(ctx context.Context) {
	if err := e.resetRedis(ctx); err != nil {
		progress("cleanup: " + err.Error())
	}
	_ = e.rdb.Close()
	if _, err := e.admin.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE"); err != nil {
		progress("cleanup: " + err.Error())
	}
	e.admin.Close()
}
