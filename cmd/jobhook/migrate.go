package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/pressly/goose/v3"
	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/internal/database"
	"github.com/jobhook/jobhook/migrations"
)

// migrateSettings are what migrate reads: only the database. A release
// step with DATABASE_URL alone can migrate, in production too.
var migrateSettings = []string{"APP_ENV", "DATABASE_URL", "SQLITE_PATH"}

func migrateCmd() *cobra.Command {
	sub := func(name, short string, do func(ctx context.Context, p *goose.Provider, stdout io.Writer) error) *cobra.Command {
		return reads(&cobra.Command{
			Use:   name,
			Short: short,
			Args:  noArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withMigrations(cmd.Context(), func(p *goose.Provider) error {
					return do(cmd.Context(), p, cmd.OutOrStdout())
				})
			},
		}, migrateSettings...)
	}
	return group(&cobra.Command{
		Use:   "migrate up|down|status",
		Short: "apply, roll back one, or list database migrations",
		Long: `Manage the database schema: the Postgres database at DATABASE_URL, or the
SQLite file at SQLITE_PATH. serve also migrates on start unless
MIGRATE_ON_START=false. With APP_ENV=production only DATABASE_URL is
needed.`,
	},
		sub("up", "apply every pending migration", migrateUp),
		sub("down", "roll back the last migration", migrateDown),
		sub("status", "list the migrations, applied or pending", migrateStatus),
	)
}

// withMigrations opens the database and its migration provider.
func withMigrations(ctx context.Context, f func(p *goose.Provider) error) error {
	cfg, err := config.Load(migrateSettings...)
	if err != nil {
		return err
	}
	db, err := database.Open(ctx, database.Options{URL: cfg.DatabaseURL, SQLitePath: cfg.SQLitePath})
	if err != nil {
		return err
	}
	defer db.Close()
	sqlDB, err := db.Gorm.DB()
	if err != nil {
		return err
	}
	p, err := migrations.NewProvider(sqlDB, db.Dialect, nil)
	if err != nil {
		return err
	}
	return f(p)
}

func migrateUp(ctx context.Context, p *goose.Provider, stdout io.Writer) error {
	res, err := p.Up(ctx)
	for _, r := range res {
		fmt.Fprintf(stdout, "applied %s (%s)\n", r.Source.Path, r.Duration)
	}
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	if len(res) == 0 {
		fmt.Fprintln(stdout, "no pending migrations")
	}
	return nil
}

func migrateDown(ctx context.Context, p *goose.Provider, stdout io.Writer) error {
	r, err := p.Down(ctx)
	if errors.Is(err, goose.ErrNoNextVersion) {
		fmt.Fprintln(stdout, "nothing to roll back")
		return nil
	}
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	fmt.Fprintf(stdout, "rolled back %s\n", r.Source.Path)
	return nil
}

func migrateStatus(ctx context.Context, p *goose.Provider, stdout io.Writer) error {
	st, err := p.Status(ctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	for _, s := range st {
		applied := "pending"
		if !s.AppliedAt.IsZero() {
			applied = "applied " + s.AppliedAt.UTC().Format("2006-01-02 15:04:05Z")
		}
		fmt.Fprintf(stdout, "%-40s %s\n", s.Source.Path, applied)
	}
	return nil
}
