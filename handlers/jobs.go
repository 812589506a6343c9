package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// HeaderIdempotencyKey makes a second POST /api/jobs by the same user with
// the same key return the first job (200) instead of creating another.
const HeaderIdempotencyKey = "Idempotency-Key"

// CreateJobRequest documents the body of POST /api/jobs. It is decoded
// field by field (see decodeCreateJob), not with this struct, so that each
// bad field gets its own error code.
//
// Only these top-level fields are allowed, spelled exactly so; any other is
// 400 unknown_field. Omit a field to get its default; null is accepted only
// for scheduledFor and expiresAt. priority and maxAttempts must be JSON
// integer literals (not 1.0, 1e3 or "1").
type CreateJobRequest struct {
	// Type names a registered job type. Required.
	Type string `json:"type"`
	// Payload is the job's input, a JSON object. Defaults to {}.
	Payload json.RawMessage `json:"payload,omitempty"`
	// Priority is 0–999999, larger runs first. Defaults to 0.
	Priority *int `json:"priority,omitempty"`
	// MaxAttempts is 1–25. Defaults to 3.
	MaxAttempts *int `json:"maxAttempts,omitempty"`
	// ScheduledFor, an RFC 3339 time in the future, stores the job as
	// scheduled until then. Absent, null or past: the job runs now.
	ScheduledFor *time.Time `json:"scheduledFor,omitempty"`
	// ExpiresAt, an RFC 3339 time after now and after scheduledFor,
	// bounds the job's waits: a deferral (a provider's Retry-After) or a
	// snooze that would run it later fails it instead. Absent or null:
	// scheduledFor (or now) plus the job type's limit, 72 hours by
	// default.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// CreateJobResponse is the body of a successful POST /api/jobs: 201 for a
// new job, 200 with the earlier job (in its current status) when the
// Idempotency-Key was used before.
type CreateJobResponse struct {
	JobID  int64         `json:"jobId"`
	Status models.Status `json:"status"`
}

// createJob serves POST /api/jobs.
func (s *server) createJob(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	req, err := decodeCreateJob(body)
	if err != nil {
		return err
	}
	req.UserID = userID(c)
	req.IdempotencyKey = c.Request().Header.Get(HeaderIdempotencyKey)
	if err := s.checkCreateLimit(c, req.UserID); err != nil {
		return err
	}
	job, created, err := s.cfg.Service.Create(c.Request().Context(), req)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/jobs/"+strconv.FormatInt(job.ID, 10))
	return c.JSON(status, CreateJobResponse{JobID: job.ID, Status: job.Status})
}

// JobResponse is the body of GET /api/jobs/:id: the bare job object plus
// its history, one entry per finished attempt, oldest first (an empty list
// before the first attempt ends). After a retry the attempt numbers start
// again at 1; earlier entries stay.
type JobResponse struct {
	models.Job
	History []models.JobAttempt `json:"history"`
}

// checkCreateLimit applies the per-user creation rate.
func (s *server) checkCreateLimit(c echo.Context, user string) error {
	if s.cfg.CreateLimit == nil {
		return nil
	}
	ok, wait, err := s.cfg.CreateLimit(c.Request().Context(), user)
	if err != nil {
		s.log.Warn("rate limiter unavailable; request let through", "err", err)
		return nil
	}
	if ok {
		return nil
	}
	return retryLater(c, CodeRateLimited, "too many jobs created; slow down", wait)
}

// retryLater answers 429 with a Retry-After in whole seconds.
func retryLater(c echo.Context, code, message string, wait time.Duration) error {
	secs := int64((wait + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	c.Response().Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	return apiError(http.StatusTooManyRequests, code, fmt.Sprintf("%s (retry after %ds)", message, secs))
}

// getJob serves GET /api/jobs/:id: the job with its attempt history.
func (s *server) getJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	ctx, user := c.Request().Context(), userID(c)
	job, err := s.cfg.Service.Get(ctx, user, id)
	if err != nil {
		return err
	}
	history, err := s.cfg.Service.Attempts(ctx, user, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, JobResponse{Job: *job, History: history})
}

// cancelJob serves POST /api/jobs/:id/cancel: the cancelled job. A
// pending, scheduled or running job is cancelled with its unfinished
// children (a running handler is stopped); a finished one is 409
// job_not_cancellable, naming its status. The body, if any, is ignored.
func (s *server) cancelJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	job, err := s.cfg.Service.Cancel(c.Request().Context(), userID(c), id)
	if errors.Is(err, jobs.ErrNotCancellable) && job != nil {
		return apiError(http.StatusConflict, CodeJobNotCancellable,
			fmt.Sprintf("the job is %s: only an unfinished job (pending, scheduled or processing) can be cancelled", job.Status))
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job)
}

// retryJob serves POST /api/jobs/:id/retry: the failed job, pending again
// with a fresh attempt budget. The body, if any, is ignored.
func (s *server) retryJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	job, err := s.cfg.Service.Retry(c.Request().Context(), userID(c), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job)
}

// rescheduleJob serves POST /api/jobs/:id/reschedule with the body
// {"scheduledFor":"RFC 3339"}: the moved job, scheduled when the time is
// in the future, pending otherwise.
func (s *server) rescheduleJob(c echo.Context) error {
	id, err := jobID(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	var req map[string]json.RawMessage
	if err := json.Unmarshal(body, &req); err != nil || req == nil {
		return badRequest(CodeInvalidJSON, "", `the body must be a JSON object such as {"scheduledFor":"2030-01-02T15:04:05Z"}`)
	}
	raw, ok := req["scheduledFor"]
	if !ok || isNull(raw) {
		return badRequest(CodeInvalidScheduledFor, "scheduledFor", "scheduledFor is required")
	}
	at, err := timestamp(raw, "scheduledFor")
	if err != nil {
		return badRequest(CodeInvalidScheduledFor, "scheduledFor", err.Error())
	}
	job, err := s.cfg.Service.Reschedule(c.Request().Context(), userID(c), id, at)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, job)
}

// listJobs serves GET /api/jobs?status=&type=&cursor=&limit=, newest first.
// Empty parameters do not filter; the Service checks status, cursor and
// the range of limit.
func (s *server) listJobs(c echo.Context) error {
	req, err := listRequest(c)
	if err != nil {
		return err
	}
	req.Cursor = c.QueryParam("cursor")
	if raw := c.QueryParam("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 {
			return badRequest(CodeInvalidLimit, "limit", fmt.Sprintf("limit must be an integer from 1 to %d", jobs.MaxListLimit))
		}
		req.Limit = n
	}
	page, err := s.cfg.Service.List(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, page)
}

// retryMatching serves POST /api/jobs/retry: every failed job (or
// cancelled, with ?status=cancelled) the filters of GET /api/jobs match is
// retried, the newest 1000 at a time → jobs.BulkRetry.
func (s *server) retryMatching(c echo.Context) error {
	req, err := listRequest(c)
	if err != nil {
		return err
	}
	out, err := s.cfg.Service.RetryMatching(c.Request().Context(), userID(c), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// jobStats serves GET /api/jobs/stats?since=24h: the caller's jobs (an
// operator's: everyone's) counted by status and type, and those finished
// per minute over the last hour.
func (s *server) jobStats(c echo.Context) error {
	req := jobs.StatsRequest{UserID: userID(c)}
	if raw := c.QueryParam("since"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d < time.Minute || d > jobs.MaxStatsSince {
			return badRequest(CodeInvalidSince, "since", "since must be a Go duration from 1m to 720h, e.g. 1h or 24h")
		}
		req.Since = d
	}
	st, err := s.cfg.Service.Stats(c.Request().Context(), req)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, statsResponse{Stats: st, SinceSeconds: int64(st.Since / time.Second)})
}

// statsResponse is the body of GET /api/jobs/stats: the stats with their
// window in seconds.
type statsResponse struct {
	jobs.Stats
	SinceSeconds int64 `json:"sinceSeconds"`
}

// listRequest reads the filters GET /api/jobs and POST /api/jobs/retry
// share: status, type, user, parent, createdFrom, createdTo and error.
func listRequest(c echo.Context) (jobs.ListRequest, error) {
	req := jobs.ListRequest{
		UserID:        userID(c),
		Status:        models.Status(c.QueryParam("status")),
		Type:          c.QueryParam("type"),
		User:          c.QueryParam("user"),
		ErrorContains: c.QueryParam("error"),
	}
	if !printable(req.Type) {
		return req, badRequest(CodeInvalidType, "type", "type must be printable text")
	}
	if !printable(req.User) {
		return req, badRequest(CodeInvalidFilter, "user", "user must be printable text")
	}
	if !printable(req.ErrorContains) {
		return req, badRequest(CodeInvalidFilter, "error", "error must be printable text")
	}
	if raw := c.QueryParam("parent"); raw != "" {
		id, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || id <= 0 || strings.TrimLeft(raw, "0123456789") != "" {
			return req, badRequest(CodeInvalidParent, "parent", "parent must be a job id: a positive integer")
		}
		req.ParentID = id
	}
	for _, p := range []struct {
		name string
		to   *time.Time
	}{{"createdFrom", &req.CreatedFrom}, {"createdTo", &req.CreatedTo}} {
		raw := c.QueryParam(p.name)
		if raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return req, badRequest(CodeInvalidTimeRange, p.name, p.name+" must be an RFC 3339 time, e.g. 2026-12-01T09:00:00Z")
		}
		*p.to = t
	}
	return req, nil
}

// jobID parses the :id path parameter: decimal digits only, 1 to 2^63-1.
func jobID(c echo.Context) (int64, error) {
	raw := c.Param("id")
	invalid := badRequest(CodeInvalidJobID, "id", "the job id must be a positive integer")
	if raw == "" || strings.TrimLeft(raw, "0123456789") != "" {
		return 0, invalid
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid
	}
	return id, nil
}

// readBody reads the whole body, capped by the limitBody middleware.
func readBody(c echo.Context) ([]byte, error) {
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errRequestTooLarge(mbe.Limit)
		}
		return nil, &APIError{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: "the request body could not be read", Err: err}
	}
	return body, nil
}

// createFields are the top-level fields POST /api/jobs accepts.
var createFields = []string{"type", "payload", "priority", "maxAttempts", "scheduledFor", "expiresAt"}

// decodeCreateJob turns a POST /api/jobs body into a CreateRequest without
// the user and the idempotency key. It checks the shape of each field;
// ranges, the job type and the payload's content are the Service's.
func decodeCreateJob(body []byte) (jobs.CreateRequest, error) {
	var req jobs.CreateRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, badRequest(CodeInvalidJSON, "", "the request body must be a JSON object; it is empty")
	}
	if !utf8.Valid(body) {
		return req, badRequest(CodeInvalidJSON, "", "the request body must be UTF-8 JSON")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return req, badRequest(CodeInvalidJSON, "", "the request body must be a JSON object")
	}
	if err := onlyFields(fields, createFields); err != nil {
		return req, err
	}
	return decodeJobFields(fields)
}

// onlyFields refuses the fields of an object that are not in allowed,
// naming each (400 unknown_field).
func onlyFields(fields map[string]json.RawMessage, allowed []string) error {
	var unknown []string
	for name := range fields {
		if !slices.Contains(allowed, name) {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	ve := &jobs.ValidationError{Code: CodeUnknownField,
		Message: fmt.Sprintf("unknown field %q; the fields are %s", unknown[0], strings.Join(allowed, ", "))}
	for _, name := range unknown {
		ve.Fields = append(ve.Fields, jobs.FieldError{Field: name, Message: "unknown field"})
	}
	return ve
}

// decodeJobFields reads the fields of a job, as POST /api/jobs takes
// them, into a CreateRequest.
func decodeJobFields(fields map[string]json.RawMessage) (jobs.CreateRequest, error) {
	var req jobs.CreateRequest
	if raw, ok := fields["type"]; ok {
		if err := json.Unmarshal(raw, &req.Type); err != nil || isNull(raw) {
			return req, badRequest(CodeInvalidType, "type", "type must be a string")
		}
	}
	if raw, ok := fields["payload"]; ok {
		req.Payload = raw
	}
	if raw, ok := fields["priority"]; ok {
		n, err := integer(raw)
		if err != nil {
			return req, badRequest(CodeInvalidPriority, "priority",
				fmt.Sprintf("priority must be an integer from %d to %d", models.MinPriority, models.MaxPriority))
		}
		req.Priority = n
	}
	if raw, ok := fields["maxAttempts"]; ok {
		n, err := integer(raw)
		// 0 would mean "the default" to the Service; sent explicitly it
		// is out of range.
		if err != nil || n == 0 {
			return req, badRequest(CodeInvalidMaxAttempts, "maxAttempts",
				fmt.Sprintf("maxAttempts must be an integer from %d to %d", models.MinMaxAttempts, models.MaxMaxAttempts))
		}
		req.MaxAttempts = n
	}
	if raw, ok := fields["scheduledFor"]; ok && !isNull(raw) {
		at, err := timestamp(raw, "scheduledFor")
		if err != nil {
			return req, badRequest(CodeInvalidScheduledFor, "scheduledFor", err.Error())
		}
		req.ScheduledFor = &at
	}
	if raw, ok := fields["expiresAt"]; ok && !isNull(raw) {
		at, err := timestamp(raw, "expiresAt")
		if err != nil {
			return req, badRequest(CodeInvalidExpiresAt, "expiresAt", err.Error())
		}
		req.ExpiresAt = &at
	}
	return req, nil
}

func isNull(raw json.RawMessage) bool {
	return string(bytes.TrimSpace(raw)) == "null"
}

// integer parses a JSON integer literal into an int: no fraction, no
// exponent, no quotes, no overflow.
func integer(raw json.RawMessage) (int, error) {
	return strconv.Atoi(string(bytes.TrimSpace(raw)))
}

// Years a scheduledFor or an expiresAt may fall in. Both databases store them; outside
// them SQLite's text timestamps would not read back.
const (
	minScheduledYear = 1970
	maxScheduledYear = 9999
)

// timestamp parses a JSON string holding an RFC 3339 time, the value of
// field.
func timestamp(raw json.RawMessage, field string) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf(`%s must be an RFC 3339 time in a string, such as "2030-01-02T15:04:05Z"`, field)
	}
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 time, such as \"2030-01-02T15:04:05Z\"", field, s)
	}
	if y := at.UTC().Year(); y < minScheduledYear || y > maxScheduledYear {
		return time.Time{}, fmt.Errorf("%s must fall in the years %d to %d (UTC)", field, minScheduledYear, maxScheduledYear)
	}
	return at, nil
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}
