package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/migrations"
)

// TestUpDownUp checks that every migration rolls back cleanly and applies
// again, on each dialect.
func TestUpDownUp(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		sqlDB, err := b.DB.Gorm.DB()
		require.NoError(t, err)
		p, err := migrations.NewProvider(sqlDB, b.DB.Dialect, nil)
		require.NoError(t, err)
		pending, err := p.HasPending(ctx)
		require.NoError(t, err)
		require.False(t, pending, "testenv migrated the database")

		_, err = p.DownTo(ctx, 0)
		require.NoError(t, err)
		require.False(t, b.DB.Gorm.Migrator().HasTable("jobs"))
		res, err := p.Up(ctx)
		require.NoError(t, err)
		require.NotEmpty(t, res)
		require.True(t, b.DB.Gorm.Migrator().HasTable("jobs"))
	})
}
