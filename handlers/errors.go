package handlers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/jobs"
)

// APIError is an error with its HTTP status and the JSON body sent for it.
// Err, when set, is the cause: it is logged, never sent.
type APIError struct {
	Status  int               `json:"-"`
	Code    string            `json:"code"`
	Message string            `json:"message"`
	Fields  []jobs.FieldError `json:"fields,omitempty"`
	// Errors lists the invalid jobs of a refused batch (invalid_batch).
	Errors []BatchItemError `json:"errors,omitempty"`
	Err    error            `json:"-"`
}

// Error returns the code and message, and the cause when there is one.
func (e *APIError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the cause.
func (e *APIError) Unwrap() error { return e.Err }

// ErrorResponse is the body of every error response.
type ErrorResponse struct {
	Error *APIError `json:"error"`
}

func apiError(status int, code, message string) *APIError {
	return &APIError{Status: status, Code: code, Message: message}
}

// badRequest is a 400 validation error naming one field, in the same form
// as the ones jobs.Service returns.
func badRequest(code, field, message string) *jobs.ValidationError {
	ve := &jobs.ValidationError{Code: code, Message: message}
	if field != "" {
		ve.Fields = []jobs.FieldError{{Field: field, Message: message}}
	}
	return ve
}

func errRequestTooLarge(limit int64) *APIError {
	return apiError(http.StatusRequestEntityTooLarge, CodeRequestTooLarge,
		fmt.Sprintf("the request body is over the limit of %d bytes", limit))
}

// toAPIError is the one mapping from errors to responses.
func toAPIError(err error) *APIError {
	var (
		ae  *APIError
		be  *jobs.BatchError
		ve  *jobs.ValidationError
		he  *echo.HTTPError
		mbe *http.MaxBytesError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &be):
		return &APIError{Status: http.StatusBadRequest, Code: CodeInvalidBatch,
			Message: "some jobs of the batch are invalid (errors lists each); nothing was created",
			Errors:  batchErrors(be), Err: err}
	case errors.Is(err, jobs.ErrEmptyBatch):
		return apiError(http.StatusBadRequest, CodeEmptyBatch, "a batch needs at least one job")
	case errors.Is(err, jobs.ErrBatchTooLarge):
		return apiError(http.StatusRequestEntityTooLarge, CodeBatchTooLarge, fmt.Sprintf("a batch holds at most %d jobs", jobs.MaxBatchSize))
	case errors.As(err, &ve):
		// A code jobs.Service or a job type returns is passed through when
		// it is one of ErrorCodes (with its status), else sent as
		// bad_request: the API answers with listed codes only.
		c, ok := LookupErrorCode(ve.Code)
		if !ok || c.Status >= http.StatusInternalServerError {
			c = ErrorCode{Code: CodeBadRequest, Status: http.StatusBadRequest}
		}
		return &APIError{Status: c.Status, Code: c.Code, Message: ve.Message, Fields: ve.Fields, Err: err}
	case errors.Is(err, jobs.ErrNotFound):
		return apiError(http.StatusNotFound, CodeJobNotFound, "job not found")
	case errors.Is(err, jobs.ErrNotCancellable):
		return apiError(http.StatusConflict, CodeJobNotCancellable, "only an unfinished job (pending, scheduled or processing) can be cancelled")
	case errors.Is(err, jobs.ErrNotReschedulable):
		return apiError(http.StatusConflict, CodeJobNotReschedulable, "only a pending or scheduled job can be rescheduled")
	case errors.Is(err, jobs.ErrNotRetryable):
		return apiError(http.StatusConflict, CodeJobNotRetryable, "only a failed or cancelled job can be retried")
	case errors.Is(err, jobs.ErrOperatorCannotCreate):
		return apiError(http.StatusForbidden, CodeOperatorCannotCreate, "an operator cannot create jobs; a job belongs to a user")
	case errors.Is(err, jobs.ErrOperatorOnly):
		return apiError(http.StatusForbidden, CodeOperatorOnly, "only an operator (the ADMIN_TOKEN) may see the flow keys")
	case errors.Is(err, jobs.ErrSecretsUnconfigured):
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeEncryptionUnconfigured,
			Message: "this job type carries secrets and the server has no encryption key configured", Err: err}
	case errors.Is(err, jobs.ErrUnavailable), isConnectionError(err):
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable,
			Message: "a backend is unavailable; try again later", Err: err}
	case errors.As(err, &mbe):
		return errRequestTooLarge(mbe.Limit)
	case errors.As(err, &he):
		return fromHTTPError(he, err)
	default:
		return &APIError{Status: http.StatusInternalServerError, Code: CodeInternalError,
			Message: "internal error", Err: err}
	}
}

// isConnectionError reports whether err is a failure to reach or talk to a
// backend that its caller did not mark with jobs.ErrUnavailable: a network
// error (refused, reset, timed out, DNS) or a closed or exhausted Redis
// connection pool. The HTTP layer makes no outbound calls of its own, so
// such an error always means a backend is down.
func isConnectionError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, redis.ErrPoolExhausted)
}

// fromHTTPError maps the errors Echo itself returns (router and
// middleware). Their messages are never sent.
func fromHTTPError(he *echo.HTTPError, err error) *APIError {
	switch he.Code {
	case http.StatusNotFound:
		return apiError(http.StatusNotFound, CodeNotFound, "no such route")
	case http.StatusMethodNotAllowed:
		return apiError(http.StatusMethodNotAllowed, CodeMethodNotAllowed, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return apiError(http.StatusRequestEntityTooLarge, CodeRequestTooLarge, "the request body is too large")
	}
	if he.Code >= 400 && he.Code < 500 {
		return apiError(http.StatusBadRequest, CodeBadRequest, "bad request")
	}
	return &APIError{Status: http.StatusInternalServerError, Code: CodeInternalError, Message: "internal error", Err: err}
}

// handleError is Echo's HTTPErrorHandler: it writes every error as
// ErrorResponse and logs the cause of 5xx responses.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	ae := toAPIError(err)
	req := c.Request()
	if ae.Status >= http.StatusInternalServerError {
		level := slog.LevelError
		if req.Context().Err() != nil && errors.Is(err, context.Canceled) {
			level = slog.LevelInfo // the client went away
		}
		s.log.Log(req.Context(), level, "request failed",
			"status", ae.Status,
			"code", ae.Code,
			"err", err,
			"method", req.Method,
			"path", req.URL.Path,
			"request_id", c.Response().Header().Get(echo.HeaderXRequestID),
		)
	}
	h := c.Response().Header()
	switch ae.Status {
	case http.StatusUnauthorized:
		h.Set(echo.HeaderWWWAuthenticate, "Bearer")
	case http.StatusMethodNotAllowed:
		h.Set(echo.HeaderAllow, allowWithoutOptions(h.Get(echo.HeaderAllow)))
	}
	var werr error
	if req.Method == http.MethodHead {
		h.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
		werr = c.NoContent(ae.Status)
	} else {
		werr = c.JSON(ae.Status, ErrorResponse{Error: ae})
	}
	if werr != nil {
		s.log.Debug("write error response", "err", werr)
	}
}

// allowWithoutOptions drops OPTIONS from the Allow header Echo's router
// computes: the API answers OPTIONS with 405 (see rejectOptions).
func allowWithoutOptions(allow string) string {
	var kept []string
	for _, m := range strings.Split(allow, ",") {
		if m = strings.TrimSpace(m); m != "" && m != http.MethodOptions {
			kept = append(kept, m)
		}
	}
	return strings.Join(kept, ", ")
}

// tokenError maps a TokenVerifier error to a 401, or to 503 when the
// verifier could not check the token at all.
func tokenError(err error) *APIError {
	unauthorized := func(code, msg string) *APIError {
		return &APIError{Status: http.StatusUnauthorized, Code: code, Message: msg, Err: err}
	}
	switch {
	case errors.Is(err, auth.ErrExpired):
		return unauthorized(CodeTokenExpired, "the token has expired")
	case errors.Is(err, auth.ErrMalformed):
		return unauthorized(CodeInvalidToken, "the token is malformed")
	case errors.Is(err, auth.ErrBadSignature):
		return unauthorized(CodeInvalidToken, "the token's signature is invalid")
	case errors.Is(err, auth.ErrNotYetValid):
		return unauthorized(CodeInvalidToken, "the token is not valid yet")
	case errors.Is(err, auth.ErrMissingSubject):
		return unauthorized(CodeInvalidToken, "the token has no subject")
	case errors.Is(err, auth.ErrRejected):
		return unauthorized(CodeInvalidToken, "the token is invalid")
	default:
		return &APIError{Status: http.StatusServiceUnavailable, Code: CodeServiceUnavailable,
			Message: "the token could not be checked; try again later", Err: err}
	}
}
