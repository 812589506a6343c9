// Package migrations holds jobhook's SQL migrations, one folder per dialect,
// embedded in the binary, and runs them with goose.
package migrations

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed postgres/*.sql sqlite3/*.sql
var files embed.FS

// Dialect names a database flavour with its own migrations folder.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite3"
)

// NewProvider returns a goose provider for db's dialect over the embedded
// migrations. On Postgres a session advisory lock keeps several instances
// starting at once from migrating together.
func NewProvider(db *sql.DB, dialect Dialect, logger *slog.Logger) (*goose.Provider, error) {
	sub, err := fs.Sub(files, string(dialect))
	if err != nil {
		return nil, fmt.Errorf("migrations: %s: %w", dialect, err)
	}
	var opts []goose.ProviderOption
	if logger != nil {
		opts = append(opts, goose.WithSlog(logger))
	}
	var gd goose.Dialect
	switch dialect {
	case Postgres:
		gd = goose.DialectPostgres
		locker, err := lock.NewPostgresSessionLocker()
		if err != nil {
			return nil, fmt.Errorf("migrations: postgres locker: %w", err)
		}
		opts = append(opts, goose.WithSessionLocker(locker))
	case SQLite:
		gd = goose.DialectSQLite3
	default:
		return nil, fmt.Errorf("migrations: unknown dialect %q", dialect)
	}
	p, err := goose.NewProvider(gd, db, sub, opts...)
	if err != nil {
		return nil, fmt.Errorf("migrations: new provider: %w", err)
	}
	return p, nil
}

// Up applies every pending migration and returns how many it applied.
func Up(ctx context.Context, db *sql.DB, dialect Dialect, logger *slog.Logger) (int, error) {
	p, err := NewProvider(db, dialect, logger)
	if err != nil {
		return 0, err
	}
	res, err := p.Up(ctx)
	if err != nil {
		return len(res), fmt.Errorf("migrations: up: %w", err)
	}
	return len(res), nil
}
