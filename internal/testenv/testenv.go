// Package testenv gives tests their backends: SQLite and an in-process Redis
// always, and the real Postgres and Redis named by TEST_DATABASE_URL and
// TEST_REDIS_URL when those are set. When a variable is set and its server
// cannot be reached, the test fails; it never skips.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/jobhook/jobhook/internal/database"
)

// Backend is one database plus one Redis, isolated for one test.
type Backend struct {
	// Name is "sqlite+miniredis" or "postgres+redis".
	Name  string
	DB    *database.DB
	Redis *redis.Client
	// Mini is the in-process Redis, nil on a real Redis.
	Mini *miniredis.Miniredis
	// Prefix is a Redis key prefix unique to this test.
	Prefix string
}

// Real reports whether the backend is the real Postgres and Redis.
func (b Backend) Real() bool { return b.Mini == nil }

// RealConfigured reports whether TEST_DATABASE_URL or TEST_REDIS_URL is set,
// so the tests must also run on the real servers.
func RealConfigured() bool {
	return os.Getenv("TEST_DATABASE_URL") != "" || os.Getenv("TEST_REDIS_URL") != ""
}

// Embedded returns SQLite plus an in-process Redis.
func Embedded(t testing.TB) Backend {
	t.Helper()
	b := Backend{Name: "sqlite+miniredis", DB: SQLite(t), Prefix: Prefix()}
	b.Redis, b.Mini = MiniRedis(t)
	return b
}

// Real returns the real Postgres and Redis, each isolated for the test.
func Real(t testing.TB) Backend {
	t.Helper()
	b := Backend{Name: "postgres+redis", DB: Postgres(t), Redis: RealRedis(t), Prefix: Prefix()}
	cleanPrefix(t, b.Redis, b.Prefix)
	return b
}

// Run runs f as a subtest on the embedded backend and, when the real servers
// are configured, on them too.
func Run(t *testing.T, f func(t *testing.T, b Backend)) {
	t.Helper()
	t.Run("sqlite+miniredis", func(t *testing.T) { f(t, Embedded(t)) })
	if RealConfigured() {
		t.Run("postgres+redis", func(t *testing.T) { f(t, Real(t)) })
	}
}

// Prefix returns a Redis key prefix unique to one test.
func Prefix() string { return "test:" + RandomID() + ":jobs:" }

// RandomID returns 12 random hex characters.
func RandomID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// SQLite opens a migrated SQLite database in a temporary folder.
func SQLite(t testing.TB) *database.DB {
	t.Helper()
	ctx := context.Background()
	db, err := database.Open(ctx, database.Options{SQLitePath: filepath.Join(t.TempDir(), "jobhook.db")})
	if err != nil {
		t.Fatalf("testenv: open sqlite: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx, quietLogger()); err != nil {
		t.Fatalf("testenv: migrate sqlite: %v", err)
	}
	return db
}

// PostgresURL returns TEST_DATABASE_URL, failing the test when it is unset.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("TEST_DATABASE_URL")
	if u == "" {
		t.Fatal("testenv: TEST_DATABASE_URL is not set (TEST_REDIS_URL is; set both or neither)")
	}
	return u
}

// Postgres opens the database at TEST_DATABASE_URL in a fresh schema of its
// own, migrated, and drops the schema when the test ends.
func Postgres(t testing.TB) *database.DB {
	t.Helper()
	ctx := context.Background()
	base := PostgresURL(t)
	admin, err := gorm.Open(postgres.Open(base), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatalf("testenv: connect to TEST_DATABASE_URL: %v", err)
	}
	adminSQL, err := admin.DB()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = adminSQL.Close() })
	schema := "t_" + RandomID()
	if err := admin.WithContext(ctx).Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("testenv: create schema on TEST_DATABASE_URL: %v", err)
	}
	t.Cleanup(func() {
		if err := admin.Exec("DROP SCHEMA " + schema + " CASCADE").Error; err != nil {
			t.Errorf("testenv: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: TEST_DATABASE_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := database.Open(ctx, database.Options{URL: u.String(), MaxOpenConns: 10})
	if err != nil {
		t.Fatalf("testenv: open postgres: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.Migrate(ctx, quietLogger()); err != nil {
		t.Fatalf("testenv: migrate postgres: %v", err)
	}
	return db
}

// MiniRedis starts an in-process Redis for the test.
func MiniRedis(t testing.TB) (*redis.Client, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	m.ClockTTL(true)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return c, m
}

// RealRedis connects to TEST_REDIS_URL, failing the test when it is unset
// or unreachable.
func RealRedis(t testing.TB) *redis.Client {
	t.Helper()
	u := os.Getenv("TEST_REDIS_URL")
	if u == "" {
		t.Fatal("testenv: TEST_REDIS_URL is not set (TEST_DATABASE_URL is; set both or neither)")
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("testenv: TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testenv: connect to TEST_REDIS_URL: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// cleanPrefix deletes the test's keys when it ends.
func cleanPrefix(t testing.TB, c *redis.Client, prefix string) {
	t.Cleanup(func() {
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			_ = c.Del(ctx, keys...).Err()
		}
	})
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// WaitFor polls cond until it is true or the deadline passes, then fails the
// test with msg. It is for conditions another goroutine or process makes
// true; it never sleeps longer than the poll interval.
func WaitFor(t testing.TB, timeout time.Duration, msg string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("testenv: timed out after %s waiting for %s", timeout, fmt.Sprint(msg))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RunB is Run for benchmarks.
func RunB(b *testing.B, f func(b *testing.B, be Backend)) {
	b.Helper()
	b.Run("sqlite+miniredis", func(b *testing.B) { f(b, Embedded(b)) })
	if RealConfigured() {
		b.Run("postgres+redis", func(b *testing.B) { f(b, Real(b)) })
	}
}
