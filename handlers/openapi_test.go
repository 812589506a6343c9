package handlers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
)

const testAdminToken = "handlers-test-admin-token"

// imageName is the pattern of the test's image names.
var imageName = regexp.MustCompile(`^[a-f0-9]{32}\.(png|jpg|webp|gif)$`)

// withImages serves dir at /files/images/:name.
func withImages(dir string) setupOption {
	return func(cfg *handlers.Config) {
		cfg.Images = &handlers.ImageFiles{Dir: dir, Name: imageName}
	}
}

// withAdmin sets the operator's token.
func withAdmin(cfg *handlers.Config) { cfg.AdminToken = testAdminToken }

// withStandInMetrics serves a stand-in for the Prometheus handler at
// /metrics.
func withStandInMetrics(cfg *handlers.Config) {
	cfg.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte("jobhook_up 1\n"))
	})
}

// loadSpec fetches GET /openapi.json from the app, requires it to be the
// committed handlers/openapi.json byte for byte, and loads and validates
// it with kin-openapi.
func loadSpec(t testing.TB, bb *bundle) *openapi3.T {
	t.Helper()
	rec := bb.do(t, request{method: http.MethodGet, path: "/openapi.json"})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, echo.MIMEApplicationJSON, rec.Header().Get(echo.HeaderContentType))
	committed, err := os.ReadFile("openapi.json")
	require.NoError(t, err)
	require.Equal(t, string(committed), rec.Body.String(), "GET /openapi.json is not the committed handlers/openapi.json")

	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(rec.Body.Bytes())
	require.NoError(t, err, "kin-openapi cannot load the spec")
	require.NoError(t, doc.Validate(loader.Context), "the spec is not valid OpenAPI")
	return doc
}

// TestOpenAPISpecIsValid: the served spec is the committed file, OpenAPI
// 3.1, and valid by kin-openapi's checks (JSON Schema 2020-12 schemas
// included).
func TestOpenAPISpecIsValid(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	doc := loadSpec(t, bb)
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.True(t, doc.IsOpenAPI31OrLater())

	// The validator does catch a broken spec: a response without a
	// description, an operation id used twice.
	broken := *doc
	broken.Paths = openapi3.NewPaths()
	for path, item := range doc.Paths.Map() {
		broken.Paths.Set(path, item)
	}
	dup := *doc.Paths.Value("/healthz").Get
	dup.OperationID = "getReadyz"
	item := *doc.Paths.Value("/healthz")
	item.Get = &dup
	broken.Paths.Set("/healthz", &item)
	require.Error(t, broken.Validate(context.Background()))

	rec := bb.do(t, request{method: http.MethodHead, path: "/openapi.json"})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, echo.MIMEApplicationJSON, rec.Header().Get(echo.HeaderContentType))
}

// echoParam is an Echo path parameter, :name.
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// specOperations lists the spec's operations as "METHOD /path", OPTIONS
// left out, sorted.
func specOperations(doc *openapi3.T) []string {
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			if method != http.MethodOptions {
				ops = append(ops, method+" "+path)
			}
		}
	}
	slices.Sort(ops)
	return ops
}

// appRoutes lists the routes registered on the Echo app as "METHOD
// /path", with :param written {param}, sorted.
func appRoutes(e *echo.Echo) []string {
	var routes []string
	for _, r := range e.Routes() {
		// The operator dashboard (internal/dashboard, mounted by
		// internal/app) is HTML pages and form posts, not the JSON API
		// this spec describes for clients: left out on purpose.
		if r.Path == "/dashboard" || strings.HasPrefix(r.Path, "/dashboard/") {
			continue
		}
		routes = append(routes, r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}"))
	}
	slices.Sort(routes)
	return routes
}

// TestOpenAPIDescribesEveryRoute: the spec's operations are exactly the
// routes of the app (every optional route switched on), method and path;
// every path documents OPTIONS as the 405 it is; a HEAD operation answers
// the statuses of its GET.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	bb := setup(t, testenv.Embedded(t), withImages(t.TempDir()), withAdmin, withStandInMetrics)
	doc := loadSpec(t, bb)
	require.Equal(t, appRoutes(bb.app), specOperations(doc), "the routes of handlers.New (-) and the operations of openapi.json (+) differ")

	for path, item := range doc.Paths.Map() {
		require.NotNil(t, item.Options, "%s: OPTIONS is answered with 405; document it", path)
		require.Equal(t, []string{"405"}, slices.Sorted(func(yield func(string) bool) {
			for k := range item.Options.Responses.Map() {
				if !yield(k) {
					return
				}
			}
		}), "%s: OPTIONS only ever answers 405", path)
		rec := bb.do(t, request{method: http.MethodOptions, path: strings.NewReplacer("{id}", "1", "{key}", "ig:1", "{name}", "x.png").Replace(path)})
		requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
		if item.Head != nil {
			require.NotNil(t, item.Get, "%s: HEAD without GET", path)
			require.Equal(t, statuses(item.Get), statuses(item.Head), "%s: HEAD answers what GET answers", path)
		}
	}

	// The comparison does fail on a difference.
	bb.app.GET("/api/undocumented", func(c echo.Context) error { return nil })
	require.NotEqual(t, appRoutes(bb.app), specOperations(doc))
}

// statuses are the response statuses an operation documents, sorted.
func statuses(op *openapi3.Operation) []string {
	var out []string
	for k := range op.Responses.Map() {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// documentedCodes returns the error codes a response's JSON schema
// allows: the enum (or const) of its own properties.error.properties.code,
// which narrows the shared Error schema's ErrorCode to the codes sent
// with that response.
func documentedCodes(resp *openapi3.Response) ([]string, error) {
	mt := resp.Content.Get(echo.MIMEApplicationJSON)
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return nil, errors.New("no application/json schema")
	}
	e := mt.Schema.Value.Properties["error"]
	if e == nil || e.Value == nil || e.Value.Properties["code"] == nil || e.Value.Properties["code"].Value == nil {
		return nil, errors.New("the schema does not narrow error.code to the codes sent")
	}
	code := e.Value.Properties["code"].Value
	var out []string
	for _, v := range code.Enum {
		out = append(out, fmt.Sprint(v))
	}
	if code.Const != nil {
		out = append(out, fmt.Sprint(code.Const))
	}
	return out, nil
}

// TestOpenAPIErrorCodes: the ErrorCode enum is handlers.ErrorCodes; every
// error response of every operation names the codes it is sent with, and
// for each status the codes documented with it are exactly the
// ErrorCodes of that status, so no code or status is missing on either
// side. No operation has a default response: every status is listed.
func TestOpenAPIErrorCodes(t *testing.T) {
	doc := loadSpec(t, setup(t, testenv.Embedded(t)))

	var want []string
	byStatus := map[int][]string{}
	for _, c := range handlers.ErrorCodes {
		want = append(want, c.Code)
		byStatus[c.Status] = append(byStatus[c.Status], c.Code)
	}
	var enum []string
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		enum = append(enum, fmt.Sprint(v))
	}
	slices.Sort(want)
	slices.Sort(enum)
	require.Equal(t, want, enum, "ErrorCode's enum and handlers.ErrorCodes differ")

	documented := map[int][]string{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			require.Nil(t, op.Responses.Default(), "%s %s: list each status, no default", method, path)
			for key, ref := range op.Responses.Map() {
				status, err := strconv.Atoi(key)
				require.NoError(t, err, "%s %s: status %q", method, path, key)
				if status < 400 || method == http.MethodHead {
					continue
				}
				codes, err := documentedCodes(ref.Value)
				require.NoError(t, err, "%s %s %d", method, path, status)
				require.NotEmpty(t, codes, "%s %s %d", method, path, status)
				for _, c := range codes {
					if !slices.Contains(documented[status], c) {
						documented[status] = append(documented[status], c)
					}
				}
			}
		}
	}
	for status := range byStatus {
		slices.Sort(byStatus[status])
		slices.Sort(documented[status])
	}
	require.Equal(t, byStatus, documented, "by status: the codes of handlers.ErrorCodes (-) and those the spec's responses document (+) differ")
}

// specRequest is one request of the replay, and the status it must get.
type specRequest struct {
	name    string
	method  string
	path    string
	body    string
	auth    string
	headers map[string]string
	status  int
	// invalid marks a request that breaks the spec on purpose (to get an
	// error), so only its response is checked.
	invalid bool
}

// specChecker replays requests against an app and validates each
// request and response against the spec with openapi3filter.
type specChecker struct {
	bb     *bundle
	router routers.Router
}

func newSpecChecker(t testing.TB, bb *bundle) *specChecker {
	t.Helper()
	router, err := legacy.NewRouter(loadSpec(t, bb))
	require.NoError(t, err)
	return &specChecker{bb: bb, router: router}
}

func (sc *specChecker) newRequest(r specRequest) *http.Request {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.path, body)
	if r.body != "" {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	if r.auth != "" {
		req.Header.Set(echo.HeaderAuthorization, r.auth)
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	return req
}

// check sends r and requires its status, then validates the request
// (unless marked invalid) and the response against the spec: the status
// must be documented for the operation, and the body and headers must
// match what is documented for that status.
func (sc *specChecker) check(t *testing.T, r specRequest) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	sc.bb.app.ServeHTTP(rec, sc.newRequest(r))
	require.Equal(t, r.status, rec.Code, "%s: %s", r.name, rec.Body.String())

	req := sc.newRequest(r)
	route, params, err := sc.router.FindRoute(req)
	require.NoError(t, err, "%s: %s %s is not in the spec", r.name, r.method, r.path)
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
	ctx := context.Background()
	if !r.invalid {
		require.NoError(t, openapi3filter.ValidateRequest(ctx, in), "%s: the request does not match the spec", r.name)
	}
	key := strconv.Itoa(rec.Code)
	require.NotNil(t, route.Operation.Responses.Value(key), "%s: %s %s does not document status %d", r.name, r.method, route.Path, rec.Code)
	respOpts := *opts
	if ct := rec.Header().Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		respOpts.ExcludeResponseBody = true // HTML and images: the content type is what the spec says
		require.NotNil(t, route.Operation.Responses.Value(key).Value.Content.Get(ct), "%s: content type %q", r.name, ct)
	}
	err = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in,
		Status:                 rec.Code,
		Header:                 rec.Header(),
		Body:                   io.NopCloser(bytes.NewReader(rec.Body.Bytes())),
		Options:                &respOpts,
	})
	require.NoError(t, err, "%s: the response does not match the spec: %s", r.name, rec.Body.String())
	return rec
}

// TestOpenAPIResponsesMatch replays real requests, successes and errors
// on every route, and validates each request and response against the
// spec with kin-openapi's openapi3filter.
func TestOpenAPIResponsesMatch(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		dir := t.TempDir()
		img := strings.Repeat("ab", 16) + ".png"
		require.NoError(t, os.WriteFile(filepath.Join(dir, img), []byte("\x89PNG\r\n\x1a\n"), 0o600))
		sc := newSpecChecker(t, setup(t, b, withImages(dir), withAdmin))
		user := "Bearer " + token(t, "u1")
		admin := "Bearer " + testAdminToken
		worker := "Bearer " + testWorkerSecret
		future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)

		for _, r := range []specRequest{
			{name: "home", method: http.MethodGet, path: "/", status: http.StatusOK},
			{name: "healthz", method: http.MethodGet, path: "/healthz", status: http.StatusOK},
			{name: "readyz", method: http.MethodGet, path: "/readyz", status: http.StatusOK},
			{name: "openapi", method: http.MethodGet, path: "/openapi.json", status: http.StatusOK},
			{name: "create", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"echo","payload":{"text":"hi"},"priority":5,"maxAttempts":2}`, status: http.StatusCreated},
			{name: "create scheduled", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"noop","scheduledFor":"` + future + `"}`, headers: map[string]string{"Idempotency-Key": "k1"}, status: http.StatusCreated},
			{name: "create replayed", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"noop","scheduledFor":"` + future + `"}`, headers: map[string]string{"Idempotency-Key": "k1"}, status: http.StatusOK},
			{name: "create bad priority", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"echo","payload":{"text":"hi"},"priority":1e3}`, status: http.StatusBadRequest, invalid: true},
			{name: "create bad payload", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"echo","payload":{}}`, status: http.StatusBadRequest},
			{name: "create as operator", method: http.MethodPost, path: "/api/jobs", auth: admin, body: `{"type":"noop"}`, status: http.StatusForbidden},
			{name: "create without token", method: http.MethodPost, path: "/api/jobs", body: `{"type":"noop"}`, status: http.StatusUnauthorized, invalid: true},
			{name: "create with a bad token", method: http.MethodPost, path: "/api/jobs", auth: "Bearer nope", body: `{"type":"noop"}`, status: http.StatusUnauthorized},
			{name: "create too large", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"noop","payload":{"x":"` + strings.Repeat("a", handlers.DefaultBodyLimit) + `"}}`, status: http.StatusRequestEntityTooLarge},
			{name: "batch", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[{"type":"noop","idempotencyKey":"b1"},{"type":"echo","payload":{"text":"x"}}]}`, status: http.StatusCreated},
			{name: "batch replayed", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[{"type":"noop","idempotencyKey":"b1"}]}`, status: http.StatusOK},
			{name: "batch invalid", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[{"type":"noop"},{"type":"echo","priority":-1}]}`, status: http.StatusBadRequest, invalid: true},
			{name: "batch as operator", method: http.MethodPost, path: "/api/jobs/batch", auth: admin, body: `{"jobs":[{"type":"noop"}]}`, status: http.StatusForbidden},
			{name: "batch too large", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[` + strings.TrimSuffix(strings.Repeat(`{"type":"noop"},`, 1001), ",") + `]}`, status: http.StatusRequestEntityTooLarge, invalid: true},
			{name: "batch empty", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[]}`, status: http.StatusBadRequest, invalid: true},
			{name: "list", method: http.MethodGet, path: "/api/jobs?status=pending&type=echo&limit=10", auth: user, status: http.StatusOK},
			{name: "list as operator", method: http.MethodGet, path: "/api/jobs?limit=1", auth: admin, status: http.StatusOK},
			{name: "list bad limit", method: http.MethodGet, path: "/api/jobs?limit=0", auth: user, status: http.StatusBadRequest, invalid: true},
			{name: "list bad query", method: http.MethodGet, path: "/api/jobs?status=%zz", auth: user, status: http.StatusBadRequest, invalid: true},
			{name: "list expired token", method: http.MethodGet, path: "/api/jobs", auth: "Bearer " + expiredToken(t, "u1"), status: http.StatusUnauthorized},
			{name: "get", method: http.MethodGet, path: "/api/jobs/1", auth: user, status: http.StatusOK},
			{name: "get missing", method: http.MethodGet, path: "/api/jobs/999999", auth: user, status: http.StatusNotFound},
			{name: "get bad id", method: http.MethodGet, path: "/api/jobs/abc", auth: user, status: http.StatusBadRequest, invalid: true},
			{name: "reschedule", method: http.MethodPost, path: "/api/jobs/2/reschedule", auth: user, body: `{"scheduledFor":"` + future + `"}`, status: http.StatusOK},
			{name: "reschedule without time", method: http.MethodPost, path: "/api/jobs/2/reschedule", auth: user, body: `{}`, status: http.StatusBadRequest, invalid: true},
			{name: "cancel", method: http.MethodPost, path: "/api/jobs/2/cancel", auth: user, status: http.StatusOK},
			{name: "cancel again", method: http.MethodPost, path: "/api/jobs/2/cancel", auth: user, status: http.StatusConflict},
			{name: "reschedule cancelled", method: http.MethodPost, path: "/api/jobs/2/reschedule", auth: user, body: `{"scheduledFor":"` + future + `"}`, status: http.StatusConflict},
			{name: "retry", method: http.MethodPost, path: "/api/jobs/2/retry", auth: user, status: http.StatusOK},
			{name: "retry pending", method: http.MethodPost, path: "/api/jobs/2/retry", auth: user, status: http.StatusConflict},
			{name: "options", method: http.MethodOptions, path: "/api/jobs", status: http.StatusMethodNotAllowed},
			{name: "flow keys", method: http.MethodGet, path: "/api/flow-keys?prefix=ig:&limit=5", auth: admin, status: http.StatusOK},
			{name: "flow keys as a user", method: http.MethodGet, path: "/api/flow-keys", auth: user, status: http.StatusForbidden},
			{name: "flow key", method: http.MethodGet, path: "/api/flow-keys/ig:1", auth: admin, status: http.StatusOK},
			{name: "worker", method: http.MethodPost, path: "/api/workers?budget=5s", auth: worker, status: http.StatusOK},
			{name: "worker delivery", method: http.MethodPost, path: "/api/workers", auth: worker, body: `{"jobId":1}`, status: http.StatusOK},
			{name: "worker without auth", method: http.MethodPost, path: "/api/workers", status: http.StatusUnauthorized, invalid: true},
			{name: "worker wrong secret", method: http.MethodPost, path: "/api/workers", auth: "Bearer wrong", status: http.StatusUnauthorized},
			{name: "worker bad budget", method: http.MethodPost, path: "/api/workers?budget=-1s", auth: worker, status: http.StatusBadRequest},
			{name: "worker job", method: http.MethodGet, path: "/api/workers/jobs/1", auth: worker, status: http.StatusOK},
			{name: "worker job missing", method: http.MethodGet, path: "/api/workers/jobs/999999", auth: worker, status: http.StatusNotFound},
			{name: "image", method: http.MethodGet, path: "/files/images/" + img, status: http.StatusOK},
			{name: "image missing", method: http.MethodGet, path: "/files/images/" + strings.Repeat("cd", 16) + ".png", status: http.StatusNotFound},
			{name: "flow key invalid", method: http.MethodGet, path: "/api/flow-keys/" + strings.Repeat("k", 201), auth: admin, status: http.StatusBadRequest},
			{name: "head flow keys", method: http.MethodHead, path: "/api/flow-keys", auth: admin, status: http.StatusOK},
			{name: "head healthz", method: http.MethodHead, path: "/healthz", status: http.StatusOK},
			{name: "head job", method: http.MethodHead, path: "/api/jobs/1", auth: user, status: http.StatusOK},
			{name: "head missing job", method: http.MethodHead, path: "/api/jobs/999999", auth: user, status: http.StatusNotFound},
		} {
			sc.check(t, r)
		}

		// A response the spec does not allow fails the check: a job with a
		// field the spec lacks.
		bad := newSpecChecker(t, sc.bb)
		bad.bb.app.GET("/api/jobs/:id", func(c echo.Context) error {
			return c.JSON(http.StatusOK, map[string]any{"id": 1, "surprise": true})
		})
		rec := httptest.NewRecorder()
		req := bad.newRequest(specRequest{method: http.MethodGet, path: "/api/jobs/1"})
		bad.bb.app.ServeHTTP(rec, req)
		route, params, err := bad.router.FindRoute(req)
		require.NoError(t, err)
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		require.Error(t, openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: rec.Code, Header: rec.Header(), Body: io.NopCloser(rec.Body)}))
	})
}

// TestOpenAPIEdgeResponsesMatch covers the statuses that need a
// configured failure: a creation limit (429), the worker-auth failure
// limit (429), a failed readiness check and a drain a backend cut short
// (503).
func TestOpenAPIEdgeResponsesMatch(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		sc := newSpecChecker(t, setup(t, b, func(cfg *handlers.Config) {
			cfg.CreateLimit = func(context.Context, string) (bool, time.Duration, error) { return false, 3 * time.Second, nil }
			cfg.WorkerAuthLimit = blockAll{}
			cfg.Ready = func(context.Context) map[string]error {
				return map[string]error{"database": nil, "redis": errBoom}
			}
		}))
		sc.bb.drainer.Err = fmt.Errorf("drain: claim: %w: %w", jobs.ErrUnavailable, errBoom)
		user := "Bearer " + token(t, "u1")
		for _, r := range []specRequest{
			{name: "rate limited", method: http.MethodPost, path: "/api/jobs", auth: user, body: `{"type":"noop"}`, status: http.StatusTooManyRequests},
			{name: "batch rate limited", method: http.MethodPost, path: "/api/jobs/batch", auth: user, body: `{"jobs":[{"type":"noop"}]}`, status: http.StatusTooManyRequests},
			{name: "worker auth blocked", method: http.MethodPost, path: "/api/workers", auth: "Bearer wrong", status: http.StatusTooManyRequests},
			{name: "worker job auth blocked", method: http.MethodGet, path: "/api/workers/jobs/1", auth: "Bearer wrong", status: http.StatusTooManyRequests},
			{name: "not ready", method: http.MethodGet, path: "/readyz", status: http.StatusServiceUnavailable},
			{name: "drain cut short", method: http.MethodPost, path: "/api/workers", auth: "Bearer " + testWorkerSecret, status: http.StatusServiceUnavailable},
		} {
			sc.check(t, r)
		}
	})
}

// expiredToken mints a token for user that expired an hour ago.
func expiredToken(t testing.TB, user string) string {
	t.Helper()
	tok, err := auth.MintHS256([]byte(testJWTSecret), user, time.Minute, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	return tok
}

// blockAll is a WorkerAuthLimiter that has blocked every client.
type blockAll struct{}

func (blockAll) Blocked(context.Context, string) (bool, time.Duration, error) {
	return true, time.Minute, nil
}

func (blockAll) Fail(context.Context, string) error { return nil }
