package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/models"
)

// TestJobsClientAgainstAServer: the operator lists, reads, cancels and
// retries a user's jobs through the API, and refusals come back as
// *APIError with the server's code.
func TestJobsClientAgainstAServer(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startServer(t, b)
		ctx := context.Background()
		first := s.create(t, `{"type":"ok","payload":{}}`)
		second := s.create(t, `{"type":"refused","payload":{}}`)
		third := s.create(t, `{"type":"ok","payload":{}}`)

		jc, err := client.NewJobsClient(s.url+"/", adminToken, nil)
		require.NoError(t, err)
		page, err := jc.List(ctx, client.ListOptions{Type: "ok", Limit: 1})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 1)
		require.Equal(t, third, page.Jobs[0].ID, "newest first")
		require.Equal(t, "alice", page.Jobs[0].UserID, "the operator sees alice's jobs")
		require.NotEmpty(t, page.NextCursor)
		page, err = jc.List(ctx, client.ListOptions{Type: "ok", Limit: 1, Cursor: page.NextCursor})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 1)
		require.Equal(t, first, page.Jobs[0].ID)
		require.Empty(t, page.NextCursor)

		job, err := jc.Cancel(ctx, second)
		require.NoError(t, err)
		require.Equal(t, models.StatusCancelled, job.Status)
		page, err = jc.List(ctx, client.ListOptions{Status: models.StatusCancelled})
		require.NoError(t, err)
		require.Len(t, page.Jobs, 1)
		require.Equal(t, second, page.Jobs[0].ID)

		job, err = jc.Retry(ctx, second)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, job.Status)
		got, err := jc.Get(ctx, second)
		require.NoError(t, err)
		require.Equal(t, models.StatusPending, got.Status)
		require.NotNil(t, got.History, "history is a list, empty before an attempt ends")

		var ae *client.APIError
		_, err = jc.Get(ctx, second+1000)
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, http.StatusNotFound, ae.Status)
		require.Equal(t, "job_not_found", ae.Code)
		_, err = jc.Retry(ctx, first)
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, "job_not_retryable", ae.Code)
		_, err = jc.List(ctx, client.ListOptions{Status: "lost"})
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, "invalid_status", ae.Code)

		user, err := client.NewJobsClient(s.url, "not-a-token", nil)
		require.NoError(t, err)
		_, err = user.List(ctx, client.ListOptions{})
		require.True(t, errors.As(err, &ae), "%v", err)
		require.Equal(t, http.StatusUnauthorized, ae.Status)
		require.NotContains(t, err.Error(), "not-a-token", "the token is never in an error")
	})
}

// TestNewJobsClientRefusesBadSettings: no URL, a relative URL or no
// token is refused before any call.
func TestNewJobsClientRefusesBadSettings(t *testing.T) {
	for _, tc := range []struct{ url, token, want string }{
		{"", "t", "the server's URL is required"},
		{"localhost:8080", "t", `the server's URL "localhost:8080" is not an absolute http(s) URL`},
		{"http://localhost:8080", "", "the bearer token is required"},
	} {
		_, err := client.NewJobsClient(tc.url, tc.token, nil)
		require.EqualError(t, err, tc.want)
	}
}
