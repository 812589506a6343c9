package handlers

import "net/http"

// The error codes of the API, one constant each. ErrorCodes gives each its
// status and when it is sent.
const (
	CodeInvalidJSON                 = "invalid_json"
	CodeUnknownField                = "unknown_field"
	CodeInvalidType                 = "invalid_type"
	CodeUnknownJobType              = "unknown_job_type"
	CodeInvalidPayload              = "invalid_payload"
	CodeInvalidPriority             = "invalid_priority"
	CodeInvalidMaxAttempts          = "invalid_max_attempts"
	CodeInvalidScheduledFor         = "invalid_scheduled_for"
	CodeInvalidExpiresAt            = "invalid_expires_at"
	CodeInvalidIdempotencyKey       = "invalid_idempotency_key"
	CodeInvalidBatch                = "invalid_batch"
	CodeEmptyBatch                  = "empty_batch"
	CodeBatchTooLarge               = "batch_too_large"
	CodeInvalidJobID                = "invalid_job_id"
	CodeInvalidStatus               = "invalid_status"
	CodeInvalidCursor               = "invalid_cursor"
	CodeInvalidLimit                = "invalid_limit"
	CodeInvalidParent               = "invalid_parent"
	CodeInvalidTimeRange            = "invalid_time_range"
	CodeInvalidFilter               = "invalid_filter"
	CodeInvalidSince                = "invalid_since"
	CodeInvalidBudget               = "invalid_budget"
	CodeInvalidQuery                = "invalid_query"
	CodeBadRequest                  = "bad_request"
	CodeMissingToken                = "missing_token"
	CodeInvalidToken                = "invalid_token"
	CodeTokenExpired                = "token_expired"
	CodeMissingWorkerAuth           = "missing_worker_auth"
	CodeInvalidWorkerAuth           = "invalid_worker_auth"
	CodeInvalidSignature            = "invalid_signature"
	CodeOperatorCannotCreate        = "operator_cannot_create"
	CodeOperatorOnly                = "operator_only"
	CodeInsufficientScope           = "insufficient_scope"
	CodeUserRequired                = "user_required"
	CodeInvalidUser                 = "invalid_user"
	CodeInvalidAPIKey               = "invalid_api_key"
	CodeAPIKeyNotFound              = "api_key_not_found"
	CodeInvalidFlowKey              = "invalid_flow_key"
	CodeNotFound                    = "not_found"
	CodeJobNotFound                 = "job_not_found"
	CodeMethodNotAllowed            = "method_not_allowed"
	CodeJobNotCancellable           = "job_not_cancellable"
	CodeJobNotReschedulable         = "job_not_reschedulable"
	CodeJobNotRetryable             = "job_not_retryable"
	CodePayloadTooLarge             = "payload_too_large"
	CodeRequestTooLarge             = "request_too_large"
	CodeExpectationFailed           = "expectation_failed"
	CodeRateLimited                 = "rate_limited"
	CodeTooManyAuthFailures         = "too_many_auth_failures"
	CodeRequestHeadersTooLarge      = "request_headers_too_large"
	CodeInternalError               = "internal_error"
	CodeUnsupportedTransferEncoding = "unsupported_transfer_encoding"
	CodeServiceUnavailable          = "service_unavailable"
	CodeBackendUnavailable          = "backend_unavailable"
	CodeEncryptionUnconfigured      = "encryption_unconfigured"
	CodeNotReady                    = "not_ready"
	CodeHTTPVersionNotSupported     = "http_version_not_supported"
)

// ErrorCode is one code of the API: the HTTP status it is always sent
// with, and when.
type ErrorCode struct {
	Code   string
	Status int
	When   string
}

// ErrorCodes is the one list of the codes the API answers with, by status.
// The README's error table lists the same codes with the same statuses,
// and nothing else answers with a code missing here: tests check both.
// A *jobs.ValidationError whose code is not listed is sent as bad_request.
var ErrorCodes = []ErrorCode{
	{CodeInvalidJSON, http.StatusBadRequest, "the body is not a JSON object (empty, malformed, not UTF-8, trailing data)"},
	{CodeUnknownField, http.StatusBadRequest, "the body has a top-level field other than type, payload, priority, maxAttempts, scheduledFor, expiresAt"},
	{CodeInvalidType, http.StatusBadRequest, "type missing or not a string; ?type= not printable text"},
	{CodeUnknownJobType, http.StatusBadRequest, "no handler is registered for type"},
	{CodeInvalidPayload, http.StatusBadRequest, "payload not a JSON object, refused by the job type (fields says which field), or not storable: \\u0000, a lone surrogate, a number out of float64's range or written with an exponent beyond ±9999"},
	{CodeInvalidPriority, http.StatusBadRequest, "priority not an integer literal, or outside 0–999999"},
	{CodeInvalidMaxAttempts, http.StatusBadRequest, "maxAttempts not an integer literal, or outside 1–25"},
	{CodeInvalidScheduledFor, http.StatusBadRequest, "scheduledFor not an RFC 3339 string, or outside the years 1970–9999"},
	{CodeInvalidExpiresAt, http.StatusBadRequest, "expiresAt not an RFC 3339 string, outside the years 1970–9999, not in the future, or not after scheduledFor"},
	{CodeInvalidIdempotencyKey, http.StatusBadRequest, "Idempotency-Key longer than 255 bytes, not UTF-8, or holding a control character"},
	{CodeInvalidBatch, http.StatusBadRequest, "POST /api/jobs/batch: jobs is not a list, or jobs of it are invalid; errors lists each by index with the code POST /api/jobs would send, and nothing is stored"},
	{CodeEmptyBatch, http.StatusBadRequest, "POST /api/jobs/batch without jobs, or with an empty list"},
	{CodeInvalidJobID, http.StatusBadRequest, ":id is not a positive 64-bit integer"},
	{CodeInvalidStatus, http.StatusBadRequest, "?status= is not a job status"},
	{CodeInvalidCursor, http.StatusBadRequest, "?cursor= is not one this server returned"},
	{CodeInvalidLimit, http.StatusBadRequest, "?limit= not an integer from 1 to 100"},
	{CodeInvalidParent, http.StatusBadRequest, "?parent= is not a positive job id"},
	{CodeInvalidTimeRange, http.StatusBadRequest, "?createdFrom= or ?createdTo= is not an RFC 3339 time, or createdTo is not later than createdFrom"},
	{CodeInvalidFilter, http.StatusBadRequest, "?user= or ?error= is not printable text, or ?error= is over 200 bytes"},
	{CodeInvalidSince, http.StatusBadRequest, "GET /api/jobs/stats: ?since= is not a Go duration from 1m to 720h"},
	{CodeInvalidFlowKey, http.StatusBadRequest, "/api/flow-keys/:key (get, pause, resume) with a key that is empty, over 200 bytes, or holds a space or a control character"},
	{CodeInvalidBudget, http.StatusBadRequest, "?budget= on /api/workers is not a positive Go duration"},
	{CodeInvalidQuery, http.StatusBadRequest, "the query string does not parse (a bad %-escape, ';' between parameters)"},
	{CodeBadRequest, http.StatusBadRequest, "the request is not valid HTTP (a bad %-escape in the path, a control character in a header, no Host, a bad Content-Length), or its body could not be read"},
	{CodeMissingToken, http.StatusUnauthorized, "no Authorization header on /api/jobs*"},
	{CodeInvalidToken, http.StatusUnauthorized, `not "Bearer <token>", malformed, bad signature, not yet valid, no sub; an API key that is unknown or revoked`},
	{CodeTokenExpired, http.StatusUnauthorized, "the token's exp has passed"},
	{CodeMissingWorkerAuth, http.StatusUnauthorized, "/api/workers without any credential; nothing is dequeued"},
	{CodeInvalidWorkerAuth, http.StatusUnauthorized, "/api/workers with a wrong credential; nothing is dequeued"},
	{CodeInvalidSignature, http.StatusUnauthorized, "/api/workers with an Upstash-Signature that does not verify (key, issuer, URL, expiry or body)"},
	{CodeOperatorCannotCreate, http.StatusForbidden, "POST /api/jobs with the ADMIN_TOKEN: a job belongs to a user"},
	{CodeOperatorOnly, http.StatusForbidden, "/api/flow-keys… or /api/job-types… with a user's token: only the ADMIN_TOKEN sees, pauses and resumes flow keys and job types; ?user= naming another user; /api/keys… with anything but the ADMIN_TOKEN"},
	{CodeUserRequired, http.StatusBadRequest, "a service key's request without X-Jobhook-User, the user it acts for"},
	{CodeInvalidUser, http.StatusBadRequest, "X-Jobhook-User over 255 bytes, not printable, or with surrounding spaces"},
	{CodeInvalidAPIKey, http.StatusBadRequest, "POST /api/keys: a name that is empty, over 100 bytes or not printable, no scopes or an unknown one; POST /api/keys/:id/revoke: an id that is not a positive integer"},
	{CodeInsufficientScope, http.StatusForbidden, "a service key without the scope the method needs: jobs:read for GET and HEAD, jobs:write otherwise"},
	{CodeAPIKeyNotFound, http.StatusNotFound, "POST /api/keys/:id/revoke: no key has that id"},
	{CodeNotFound, http.StatusNotFound, "no such route, or no such image"},
	{CodeJobNotFound, http.StatusNotFound, "no such job, or another user's"},
	{CodeMethodNotAllowed, http.StatusMethodNotAllowed, "the route exists for other methods (see the Allow header); OPTIONS included"},
	{CodeJobNotCancellable, http.StatusConflict, "the job has finished: completed, failed or already cancelled"},
	{CodeJobNotReschedulable, http.StatusConflict, "the job is neither pending nor scheduled"},
	{CodeJobNotRetryable, http.StatusConflict, "the job is neither failed nor cancelled"},
	{CodePayloadTooLarge, http.StatusRequestEntityTooLarge, "payload over MAX_PAYLOAD_BYTES as sent, or as stored with its numbers written out in full (1e308 is 309 digits)"},
	{CodeBatchTooLarge, http.StatusRequestEntityTooLarge, "POST /api/jobs/batch with more than 1000 jobs"},
	{CodeRequestTooLarge, http.StatusRequestEntityTooLarge, "request body over BODY_LIMIT_BYTES (BATCH_BODY_LIMIT_BYTES for POST /api/jobs/batch)"},
	{CodeExpectationFailed, http.StatusExpectationFailed, `an Expect header other than "100-continue"`},
	{CodeRateLimited, http.StatusTooManyRequests, "over the per-user creation rate (Retry-After says when to retry)"},
	{CodeTooManyAuthFailures, http.StatusTooManyRequests, "a failing /api/workers call from an address over the failure limit (Retry-After); a valid credential is still let in"},
	{CodeRequestHeadersTooLarge, http.StatusRequestHeaderFieldsTooLarge, "the request's headers are over the server's limit"},
	{CodeInternalError, http.StatusInternalServerError, "anything unexpected, panics included; details are only logged"},
	{CodeUnsupportedTransferEncoding, http.StatusNotImplemented, "a Transfer-Encoding other than chunked"},
	{CodeServiceUnavailable, http.StatusServiceUnavailable, "the database, Redis or the token verifier cannot be reached; retry later"},
	{CodeBackendUnavailable, http.StatusServiceUnavailable, "POST /api/workers: the database or Redis failed or did not answer in time during the drain; the body carries the drain summary beside the error (outcomes not written stay processing and the reaper recovers them); retry later"},
	{CodeEncryptionUnconfigured, http.StatusServiceUnavailable, "the job type carries secret fields and the server has no JOBS_ENCRYPTION_KEY: a configuration gap, retrying does not help until an operator sets the key"},
	{CodeNotReady, http.StatusServiceUnavailable, "/readyz: a dependency check failed"},
	{CodeHTTPVersionNotSupported, http.StatusHTTPVersionNotSupported, "an HTTP version other than 1.x (or 2 over TLS)"},
}

// errorCodes indexes ErrorCodes by code.
var errorCodes = func() map[string]ErrorCode {
	m := make(map[string]ErrorCode, len(ErrorCodes))
	for _, c := range ErrorCodes {
		m[c.Code] = c
	}
	return m
}()

// LookupErrorCode returns the entry of ErrorCodes for code.
func LookupErrorCode(code string) (ErrorCode, bool) {
	c, ok := errorCodes[code]
	return c, ok
}
