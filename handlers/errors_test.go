package handlers_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/testenv"
)

// TestErrors sends every kind of bad request and checks its status, its
// code, the JSON error shape, and that nothing was written: no row in the
// jobs table and nothing in the queue.
func TestErrors(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		now := time.Now()

		// One job of user "owner", already cancelled: the 404 and 409 cases
		// aim at it.
		owned := bb.createJob(t, "owner", `{"type":"echo","payload":{"text":"hi"}}`, http.StatusCreated)
		rec := bb.asUser(t, "owner", http.MethodPost, fmt.Sprintf("/api/jobs/%d/cancel", owned.JobID), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		before := bb.counts(t)
		require.Equal(t, int64(1), before.rows)

		user := "Bearer " + token(t, "u1")
		owner := "Bearer " + token(t, "owner")
		sign := func(secret string, claims jwt.MapClaims) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(secret))
			require.NoError(t, err)
			return "Bearer " + s
		}
		expired, err := auth.MintHS256([]byte(testJWTSecret), "u1", time.Minute, now.Add(-time.Hour))
		require.NoError(t, err)
		wrongSecret, err := auth.MintHS256([]byte("not the secret"), "u1", time.Hour, now)
		require.NoError(t, err)
		noneAlg, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "u1", "exp": now.Add(time.Hour).Unix()}).
			SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)

		job := func(fields string) string { return `{"type":"echo","payload":{"text":"x"}` + fields + `}` }
		big := strings.Repeat("a", 300<<10)

		tests := []struct {
			name    string
			method  string
			path    string
			body    string
			reader  io.Reader // instead of body
			auth    string
			headers map[string]string
			status  int
			code    string
			field   string
		}{
			// Body is not a JSON object.
			{name: "empty body", body: "", status: 400, code: "invalid_json"},
			{name: "whitespace body", body: "  \n", status: 400, code: "invalid_json"},
			{name: "truncated JSON", body: `{"type":"echo"`, status: 400, code: "invalid_json"},
			{name: "not JSON", body: `type=echo`, status: 400, code: "invalid_json"},
			{name: "array", body: `[{"type":"echo"}]`, status: 400, code: "invalid_json"},
			{name: "null", body: `null`, status: 400, code: "invalid_json"},
			{name: "string", body: `"echo"`, status: 400, code: "invalid_json"},
			{name: "trailing data", body: job("") + `{}`, status: 400, code: "invalid_json"},
			{name: "invalid UTF-8", body: "{\"type\":\"echo\",\"payload\":{\"text\":\"\xff\"}}", status: 400, code: "invalid_json"},

			// Unknown top-level fields, exact spelling required.
			{name: "unknown field", body: job(`,"extra":1`), status: 400, code: "unknown_field", field: "extra"},
			{name: "field in the wrong case", body: `{"Type":"echo","payload":{"text":"x"}}`, status: 400, code: "unknown_field", field: "Type"},
			{name: "snake case field", body: job(`,"max_attempts":3`), status: 400, code: "unknown_field", field: "max_attempts"},

			// type.
			{name: "type missing", body: `{"payload":{"text":"x"}}`, status: 400, code: "invalid_type", field: "type"},
			{name: "type a number", body: `{"type":5}`, status: 400, code: "invalid_type", field: "type"},
			{name: "type null", body: `{"type":null}`, status: 400, code: "invalid_type", field: "type"},
			{name: "unknown job type", body: `{"type":"nope","payload":{}}`, status: 400, code: "unknown_job_type", field: "type"},

			// payload.
			{name: "payload an array", body: `{"type":"echo","payload":[1]}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload a string", body: `{"type":"echo","payload":"text"}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload null", body: `{"type":"echo","payload":null}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload refused by the type", body: `{"type":"echo","payload":{"text":5}}`, status: 400, code: "invalid_payload", field: "payload.text"},
			{name: "payload missing for a type that needs one", body: `{"type":"echo"}`, status: 400, code: "invalid_payload", field: "payload.text"},
			{name: "payload with NUL escape", body: `{"type":"echo","payload":{"text":"a\u0000b"}}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload with lone surrogate", body: `{"type":"echo","payload":{"text":"\ud800"}}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload number overflow", body: `{"type":"echo","payload":{"text":"x","n":1e400}}`, status: 400, code: "invalid_payload", field: "payload"},
			{name: "payload over 256 KiB", body: `{"type":"echo","payload":{"text":"` + big + `"}}`, status: 413, code: "payload_too_large", field: "payload"},

			// priority.
			{name: "priority huge", body: job(`,"priority":1e30`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority fraction", body: job(`,"priority":1.5`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority exponent", body: job(`,"priority":1e3`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority string", body: job(`,"priority":"3"`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority null", body: job(`,"priority":null`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority overflows int64", body: job(`,"priority":9223372036854775808`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority negative", body: job(`,"priority":-1`), status: 400, code: "invalid_priority", field: "priority"},
			{name: "priority above max", body: job(`,"priority":1000000`), status: 400, code: "invalid_priority", field: "priority"},

			// maxAttempts.
			{name: "maxAttempts zero", body: job(`,"maxAttempts":0`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},
			{name: "maxAttempts above max", body: job(`,"maxAttempts":26`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},
			{name: "maxAttempts negative", body: job(`,"maxAttempts":-3`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},
			{name: "maxAttempts fraction", body: job(`,"maxAttempts":2.5`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},
			{name: "maxAttempts huge", body: job(`,"maxAttempts":1e30`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},
			{name: "maxAttempts string", body: job(`,"maxAttempts":"3"`), status: 400, code: "invalid_max_attempts", field: "maxAttempts"},

			// scheduledFor.
			{name: "scheduledFor words", body: job(`,"scheduledFor":"tomorrow"`), status: 400, code: "invalid_scheduled_for", field: "scheduledFor"},
			{name: "scheduledFor date only", body: job(`,"scheduledFor":"2030-01-02"`), status: 400, code: "invalid_scheduled_for", field: "scheduledFor"},
			{name: "scheduledFor no zone", body: job(`,"scheduledFor":"2030-01-02T03:04:05"`), status: 400, code: "invalid_scheduled_for", field: "scheduledFor"},
			{name: "scheduledFor a number", body: job(`,"scheduledFor":1893456000`), status: 400, code: "invalid_scheduled_for", field: "scheduledFor"},
			{name: "scheduledFor year 1", body: job(`,"scheduledFor":"0001-01-01T00:00:00Z"`), status: 400, code: "invalid_scheduled_for", field: "scheduledFor"},

			// Idempotency-Key.
			{name: "Idempotency-Key too long", body: job(""), headers: map[string]string{"Idempotency-Key": strings.Repeat("k", 256)},
				status: 400, code: "invalid_idempotency_key", field: "Idempotency-Key"},

			// Request body over the 1 MiB limit, announced and not.
			{name: "body over the limit", body: strings.Repeat(" ", 1<<20) + job(""), status: 413, code: "request_too_large"},
			{name: "body over the limit, length unknown", reader: unknownLength{strings.NewReader(strings.Repeat(" ", 1<<20) + job(""))},
				status: 413, code: "request_too_large"},

			// Tokens.
			{name: "no token", body: job(""), auth: "-", status: 401, code: "missing_token"},
			{name: "basic auth", body: job(""), auth: "Basic dTE6cGFzcw==", status: 401, code: "invalid_token"},
			{name: "bearer without token", body: job(""), auth: "Bearer ", status: 401, code: "invalid_token"},
			{name: "malformed token", body: job(""), auth: "Bearer not.a.jwt", status: 401, code: "invalid_token"},
			{name: "expired token", body: job(""), auth: "Bearer " + expired, status: 401, code: "token_expired"},
			{name: "wrongly signed token", body: job(""), auth: "Bearer " + wrongSecret, status: 401, code: "invalid_token"},
			{name: "alg none token", body: job(""), auth: "Bearer " + noneAlg, status: 401, code: "invalid_token"},
			{name: "token not valid yet", body: job(""), auth: sign(testJWTSecret, jwt.MapClaims{"sub": "u1", "exp": now.Add(2 * time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}),
				status: 401, code: "invalid_token"},
			{name: "token without sub", body: job(""), auth: sign(testJWTSecret, jwt.MapClaims{"exp": now.Add(time.Hour).Unix()}), status: 401, code: "invalid_token"},
			{name: "token without exp", body: job(""), auth: sign(testJWTSecret, jwt.MapClaims{"sub": "u1"}), status: 401, code: "invalid_token"},
			{name: "list without token", method: http.MethodGet, path: "/api/jobs", auth: "-", status: 401, code: "missing_token"},
			{name: "get with expired token", method: http.MethodGet, path: "/api/jobs/1", auth: "Bearer " + expired, status: 401, code: "token_expired"},
			{name: "cancel with bad token", method: http.MethodPost, path: "/api/jobs/1/cancel", auth: "Bearer x", status: 401, code: "invalid_token"},

			// Job ids, ownership, state.
			{name: "get id not a number", method: http.MethodGet, path: "/api/jobs/abc", status: 400, code: "invalid_job_id", field: "id"},
			{name: "get id zero", method: http.MethodGet, path: "/api/jobs/0", status: 400, code: "invalid_job_id", field: "id"},
			{name: "get id negative", method: http.MethodGet, path: "/api/jobs/-1", status: 400, code: "invalid_job_id", field: "id"},
			{name: "get id with sign", method: http.MethodGet, path: "/api/jobs/+1", status: 400, code: "invalid_job_id", field: "id"},
			{name: "get id overflows", method: http.MethodGet, path: "/api/jobs/9223372036854775808", status: 400, code: "invalid_job_id", field: "id"},
			{name: "cancel id not a number", method: http.MethodPost, path: "/api/jobs/1.5/cancel", status: 400, code: "invalid_job_id", field: "id"},
			{name: "get missing job", method: http.MethodGet, path: "/api/jobs/9223372036854775807", status: 404, code: "job_not_found"},
			{name: "get another user's job", method: http.MethodGet, path: fmt.Sprintf("/api/jobs/%d", owned.JobID), status: 404, code: "job_not_found"},
			{name: "cancel another user's job", method: http.MethodPost, path: fmt.Sprintf("/api/jobs/%d/cancel", owned.JobID), status: 404, code: "job_not_found"},
			{name: "cancel missing job", method: http.MethodPost, path: "/api/jobs/424242/cancel", status: 404, code: "job_not_found"},
			{name: "cancel a cancelled job", method: http.MethodPost, path: fmt.Sprintf("/api/jobs/%d/cancel", owned.JobID), auth: owner, status: 409, code: "job_not_cancellable"},

			// List parameters.
			{name: "limit not a number", method: http.MethodGet, path: "/api/jobs?limit=ten", status: 400, code: "invalid_limit", field: "limit"},
			{name: "limit zero", method: http.MethodGet, path: "/api/jobs?limit=0", status: 400, code: "invalid_limit", field: "limit"},
			{name: "limit fraction", method: http.MethodGet, path: "/api/jobs?limit=1.5", status: 400, code: "invalid_limit", field: "limit"},
			{name: "limit above max", method: http.MethodGet, path: "/api/jobs?limit=101", status: 400, code: "invalid_limit", field: "limit"},
			{name: "unknown status", method: http.MethodGet, path: "/api/jobs?status=done", status: 400, code: "invalid_status", field: "status"},
			{name: "bad cursor", method: http.MethodGet, path: "/api/jobs?cursor=xyz", status: 400, code: "invalid_cursor", field: "cursor"},
			{name: "type filter with NUL", method: http.MethodGet, path: "/api/jobs?type=a%00b", status: 400, code: "invalid_type", field: "type"},

			// Routing.
			{name: "unknown route", method: http.MethodGet, path: "/nope", auth: "-", status: 404, code: "not_found"},
			{name: "unknown API route", method: http.MethodGet, path: "/api/jobs/1/nope", status: 404, code: "not_found"},
			{name: "trailing slash", method: http.MethodGet, path: "/api/jobs/", status: 404, code: "not_found"},
			{name: "DELETE a job", method: http.MethodDelete, path: "/api/jobs/1", status: 405, code: "method_not_allowed"},
			{name: "PUT jobs", method: http.MethodPut, path: "/api/jobs", body: job(""), status: 405, code: "method_not_allowed"},
			{name: "GET cancel", method: http.MethodGet, path: "/api/jobs/1/cancel", status: 405, code: "method_not_allowed"},
			{name: "GET workers", method: http.MethodGet, path: "/api/workers", auth: "-", status: 405, code: "method_not_allowed"},
			{name: "POST healthz", method: http.MethodPost, path: "/healthz", auth: "-", status: 405, code: "method_not_allowed"},

			// Worker auth (the queue must stay untouched: see below).
			{name: "worker without auth", method: http.MethodPost, path: "/api/workers", auth: "-", status: 401, code: "missing_worker_auth"},
			{name: "worker with wrong secret", method: http.MethodPost, path: "/api/workers", auth: "Bearer wrong", status: 401, code: "invalid_worker_auth"},
			{name: "worker with a user token", method: http.MethodPost, path: "/api/workers", status: 401, code: "invalid_worker_auth"},
			{name: "worker with secret as prefix", method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret + "x", status: 401, code: "invalid_worker_auth"},
			{name: "worker with basic auth", method: http.MethodPost, path: "/api/workers", auth: "Basic " + testWorkerSecret, status: 401, code: "invalid_worker_auth"},
			{name: "worker budget not a duration", method: http.MethodPost, path: "/api/workers?budget=10", auth: "Bearer " + testWorkerSecret, status: 400, code: "invalid_budget", field: "budget"},
			{name: "worker budget negative", method: http.MethodPost, path: "/api/workers?budget=-5s", auth: "Bearer " + testWorkerSecret, status: 400, code: "invalid_budget", field: "budget"},
			{name: "worker body over the limit", method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret,
				body: strings.Repeat("x", 1<<20+1), status: 413, code: "request_too_large"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := request{method: tt.method, path: tt.path, auth: tt.auth, headers: tt.headers, body: tt.reader}
				if r.method == "" {
					r.method = http.MethodPost
				}
				if r.path == "" {
					r.path = "/api/jobs"
				}
				switch r.auth {
				case "":
					r.auth = user
				case "-":
					r.auth = ""
				}
				if r.body == nil && (tt.body != "" || r.method == http.MethodPost) {
					r.body = strings.NewReader(tt.body)
				}
				rec := bb.do(t, r)
				eb := requireError(t, rec, tt.status, tt.code)
				if tt.field != "" {
					require.Len(t, eb.Error.Fields, 1, rec.Body.String())
					require.Equal(t, tt.field, eb.Error.Fields[0].Field)
				} else if tt.code != "unknown_field" {
					require.Empty(t, eb.Error.Fields, rec.Body.String())
				}
				if tt.status == http.StatusMethodNotAllowed {
					require.NotEmpty(t, rec.Header().Get("Allow"))
				}
				require.Equal(t, before, bb.counts(t), "something was written")
			})
		}
		require.Empty(t, bb.drainer.Calls(), "no refused worker call may drain")
	})
}
