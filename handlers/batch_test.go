package handlers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// batchBody is {"jobs":[items…]}.
func batchBody(items ...string) string { return `{"jobs":[` + strings.Join(items, ",") + `]}` }

// decodeBatchResponse checks the body has only "jobs", each entry only "created"
// and "job", and decodes it.
func decodeBatchResponse(t *testing.T, raw []byte) handlers.CreateJobsResponse {
	t.Helper()
	var top map[string][]map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &top), string(raw))
	require.Len(t, top, 1, string(raw))
	for _, e := range top["jobs"] {
		require.Len(t, e, 2, "created and job: %s", raw)
		var job map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(e["job"], &job))
		require.Len(t, job, 2, "the job is what POST /api/jobs answers: %s", e["job"])
	}
	var resp handlers.CreateJobsResponse
	require.NoError(t, json.Unmarshal(raw, &resp))
	return resp
}

func TestCreateJobsBatch(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		later := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		body := batchBody(
			`{"type":"echo","payload":{"text":"one"},"priority":7,"maxAttempts":2,"idempotencyKey":"a"}`,
			`{"type":"noop","idempotencyKey":"b"}`,
			`{"type":"noop","scheduledFor":"`+later+`","idempotencyKey":"c"}`,
			`{"type":"noop","idempotencyKey":"a"}`,
		)
		rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", body)
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		resp := decodeBatchResponse(t, rec.Body.Bytes())
		require.Len(t, resp.Jobs, 4)
		for i, want := range []struct {
			created bool
			status  models.Status
		}{{true, models.StatusPending}, {true, models.StatusPending}, {true, models.StatusScheduled}, {false, models.StatusPending}} {
			require.Equal(t, want.created, resp.Jobs[i].Created, "job %d", i)
			require.Equal(t, want.status, resp.Jobs[i].Job.Status, "job %d", i)
			require.Positive(t, resp.Jobs[i].Job.JobID)
		}
		require.Equal(t, resp.Jobs[0].Job.JobID, resp.Jobs[3].Job.JobID, "the repeated key is the first job")

		var first models.Job
		require.NoError(t, b.DB.Gorm.Take(&first, resp.Jobs[0].Job.JobID).Error)
		require.Equal(t, "u1", first.UserID)
		require.Equal(t, 7, first.Priority)
		require.Equal(t, 2, first.MaxAttempts)
		require.JSONEq(t, `{"text":"one"}`, string(first.Payload))
		require.Equal(t, "a", *first.IdempotencyKey)
		c := bb.counts(t)
		require.EqualValues(t, 3, c.rows)
		require.EqualValues(t, 2, c.queue.Pending, "the scheduled job waits")
		require.Equal(t, []int64{resp.Jobs[0].Job.JobID, resp.Jobs[1].Job.JobID}, bb.pendingIDs(t), "in claim order")

		// A replay creates nothing: 200, the same jobs.
		rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", body)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		again := decodeBatchResponse(t, rec.Body.Bytes())
		for i := range again.Jobs {
			require.False(t, again.Jobs[i].Created)
			require.Equal(t, resp.Jobs[i].Job.JobID, again.Jobs[i].Job.JobID)
		}
		require.EqualValues(t, 3, bb.counts(t).rows)

		// The keys are per user, and shared with the Idempotency-Key header.
		rec = bb.asUser(t, "u2", http.MethodPost, "/api/jobs/batch", batchBody(`{"type":"noop","idempotencyKey":"a"}`))
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
		single := bb.do(t, request{method: http.MethodPost, path: "/api/jobs", body: strings.NewReader(`{"type":"noop"}`),
			auth: "Bearer " + token(t, "u1"), headers: map[string]string{"Idempotency-Key": "b"}})
		require.Equal(t, http.StatusOK, single.Code, single.Body.String())
		require.Contains(t, single.Body.String(), fmt.Sprintf(`"jobId":%d`, resp.Jobs[1].Job.JobID))
	})
}

// TestCreateJobsBatchInvalid: every invalid job is listed, by index, with
// the code POST /api/jobs gives it, and nothing is stored.
func TestCreateJobsBatchInvalid(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(
			`{"type":"noop"}`,
			`{"type":"echo","payload":{}}`,
			`{"type":"noop","priority":"high"}`,
			`{"type":"noop","bogus":1}`,
			`{"type":"noop","idempotencyKey":5}`,
			`"not an object"`,
			`{"type":"noop","idempotencyKey":"`+strings.Repeat("k", 256)+`"}`,
			`{"type":"nope","maxAttempts":30}`,
		))
		requireError(t, rec, http.StatusBadRequest, handlers.CodeInvalidBatch)
		var body struct {
			Error struct {
				Errors []handlers.BatchItemError `json:"errors"`
			} `json:"error"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		type entry struct {
			index       int
			code, field string
		}
		var got []entry
		for _, e := range body.Error.Errors {
			require.NotEmpty(t, e.Message)
			got = append(got, entry{e.Index, e.Code, e.Field})
		}
		require.Equal(t, []entry{
			{1, handlers.CodeInvalidPayload, "payload.text"},
			{2, handlers.CodeInvalidPriority, "priority"},
			{3, handlers.CodeUnknownField, "bogus"},
			{4, handlers.CodeInvalidIdempotencyKey, "idempotencyKey"},
			{5, handlers.CodeInvalidJSON, ""},
			{6, handlers.CodeInvalidIdempotencyKey, "idempotencyKey"},
			{7, handlers.CodeUnknownJobType, "type"},
		}, got)
		c := bb.counts(t)
		require.Zero(t, c.rows)
		require.Zero(t, c.queue.Pending)

		// Only the service finds the problem: still nothing stored.
		rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(`{"type":"noop"}`, `{"type":"noop","priority":1000000}`))
		eb := requireError(t, rec, http.StatusBadRequest, handlers.CodeInvalidBatch)
		require.Contains(t, eb.Error.Message, "nothing was created")
		require.Contains(t, rec.Body.String(), `"index":1,"code":"invalid_priority","field":"priority"`)
		require.Zero(t, bb.counts(t).rows)
	})
}

// TestCreateJobsBatchShapeAndLimits: the body's shape, the batch's size
// and the body limit of the route each have their code.
func TestCreateJobsBatchShapeAndLimits(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		for _, tc := range []struct {
			body   string
			status int
			code   string
		}{
			{"", http.StatusBadRequest, handlers.CodeInvalidJSON},
			{`[]`, http.StatusBadRequest, handlers.CodeInvalidJSON},
			{`{"jobs":[{"type":"noop"}]} x`, http.StatusBadRequest, handlers.CodeInvalidJSON},
			{"{\"jobs\":[{\"type\":\"\xff\"}]}", http.StatusBadRequest, handlers.CodeInvalidJSON},
			{`{}`, http.StatusBadRequest, handlers.CodeEmptyBatch},
			{`{"jobs":null}`, http.StatusBadRequest, handlers.CodeEmptyBatch},
			{`{"jobs":[]}`, http.StatusBadRequest, handlers.CodeEmptyBatch},
			{`{"jobs":{"type":"noop"}}`, http.StatusBadRequest, handlers.CodeInvalidBatch},
			{`{"jobs":[{"type":"noop"}],"type":"noop"}`, http.StatusBadRequest, handlers.CodeUnknownField},
			{batchBody(strings.Repeat(`{"type":"noop"},`, jobs.MaxBatchSize) + `{"type":"noop"}`), http.StatusRequestEntityTooLarge, handlers.CodeBatchTooLarge},
		} {
			rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", tc.body)
			requireError(t, rec, tc.status, tc.code)
		}
		require.Zero(t, bb.counts(t).rows)

		rec := bb.do(t, request{method: http.MethodPost, path: "/api/jobs/batch", body: strings.NewReader(batchBody(`{"type":"noop"}`))})
		requireError(t, rec, http.StatusUnauthorized, handlers.CodeMissingToken)
		rec = bb.asUser(t, "u1", http.MethodGet, "/api/jobs/batch", "")
		require.GreaterOrEqual(t, rec.Code, 400, "GET is no batch create")
		require.Zero(t, bb.counts(t).rows)

		// A full batch of 1 KiB payloads is over BODY_LIMIT_BYTES's default
		// and within the batch route's.
		payload := `{"text":"` + strings.Repeat("x", 1024) + `"}`
		items := make([]string, jobs.MaxBatchSize)
		for i := range items {
			items[i] = fmt.Sprintf(`{"type":"echo","payload":%s,"priority":%d}`, payload, i%3)
		}
		full := batchBody(items...)
		require.Greater(t, len(full), handlers.DefaultBodyLimit)
		rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", full)
		require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String()[:min(500, rec.Body.Len())])
		resp := decodeBatchResponse(t, rec.Body.Bytes())
		require.Len(t, resp.Jobs, jobs.MaxBatchSize)
		c := bb.counts(t)
		require.EqualValues(t, jobs.MaxBatchSize, c.rows)
		require.EqualValues(t, jobs.MaxBatchSize, c.queue.Pending)
		// The same body on the single route is too large.
		rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs", full)
		requireError(t, rec, http.StatusRequestEntityTooLarge, handlers.CodeRequestTooLarge)
	})
}

// TestCreateJobsBatchBodyLimit: BatchBodyLimit caps the batch route, with
// or without a Content-Length, and the other routes keep BodyLimit.
func TestCreateJobsBatchBodyLimit(t *testing.T) {
	b := testenv.Embedded(t)
	bb := setup(t, b, func(c *handlers.Config) { c.BatchBodyLimit = 2000; c.BodyLimit = 500 })
	small := batchBody(strings.Repeat(`{"type":"noop"},`, 40) + `{"type":"noop"}`) // about 650 bytes
	require.Greater(t, len(small), 500)
	rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", small)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())

	big := batchBody(strings.Repeat(`{"type":"noop"},`, 200) + `{"type":"noop"}`)
	rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", big)
	requireError(t, rec, http.StatusRequestEntityTooLarge, handlers.CodeRequestTooLarge)
	rec = bb.do(t, request{method: http.MethodPost, path: "/api/jobs/batch", body: unknownLength{strings.NewReader(big)},
		auth: "Bearer " + token(t, "u1")})
	requireError(t, rec, http.StatusRequestEntityTooLarge, handlers.CodeRequestTooLarge)
	require.EqualValues(t, 41, bb.counts(t).rows)
}

// TestCreateJobsBatchRateLimited: a batch asks the creation limiter once,
// and a refusal stores nothing.
func TestCreateJobsBatchRateLimited(t *testing.T) {
	b := testenv.Embedded(t)
	asked := 0
	bb := setup(t, b, func(c *handlers.Config) {
		c.CreateLimit = func(context.Context, string) (bool, time.Duration, error) {
			asked++
			return asked == 1, 3 * time.Second, nil
		}
	})
	rec := bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(`{"type":"noop"}`, `{"type":"noop"}`))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, 1, asked)
	rec = bb.asUser(t, "u1", http.MethodPost, "/api/jobs/batch", batchBody(`{"type":"noop"}`))
	requireError(t, rec, http.StatusTooManyRequests, handlers.CodeRateLimited)
	require.Equal(t, "3", rec.Header().Get("Retry-After"))
	require.EqualValues(t, 2, bb.counts(t).rows)
}
