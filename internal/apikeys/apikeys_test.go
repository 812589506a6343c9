package apikeys_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/internal/testenv"
)

// TestKeysAreHashedTouchedOnceAMinuteAndRevokedAtOnce: the key itself is
// never stored; a key's last use moves at most once a minute; a revoked
// key is refused; bad names and scopes are refused with the field.
func TestKeysAreHashedTouchedOnceAMinuteAndRevokedAtOnce(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ctx := context.Background()
		now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
		st := apikeys.New(b.DB.Gorm, func() time.Time { return now })
		k, secret, err := st.Create(ctx, "  backend ", []string{"jobs:write", "jobs:read", "jobs:write"})
		require.NoError(t, err)
		require.Equal(t, "backend", k.Name)
		require.Equal(t, apikeys.ScopeList{"jobs:read", "jobs:write"}, k.Scopes)
		var stored int64
		require.NoError(t, b.DB.Gorm.Table("api_keys").Where("hash = ? OR prefix = ?", secret, secret).Count(&stored).Error)
		require.Zero(t, stored, "the key itself is in no column")

		got, err := st.Verify(ctx, secret)
		require.NoError(t, err)
		require.True(t, got.LastUsedAt.Equal(now))
		now = now.Add(30 * time.Second)
		got, err = st.Verify(ctx, secret)
		require.NoError(t, err)
		require.True(t, got.LastUsedAt.Equal(now.Add(-30*time.Second)), "not written again within the minute")
		now = now.Add(31 * time.Second)
		got, err = st.Verify(ctx, secret)
		require.NoError(t, err)
		require.True(t, got.LastUsedAt.Equal(now))

		_, err = st.Verify(ctx, secret+"x")
		require.ErrorIs(t, err, apikeys.ErrUnknownKey)
		_, err = st.Verify(ctx, "eyJhbGciOi")
		require.ErrorIs(t, err, apikeys.ErrUnknownKey)

		revoked, err := st.Revoke(ctx, k.ID)
		require.NoError(t, err)
		require.NotNil(t, revoked.RevokedAt)
		_, err = st.Verify(ctx, secret)
		require.ErrorIs(t, err, apikeys.ErrRevoked)
		again, err := st.Revoke(ctx, k.ID)
		require.NoError(t, err)
		require.True(t, again.RevokedAt.Equal(*revoked.RevokedAt), "revoking twice keeps the first time")
		_, err = st.Revoke(ctx, k.ID+100)
		require.ErrorIs(t, err, apikeys.ErrNotFound)

		var ie *apikeys.InvalidError
		_, _, err = st.Create(ctx, "", []string{"jobs:read"})
		require.ErrorAs(t, err, &ie)
		require.Equal(t, "name", ie.Field)
		_, _, err = st.Create(ctx, "x", nil)
		require.ErrorAs(t, err, &ie)
		require.Equal(t, "scopes", ie.Field)
		_, _, err = st.Create(ctx, "x", []string{"admin"})
		require.ErrorAs(t, err, &ie)
		require.Contains(t, ie.Message, `unknown scope "admin"`)

		list, err := st.List(ctx)
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}
