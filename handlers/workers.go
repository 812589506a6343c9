package handlers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/jobhook/jobhook/jobs"
)

// ErrNoCredentials is what a WorkerAuthFunc returns when the request
// carries no credential of its kind, so the next one is tried.
var ErrNoCredentials = errors.New("no credentials of this kind")

// WorkerAuthFunc checks one kind of credential on a call to POST
// /api/workers, such as a bearer secret or a QStash signature. It gets the
// request and its whole body (already read, at most Config.BodyLimit
// bytes), and returns:
//
//   - nil when the request carries a valid credential of its kind;
//   - ErrNoCredentials when it carries none of its kind;
//   - any other error when the credential is wrong, preferably an
//     *APIError with status 401 (anything else is sent as 401
//     invalid_worker_auth, its text only logged).
type WorkerAuthFunc func(r *http.Request, body []byte) error

// BearerWorkerAuth accepts "Authorization: Bearer <secret>". The
// comparison takes the same time whatever the token, its length included:
// both sides are hashed before a constant-time compare.
func BearerWorkerAuth(secret string) WorkerAuthFunc {
	want := sha256.Sum256([]byte(secret))
	return func(r *http.Request, _ []byte) error {
		header := r.Header.Get(echo.HeaderAuthorization)
		if header == "" {
			return ErrNoCredentials
		}
		token, ok := bearerToken(header)
		if !ok {
			return apiError(http.StatusUnauthorized, CodeInvalidWorkerAuth, `the Authorization header must be "Bearer <worker secret>"`)
		}
		got := sha256.Sum256([]byte(token))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return apiError(http.StatusUnauthorized, CodeInvalidWorkerAuth, "the worker secret is wrong")
		}
		return nil
	}
}

// authenticateWorker runs the WorkerAuthFuncs in order: the first to
// accept lets the call in. Otherwise the first refusal is returned, or
// missing_worker_auth when no credential was found at all.
func (s *server) authenticateWorker(r *http.Request, body []byte) error {
	var refusal error
	for _, check := range s.workerAuth {
		err := check(r, body)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrNoCredentials):
		case refusal == nil:
			refusal = err
		}
	}
	if refusal == nil {
		return apiError(http.StatusUnauthorized, CodeMissingWorkerAuth, "worker credentials are required")
	}
	var ae *APIError
	if errors.As(refusal, &ae) && ae.Status == http.StatusUnauthorized {
		return ae
	}
	return &APIError{Status: http.StatusUnauthorized, Code: CodeInvalidWorkerAuth, Message: "the worker credentials are invalid", Err: refusal}
}

// runWorker serves POST /api/workers: after authentication, one drain of
// at most the configured budget (?budget= can shorten it, as a Go
// duration such as 10s), answered with the drain summary. The body is read
// for the authenticators and otherwise ignored.
//
// The drain runs on a context that the client hanging up does not cancel,
// so jobs already started are not aborted halfway; the budget bounds it,
// and the answer comes within the budget plus 5 s whatever the backends
// do: when the database or Redis failed or hung, 503 backend_unavailable
// with the summary of what the drain did.
func (s *server) runWorker(c echo.Context) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if err := s.authenticateWorker(c.Request(), body); err != nil {
		return s.workerAuthFailed(c, err)
	}
	budget := s.cfg.DrainBudget
	if raw := c.QueryParam("budget"); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil || d <= 0 {
			return badRequest(CodeInvalidBudget, "budget", "budget must be a positive duration such as 10s")
		}
		budget = min(budget, d)
	}
	ctx := context.WithoutCancel(c.Request().Context())
	resp := WorkerResponse{}
	if id, ok := deliveredJobID(body); ok {
		// The delivery comes out of the budget: the answer's bound holds.
		begun := time.Now()
		dctx, cancel := context.WithTimeout(ctx, min(s.cfg.RequestTimeout, budget))
		started, err := s.cfg.Service.Deliver(dctx, id)
		cancel()
		if err != nil {
			return s.drainFailed(c, resp, err)
		}
		resp.Delivered = &DeliveryResult{JobID: id, Started: started}
		budget = max(budget-time.Since(begun), time.Millisecond)
	}
	summary, err := s.cfg.Worker.Drain(ctx, budget)
	resp.DrainSummary = summary
	if err != nil {
		return s.drainFailed(c, resp, err)
	}
	return c.JSON(http.StatusOK, resp)
}

// WorkerErrorResponse is the answer of a POST /api/workers whose drain a
// backend cut short (503 backend_unavailable): the error, and beside it
// the summary of what the drain did.
type WorkerErrorResponse struct {
	Error *APIError `json:"error"`
	WorkerResponse
}

// drainFailed answers a drain (or a delivery) that ended on err: a backend
// that failed or hung is 503 backend_unavailable with the summary so far;
// anything else is answered as any error.
func (s *server) drainFailed(c echo.Context, resp WorkerResponse, err error) error {
	if ae := toAPIError(err); ae.Status != http.StatusServiceUnavailable || ae.Code != CodeServiceUnavailable {
		return err
	}
	req := c.Request()
	s.log.WarnContext(req.Context(), "drain cut short by a backend", "err", err, "claimed", resp.Claimed, "unrecorded", resp.Unrecorded,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID), "path", req.URL.Path)
	ae := &APIError{Status: http.StatusServiceUnavailable, Code: CodeBackendUnavailable,
		Message: "the database or Redis failed or did not answer in time; the summary says what the drain did; try again later", Err: err}
	return c.JSON(http.StatusServiceUnavailable, WorkerErrorResponse{Error: ae, WorkerResponse: resp})
}

// workerAuthFailed answers a worker-authenticated call whose credentials
// were refused, and counts the failure against the client's address. A
// client over the failure limit gets 429 too_many_auth_failures instead of
// the 401, until its window ends.
//
// The limit applies to failures only: the credentials are checked first,
// and a valid one is always let in, so a flood of wrong guesses from an
// address (or from everyone behind one proxy) cannot lock QStash or the
// operator out. Checking first costs one constant-time compare or one
// HMAC, cheaper than the limiter's round trip to Redis. It does tell a
// blocked caller whether a guess was right, but guessing is hopeless: the
// worker secret is at least 32 bytes in production and QStash's signing
// keys are random, and nothing about a wrong credential (timing included)
// says how close it was.
func (s *server) workerAuthFailed(c echo.Context, refusal error) error {
	l := s.cfg.WorkerAuthLimit
	if l == nil {
		return refusal
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), s.cfg.RequestTimeout)
	defer cancel()
	client := c.RealIP()
	blocked, wait, err := l.Blocked(ctx, client)
	if err != nil {
		s.log.Warn("worker auth limiter unavailable; failure not counted", "err", err)
		return refusal
	}
	if blocked {
		return retryLater(c, CodeTooManyAuthFailures, "too many failed worker authentications from this address", wait)
	}
	if err := l.Fail(ctx, client); err != nil {
		s.log.Warn("worker auth failure not counted", "err", err)
	}
	return refusal
}

// WorkerResponse is the answer of POST /api/workers: the drain summary,
// and for a scheduled job's delivery what became of it.
type WorkerResponse struct {
	jobs.DrainSummary
	Delivered *DeliveryResult `json:"delivered,omitempty"`
}

// DeliveryResult says whether a delivered scheduled job was started; false
// when it was cancelled, already running or finished, or moved to a later
// time.
type DeliveryResult struct {
	JobID   int64 `json:"jobId"`
	Started bool  `json:"started"`
}

// deliveredJobID reads {"jobId":N} from a worker call's body. Any other
// body (a schedule's or trigger's, or none) is not a delivery.
func deliveredJobID(body []byte) (int64, bool) {
	var d struct {
		JobID int64 `json:"jobId"`
	}
	if len(body) == 0 || json.Unmarshal(body, &d) != nil || d.JobID <= 0 {
		return 0, false
	}
	return d.JobID, true
}
