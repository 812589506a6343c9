// Package database opens jobhook's database: Postgres when a URL is given,
// otherwise a SQLite file (pure Go, no cgo), and migrates it.
package database

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/jobhook/jobhook/migrations"
)

// DB is an open database with its dialect.
type DB struct {
	Gorm    *gorm.DB
	Dialect migrations.Dialect
}

// Options says which database to open.
type Options struct {
	// URL is a Postgres URL (postgres:// or postgresql://). Empty means SQLite.
	URL string
	// SQLitePath is the SQLite file used when URL is empty. Defaults to
	// ./data/jobhook.db; its folder is created when missing.
	SQLitePath string
	// MaxOpenConns caps Postgres connections. Defaults to 20.
	MaxOpenConns int
}

// DefaultSQLitePath is where the embedded default keeps its database.
const DefaultSQLitePath = "data/jobhook.db"

// Open connects to the database and checks that it answers.
func Open(ctx context.Context, opts Options) (*DB, error) {
	cfg := &gorm.Config{
		Logger:                 logger.Discard,
		TranslateError:         true,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC() },
	}
	var (
		gdb     *gorm.DB
		dialect migrations.Dialect
		err     error
	)
	switch {
	case opts.URL == "":
		path := opts.SQLitePath
		if path == "" {
			path = DefaultSQLitePath
		}
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("database: create folder for %s: %w", path, err)
			}
		}
		dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		gdb, err = gorm.Open(sqlite.Open(dsn), cfg)
		dialect = migrations.SQLite
	case strings.HasPrefix(opts.URL, "postgres://"), strings.HasPrefix(opts.URL, "postgresql://"):
		gdb, err = gorm.Open(postgres.Open(opts.URL), cfg)
		dialect = migrations.Postgres
	default:
		return nil, fmt.Errorf("database: DATABASE_URL must start with postgres:// or postgresql:// (got scheme %q)", scheme(opts.URL))
	}
	if err != nil {
		return nil, fmt.Errorf("database: open %s: %w", dialect, err)
	}
	sqlDB, err := gdb.DB()
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	if dialect == migrations.SQLite {
		// SQLite has one writer; one connection serialises writes in the
		// process and never meets SQLITE_BUSY.
		sqlDB.SetMaxOpenConns(1)
	} else {
		n := opts.MaxOpenConns
		if n <= 0 {
			n = 20
		}
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
		sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("database: connect to %s: %w", dialect, err)
	}
	return &DB{Gorm: gdb, Dialect: dialect}, nil
}

// Migrate applies pending migrations.
func (d *DB) Migrate(ctx context.Context, log *slog.Logger) (int, error) {
	sqlDB, err := d.Gorm.DB()
	if err != nil {
		return 0, fmt.Errorf("database: %w", err)
	}
	return migrations.Up(ctx, sqlDB, d.Dialect, log)
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	sqlDB, err := d.Gorm.DB()
	if err != nil {
		return fmt.Errorf("database: %w", err)
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		return fmt.Errorf("database: ping: %w", err)
	}
	return nil
}

// Close closes the connection pool.
func (d *DB) Close() error {
	sqlDB, err := d.Gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

// Describe names the database without credentials, for logs.
func Describe(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "postgres"
	}
	return "postgres at " + u.Host + u.Path
}

func scheme(raw string) string {
	if i := strings.Index(raw, "://"); i > 0 {
		return raw[:i]
	}
	return ""
}
