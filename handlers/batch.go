package handlers

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/jobs"
)

// CreateJobsRequest documents the body of POST /api/jobs/batch:
// {"jobs":[…]}, 1 to jobs.MaxBatchSize jobs. Each job has the fields of
// POST /api/jobs (see CreateJobRequest), checked the same way, plus an
// optional idempotencyKey that does what the Idempotency-Key header does
// for a single create. "jobs" is the only top-level field.
type CreateJobsRequest struct {
	Jobs []CreateJobsItem `json:"jobs"`
}

// CreateJobsItem is one job of a batch.
type CreateJobsItem struct {
	CreateJobRequest
	// IdempotencyKey, when set, makes the job the one an earlier create
	// (or an earlier job of the batch) made with the same key.
	IdempotencyKey string `json:"idempotencyKey,omitempty"`
}

// CreateJobsResponse is the body of a successful POST /api/jobs/batch:
// one entry per job, in the request's order. The status is 201 when any
// job was created, 200 when every one existed already.
type CreateJobsResponse struct {
	Jobs []CreatedJob `json:"jobs"`
}

// CreatedJob is one entry of CreateJobsResponse.
type CreatedJob struct {
	// Created is false for a job that existed already: its idempotencyKey
	// was used before, or by an earlier job of the batch.
	Created bool `json:"created"`
	// Job is what POST /api/jobs answers for it.
	Job CreateJobResponse `json:"job"`
}

// BatchItemError is one entry of the errors of an invalid_batch response:
// which job (index from 0), its error code as POST /api/jobs would send
// it, and the field.
type BatchItemError struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// batchFields are the fields of one job of a batch.
var batchFields = append(slices.Clone(createFields), "idempotencyKey")

// createJobs serves POST /api/jobs/batch. It is all or nothing: one
// invalid job refuses the batch (400 invalid_batch listing every invalid
// job) and nothing is stored.
func (s *server) createJobs(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	user := userID(c)
	items, err := decodeBatch(body)
	if err != nil {
		return err
	}
	reqs := make([]jobs.CreateRequest, 0, len(items))
	var index []int // reqs[n] is job index[n] of the batch
	var bad []jobs.ItemError
	for i, raw := range items {
		req, err := decodeBatchItem(raw)
		if err != nil {
			var ve *jobs.ValidationError
			if !errors.As(err, &ve) {
				return err
			}
			bad = append(bad, jobs.ItemError{Index: i, Err: ve})
			continue
		}
		req.UserID = user
		reqs, index = append(reqs, req), append(index, i)
	}
	if len(bad) > 0 {
		// Report the other jobs' errors too, so one round fixes all.
		if err := s.cfg.Service.ValidateMany(reqs); err != nil {
			var be *jobs.BatchError
			if !errors.As(err, &be) {
				return err
			}
			for _, it := range be.Items {
				bad = append(bad, jobs.ItemError{Index: index[it.Index], Err: it.Err})
			}
		}
		slices.SortFunc(bad, func(a, b jobs.ItemError) int { return a.Index - b.Index })
		return &jobs.BatchError{Items: bad}
	}
	if err := s.checkCreateLimit(c, user); err != nil {
		return err
	}
	out, err := s.cfg.Service.CreateMany(c.Request().Context(), reqs)
	if err != nil {
		return err
	}
	resp := CreateJobsResponse{Jobs: make([]CreatedJob, len(out))}
	status := http.StatusOK
	for i, cj := range out {
		resp.Jobs[i] = CreatedJob{Created: cj.Created, Job: CreateJobResponse{JobID: cj.Job.ID, Status: cj.Job.Status}}
		if cj.Created {
			status = http.StatusCreated
		}
	}
	return c.JSON(status, resp)
}

// decodeBatch checks the shape of a batch body and returns its jobs, not
// yet decoded.
func decodeBatch(body []byte) ([]json.RawMessage, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest(CodeInvalidJSON, "", `the request body must be a JSON object {"jobs":[…]}; it is empty`)
	}
	if !utf8.Valid(body) {
		return nil, badRequest(CodeInvalidJSON, "", "the request body must be UTF-8 JSON")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || top == nil {
		return nil, badRequest(CodeInvalidJSON, "", `the request body must be a JSON object {"jobs":[…]}`)
	}
	if err := onlyFields(top, []string{"jobs"}); err != nil {
		return nil, err
	}
	raw, ok := top["jobs"]
	if !ok || isNull(raw) {
		return nil, apiError(http.StatusBadRequest, CodeEmptyBatch, "jobs is required: a list of 1 to "+fmt.Sprint(jobs.MaxBatchSize)+" jobs")
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, badRequest(CodeInvalidBatch, "jobs", "jobs must be a list of job objects")
	}
	if len(items) == 0 {
		return nil, apiError(http.StatusBadRequest, CodeEmptyBatch, "jobs is empty: a batch needs 1 to "+fmt.Sprint(jobs.MaxBatchSize)+" jobs")
	}
	if len(items) > jobs.MaxBatchSize {
		return nil, errBatchTooLarge(len(items))
	}
	return items, nil
}

func errBatchTooLarge(n int) *APIError {
	return apiError(http.StatusRequestEntityTooLarge, CodeBatchTooLarge,
		fmt.Sprintf("a batch holds at most %d jobs; this one has %d", jobs.MaxBatchSize, n))
}

// decodeBatchItem decodes one job of a batch as POST /api/jobs decodes
// its body, plus idempotencyKey.
func decodeBatchItem(raw json.RawMessage) (jobs.CreateRequest, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return jobs.CreateRequest{}, badRequest(CodeInvalidJSON, "", "each job must be a JSON object")
	}
	if err := onlyFields(fields, batchFields); err != nil {
		return jobs.CreateRequest{}, err
	}
	req, err := decodeJobFields(fields)
	if err != nil {
		return req, err
	}
	if key, ok := fields["idempotencyKey"]; ok && !isNull(key) {
		if err := json.Unmarshal(key, &req.IdempotencyKey); err != nil {
			return req, badRequest(CodeInvalidIdempotencyKey, "idempotencyKey", "idempotencyKey must be a string")
		}
	}
	return req, nil
}

// batchErrors flattens the errors of a refused batch: one entry per field
// of each invalid job, or one for a job whose error names no field. Codes
// go through the same filter as single errors (unlisted: bad_request).
func batchErrors(be *jobs.BatchError) []BatchItemError {
	var out []BatchItemError
	for _, it := range be.Items {
		code := CodeBadRequest
		if c, ok := LookupErrorCode(it.Err.Code); ok && c.Status < http.StatusInternalServerError {
			code = c.Code
		}
		if len(it.Err.Fields) == 0 {
			out = append(out, BatchItemError{Index: it.Index, Code: code, Message: it.Err.Message})
			continue
		}
		for _, f := range it.Err.Fields {
			field := f.Field
			if field == HeaderIdempotencyKey {
				field = "idempotencyKey" // a batch carries it in the job
			}
			out = append(out, BatchItemError{Index: it.Index, Code: code, Field: field, Message: f.Message})
		}
	}
	return out
}
