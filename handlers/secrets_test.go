package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// vaultHandler has a secret payload field and fails echoing it, as a
// careless provider error would.
type vaultHandler struct{ seen chan string }

func (vaultHandler) SecretFields() []string { return []string{"accessToken"} }
func (h vaultHandler) Handle(_ context.Context, job *models.Job) (json.RawMessage, error) {
	var p struct{ AccessToken string }
	_ = json.Unmarshal(job.Payload, &p)
	h.seen <- p.AccessToken
	return nil, errors.New("provider rejected token " + p.AccessToken)
}

// TestSecretsNeverLeaveTheServer: a job carrying an access token, created,
// read, listed, run (failing with the token in its error), retried and
// cancelled through the HTTP API: no response body and no log line holds
// the token, while the handler got it in the clear.
func TestSecretsNeverLeaveTheServer(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		const secret = "EAAB-very-secret-page-token-123"
		key, err := secretbox.GenerateKey()
		require.NoError(t, err)
		ring, err := secretbox.ParseKeyring(key)
		require.NoError(t, err)
		logs := &syncBuffer{}
		log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		reg := jobs.NewRegistry()
		seen := make(chan string, 4)
		reg.MustRegister("vault", vaultHandler{seen: seen})
		eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log, Secrets: ring})
		app := handlers.New(handlers.Config{Service: eng.Service(), Worker: eng.Worker(), Verifier: auth.NewHS256Verifier([]byte(testJWTSecret)), WorkerSecret: testWorkerSecret, Logger: log})

		var bodies []string
		call := func(method, path, body, authz string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Authorization", authz)
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			app.ServeHTTP(rec, req)
			bodies = append(bodies, rec.Body.String())
			return rec
		}
		user := "Bearer " + token(t, "owner")
		rec := call(http.MethodPost, "/api/jobs", `{"type":"vault","payload":{"accessToken":"`+secret+`","pageId":"42"},"maxAttempts":1}`, user)
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		var created handlers.CreateJobResponse
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &created))
		path := fmt.Sprintf("/api/jobs/%d", created.JobID)

		var raw string
		require.NoError(t, b.DB.Gorm.Raw("SELECT CAST(payload AS TEXT) FROM jobs WHERE id = ?", created.JobID).Scan(&raw).Error)
		require.NotContains(t, raw, secret, "encrypted at rest")

		call(http.MethodGet, path, "", user)
		call(http.MethodGet, "/api/jobs", "", user)
		require.Equal(t, http.StatusOK, call(http.MethodPost, "/api/workers", "", "Bearer "+testWorkerSecret).Code)
		require.Equal(t, secret, <-seen, "the handler gets the token in the clear")
		rec = call(http.MethodGet, path, "", user)
		require.Contains(t, rec.Body.String(), `"status":"failed"`)
		require.Contains(t, rec.Body.String(), `[redacted]`)
		call(http.MethodPost, path+"/retry", "", user)
		call(http.MethodPost, path+"/cancel", "", user)

		for i, body := range bodies {
			require.NotContains(t, body, secret, "response %d", i)
		}
		for i, line := range strings.Split(logs.String(), "\n") {
			require.NotContains(t, line, secret, "log line %d", i)
		}
		require.NotEmpty(t, logs.String())
	})
}

// TestEncryptionUnconfiguredIsAConfigurationGap: a server without a
// keyring refuses a job type with secret fields with 503
// encryption_unconfigured and no Retry-After (retrying does not help until
// an operator sets the key), and stores nothing.
func TestEncryptionUnconfiguredIsAConfigurationGap(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		reg := jobs.NewRegistry()
		reg.MustRegister("vault", vaultHandler{seen: make(chan string, 1)})
		eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg})
		app := handlers.New(handlers.Config{Service: eng.Service(), Worker: eng.Worker(), Verifier: auth.NewHS256Verifier([]byte(testJWTSecret)), WorkerSecret: testWorkerSecret})

		req := httptest.NewRequest(http.MethodPost, "/api/jobs", strings.NewReader(`{"type":"vault","payload":{"accessToken":"t","pageId":"42"}}`))
		req.Header.Set("Authorization", "Bearer "+token(t, "owner"))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		app.ServeHTTP(rec, req)
		require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), `"code":"encryption_unconfigured"`)
		require.Empty(t, rec.Header().Get("Retry-After"), "a configuration gap does not invite retries")
		var n int64
		require.NoError(t, b.DB.Gorm.Model(&models.Job{}).Count(&n).Error)
		require.Zero(t, n, "nothing stored")
	})
}
