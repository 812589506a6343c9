package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/ratelimit"
	"github.com/jobhook/jobhook/internal/testenv"
)

// signHS256 signs claims with key (any bytes), as an attacker would.
func signHS256(t testing.TB, key []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func claims(sub string, exp time.Duration) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{"sub": sub, "iat": now.Unix(), "exp": now.Add(exp).Unix()}
}

// TestAttackSuite: each row is an attack and the refusal it must meet.
// Nothing an attack does may write a job, and no answer may carry
// internals.
func TestAttackSuite(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		qsCheck, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, NextSigningKey: qsNext, URL: qsURL})
		require.NoError(t, err)
		bb := setup(t, b, func(cfg *handlers.Config) { cfg.WorkerAuth = []handlers.WorkerAuthFunc{qsCheck} })
		victim := bb.createJob(t, "victim", `{"type":"echo","payload":{"text":"private"}}`, http.StatusCreated)
		victimPath := fmt.Sprintf("/api/jobs/%d", victim.JobID)
		noneToken, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims("attacker", time.Hour)).SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		expiredQS := good()
		expiredQS.exp = -time.Minute
		attacker := "Bearer " + token(t, "attacker")

		type attack struct {
			name    string
			req     request
			status  int
			code    string
			noWrite bool
		}
		rows := []attack{
			// Tokens.
			{"alg none", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + noneToken}, 401, "invalid_token", true},
			{"wrong HS256 secret", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + signHS256(t, []byte("guessed-secret"), claims("victim", time.Hour))}, 401, "invalid_token", true},
			{"expired token", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + signHS256(t, []byte(testJWTSecret), claims("victim", -time.Minute))}, 401, "token_expired", true},
			{"token not yet valid", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + signHS256(t, []byte(testJWTSecret), jwt.MapClaims{"sub": "victim", "exp": time.Now().Add(2 * time.Hour).Unix(), "nbf": time.Now().Add(time.Hour).Unix()})}, 401, "invalid_token", true},
			{"token without sub", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + signHS256(t, []byte(testJWTSecret), jwt.MapClaims{"exp": time.Now().Add(time.Hour).Unix()})}, 401, "invalid_token", true},
			{"token without exp", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + signHS256(t, []byte(testJWTSecret), jwt.MapClaims{"sub": "victim"})}, 401, "invalid_token", true},
			{"garbage token", request{method: http.MethodGet, path: "/api/jobs", auth: "Bearer ' OR 1=1 --"}, 401, "invalid_token", true},
			{"basic auth", request{method: http.MethodGet, path: "/api/jobs", auth: "Basic dmljdGltOnB3"}, 401, "invalid_token", true},
			{"no token", request{method: http.MethodPost, path: "/api/jobs", body: strings.NewReader(`{"type":"echo","payload":{"text":"x"}}`)}, 401, "missing_token", true},
			// Another user's job.
			{"read another user's job", request{method: http.MethodGet, path: victimPath, auth: attacker}, 404, "job_not_found", true},
			{"cancel another user's job", request{method: http.MethodPost, path: victimPath + "/cancel", auth: attacker}, 404, "job_not_found", true},
			{"retry another user's job", request{method: http.MethodPost, path: victimPath + "/retry", auth: attacker}, 404, "job_not_found", true},
			{"reschedule another user's job", request{method: http.MethodPost, path: victimPath + "/reschedule", auth: attacker, body: strings.NewReader(`{"scheduledFor":"2031-01-01T00:00:00Z"}`)}, 404, "job_not_found", true},
			// Injection and huge numbers in ids and filters.
			{"SQL in id", request{method: http.MethodGet, path: "/api/jobs/1%20OR%201=1", auth: attacker}, 400, "invalid_job_id", true},
			{"quote in id", request{method: http.MethodGet, path: "/api/jobs/1'--", auth: attacker}, 400, "invalid_job_id", true},
			{"id over int64", request{method: http.MethodGet, path: "/api/jobs/99999999999999999999999", auth: attacker}, 400, "invalid_job_id", true},
			{"negative id", request{method: http.MethodGet, path: "/api/jobs/-1", auth: attacker}, 400, "invalid_job_id", true},
			{"SQL in status filter", request{method: http.MethodGet, path: "/api/jobs?status=pending'%20OR%20'1'='1", auth: attacker}, 400, "invalid_status", true},
			{"huge limit", request{method: http.MethodGet, path: "/api/jobs?limit=99999999999999999999", auth: attacker}, 400, "invalid_limit", true},
			{"forged cursor", request{method: http.MethodGet, path: "/api/jobs?cursor=aWQ6MCBPUiAxPTE", auth: attacker}, 400, "invalid_cursor", true},
			{"huge priority", request{method: http.MethodPost, path: "/api/jobs", auth: attacker, body: strings.NewReader(`{"type":"echo","payload":{"text":"x"},"priority":1e400}`)}, 400, "invalid_priority", true},
			// Oversized bodies.
			{"body over the limit", request{method: http.MethodPost, path: "/api/jobs", auth: attacker, body: strings.NewReader(`{"type":"echo","payload":{"text":"` + strings.Repeat("a", 2<<20) + `"}}`)}, 413, "request_too_large", true},
			{"worker body over the limit", request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(strings.Repeat("a", 2<<20))}, 413, "request_too_large", true},
			// QStash signatures.
			{"signature replayed after expiry", request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(expiredQS.body), headers: map[string]string{"Upstash-Signature": expiredQS.sign(t)}}, 401, "invalid_signature", true},
			{"body swapped under a valid signature", request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(`{"jobId":999}`), headers: map[string]string{"Upstash-Signature": good().sign(t)}}, 401, "invalid_signature", true},
			{"signature for another endpoint", request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(good().body), headers: map[string]string{"Upstash-Signature": func() string { q := good(); q.sub = "https://evil.example/api/workers"; return q.sign(t) }()}}, 401, "invalid_signature", true},
		}
		for _, a := range rows {
			t.Run(a.name, func(t *testing.T) {
				before := bb.counts(t)
				rec := bb.do(t, a.req)
				body := requireError(t, rec, a.status, a.code)
				for _, leak := range []string{"sql", "SELECT", "panic", "goroutine", "gorm", testJWTSecret, qsCurrent} {
					require.NotContains(t, rec.Body.String(), leak)
				}
				_ = body
				if a.noWrite {
					require.Equal(t, before, bb.counts(t), "the attack changed the jobs or the queue")
				}
			})
		}
		require.Empty(t, bb.drainer.Calls(), "no refused worker call drained")
		// The victim's job is untouched by all of it.
		rec := bb.asUser(t, "victim", http.MethodGet, victimPath, "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `"status":"pending"`)
		// Lists never show another user's jobs.
		rec = bb.asUser(t, "attacker", http.MethodGet, "/api/jobs", "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.JSONEq(t, `{"jobs":[]}`, rec.Body.String())
	})
}

// TestCreationFloodIsRateLimited: a user over the creation rate gets 429
// with Retry-After; another user is unaffected.
func TestCreationFloodIsRateLimited(t *testing.T) {
	b := testenv.Embedded(t)
	limiter := ratelimit.New(b.Redis, b.Prefix+"ratelimit:", nil)
	rate := ratelimit.Rate{PerMinute: 60, Burst: 3}
	bb := setup(t, b, func(cfg *handlers.Config) {
		cfg.CreateLimit = func(ctx context.Context, user string) (bool, time.Duration, error) {
			return limiter.Allow(ctx, "create:"+user, rate)
		}
	})
	for i := 0; i < 3; i++ {
		bb.createJob(t, "flooder", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
	}
	before := bb.counts(t)
	rec := bb.asUser(t, "flooder", http.MethodPost, "/api/jobs", `{"type":"echo","payload":{"text":"x"}}`)
	requireError(t, rec, http.StatusTooManyRequests, "rate_limited")
	require.Equal(t, "1", rec.Header().Get("Retry-After"))
	require.Equal(t, before, bb.counts(t), "a refused create writes nothing")
	bb.createJob(t, "someone-else", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
}

// TestWorkerAuthFailuresAreLimited: after the failure limit, an address's
// failing worker calls get 429; a valid credential from the same address
// (the right secret, or a valid QStash signature) is still let in and the
// drain runs, so wrong guesses cannot lock the worker endpoint.
func TestWorkerAuthFailuresAreLimited(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		limiter := ratelimit.New(b.Redis, b.Prefix+"ratelimit:", nil)
		qsCheck, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: qsCurrent, NextSigningKey: qsNext, URL: qsURL})
		require.NoError(t, err)
		bb := setup(t, b, func(cfg *handlers.Config) {
			cfg.WorkerAuthLimit = testAuthLimit{limiter, ratelimit.Failures{Limit: 20, Window: time.Minute}}
			cfg.WorkerAuth = []handlers.WorkerAuthFunc{qsCheck}
			cfg.Worker = realWorker(t, b, cfg)
		})
		status := func(user string, id int64) string {
			t.Helper()
			rec := bb.asUser(t, user, http.MethodGet, fmt.Sprintf("/api/jobs/%d", id), "")
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var job struct{ Status string }
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
			return job.Status
		}
		wrong := func(i int) *httptest.ResponseRecorder {
			return bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer guess-" + fmt.Sprint(i)})
		}
		for i := 0; i < 20; i++ {
			requireError(t, wrong(i), http.StatusUnauthorized, "invalid_worker_auth")
		}
		for i := 20; i < 25; i++ {
			rec := wrong(i)
			requireError(t, rec, http.StatusTooManyRequests, "too_many_auth_failures")
			require.NotEmpty(t, rec.Header().Get("Retry-After"))
		}

		// The right secret from the blocked address: the drain runs.
		job := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"after the flood"}}`, http.StatusCreated)
		rec := bb.do(t, request{method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Equal(t, "completed", status("u1", job.JobID))

		// A valid QStash delivery from the blocked address: the scheduled
		// job starts and runs.
		at := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
		scheduled := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"delivered"},"scheduledFor":"`+at+`"}`, http.StatusCreated)
		require.EqualValues(t, "scheduled", scheduled.Status)
		delivery := good()
		delivery.body = fmt.Sprintf(`{"jobId":%d}`, scheduled.JobID)
		rec = bb.do(t, request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(delivery.body),
			headers: map[string]string{"Upstash-Signature": delivery.sign(t)}})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		require.Contains(t, rec.Body.String(), fmt.Sprintf(`"delivered":{"jobId":%d,"started":true}`, scheduled.JobID))
		require.Equal(t, "completed", status("u1", scheduled.JobID))

		// Wrong credentials of either kind are still refused.
		requireError(t, wrong(99), http.StatusTooManyRequests, "too_many_auth_failures")
		forged := good()
		forged.key = "sig_guessedKey0000000000000000000"
		rec = bb.do(t, request{method: http.MethodPost, path: "/api/workers", body: strings.NewReader(forged.body),
			headers: map[string]string{"Upstash-Signature": forged.sign(t)}})
		requireError(t, rec, http.StatusTooManyRequests, "too_many_auth_failures")
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers"}), http.StatusTooManyRequests, "too_many_auth_failures")
	})
}

type testAuthLimit struct {
	l *ratelimit.Limiter
	f ratelimit.Failures
}

func (a testAuthLimit) Blocked(ctx context.Context, c string) (bool, time.Duration, error) {
	return a.l.Blocked(ctx, c, a.f)
}
func (a testAuthLimit) Fail(ctx context.Context, c string) error { return a.l.Fail(ctx, c, a.f) }

// TestSecurityHeadersOnEveryResponse covers success, error and HTML.
func TestSecurityHeadersOnEveryResponse(t *testing.T) {
	bb := setup(t, testenv.Embedded(t), func(cfg *handlers.Config) { cfg.HSTS = true })
	for _, r := range []request{
		{method: http.MethodGet, path: "/"},
		{method: http.MethodGet, path: "/healthz"},
		{method: http.MethodGet, path: "/api/jobs"},
		{method: http.MethodGet, path: "/nope"},
		{method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + token(t, "u")},
	} {
		rec := bb.do(t, r)
		h := rec.Header()
		require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"), r.path)
		require.Equal(t, "DENY", h.Get("X-Frame-Options"), r.path)
		require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'", r.path)
		require.NotEmpty(t, h.Get("Strict-Transport-Security"), r.path)
		require.NotEmpty(t, h.Get("X-Request-Id"), r.path)
		if strings.HasPrefix(r.path, "/api/") {
			require.Equal(t, "no-store", h.Get("Cache-Control"))
		}
	}
}

// TestForwardedForIsTrustedOnlyFromProxies: a client cannot dodge the
// worker-auth failure limit with a forged X-Forwarded-For, unless the peer
// is a configured proxy.
func TestForwardedForIsTrustedOnlyFromProxies(t *testing.T) {
	b := testenv.Embedded(t)
	limiter := ratelimit.New(b.Redis, b.Prefix+"ratelimit:", nil)
	_, proxy, err := net.ParseCIDR("10.9.0.0/16")
	require.NoError(t, err)
	bb := setup(t, b, func(cfg *handlers.Config) {
		cfg.WorkerAuthLimit = testAuthLimit{limiter, ratelimit.Failures{Limit: 2, Window: time.Minute}}
		cfg.TrustedProxies = []*net.IPNet{proxy}
	})
	try := func(peer, xff string) int {
		req := httptest.NewRequest(http.MethodPost, "/api/workers", nil)
		req.RemoteAddr = peer + ":5555"
		req.Header.Set("Authorization", "Bearer wrong")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		bb.app.ServeHTTP(rec, req)
		return rec.Code
	}
	// A direct client rotating forged X-Forwarded-For values is still one address.
	require.Equal(t, 401, try("203.0.113.7", "1.1.1.1"))
	require.Equal(t, 401, try("203.0.113.7", "2.2.2.2"))
	require.Equal(t, 429, try("203.0.113.7", "3.3.3.3"))
	// Behind the trusted proxy, each forwarded client counts alone.
	require.Equal(t, 401, try("10.9.1.1", "198.51.100.1"))
	require.Equal(t, 401, try("10.9.1.1", "198.51.100.2"))
	require.Equal(t, 401, try("10.9.1.1", "198.51.100.1"))
	require.Equal(t, 429, try("10.9.1.1", "198.51.100.1"))
}
