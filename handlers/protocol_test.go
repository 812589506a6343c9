package handlers_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
)

// serveReal serves bb's app on a real TCP listener wrapped in
// ProtocolErrorListener, as the app does, and returns its address.
func serveReal(t *testing.T, bb *bundle) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: bb.app, ReadHeaderTimeout: 5 * time.Second, MaxHeaderBytes: 1 << 12}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(handlers.ProtocolErrorListener(ln))
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// rawResponse is one answer read off the wire.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// sendRaw writes raw requests on one connection and reads n responses.
func sendRaw(t *testing.T, addr string, n int, raw string) []rawResponse {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	r := bufio.NewReader(c)
	var out []rawResponse
	for range n {
		resp, err := http.ReadResponse(r, nil)
		require.NoError(t, err, "request %q", raw)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		_ = resp.Body.Close()
		out = append(out, rawResponse{status: resp.StatusCode, header: resp.Header, body: string(body)})
	}
	return out
}

// requireJSONError checks a response read off the wire like requireError.
func requireJSONError(t *testing.T, what string, r rawResponse, status int, code string) errorBody {
	t.Helper()
	require.Equal(t, status, r.status, "%s: %s", what, r.body)
	require.True(t, strings.HasPrefix(r.header.Get("Content-Type"), "application/json"), "%s: content type %q", what, r.header.Get("Content-Type"))
	require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), what)
	var top map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte(r.body), &top), "%s: %q", what, r.body)
	require.Len(t, top, 1, what)
	var eb errorBody
	require.NoError(t, json.Unmarshal([]byte(r.body), &eb))
	require.Equal(t, code, eb.Error.Code, "%s: %s", what, r.body)
	require.NotEmpty(t, eb.Error.Message, what)
	return eb
}

// TestMalformedRequestsGetJSONErrors: the requests net/http refuses before
// any handler runs get the API's JSON error shape with a stable code, not
// Go's plain text.
func TestMalformedRequestsGetJSONErrors(t *testing.T) {
	bb := setup(t, testenv.Embedded(t))
	addr := serveReal(t, bb)
	tok := "Bearer " + token(t, "u1")
	for _, tc := range []struct {
		name   string
		raw    string
		status int
		code   string
	}{
		{"bad escape in the path", "GET /api/jobs/%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
		{"bad escape in an absolute URL", "GET http://%zz/ HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
		{"control character in the path", "GET /a\x01 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"},
		{"control character in Idempotency-Key", "POST /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: " + tok + "\r\nIdempotency-Key: a\x01b\r\nContent-Length: 2\r\n\r\n{}", 400, "bad_request"},
		{"DEL in a header", "GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Thing: a\x7fb\r\n\r\n", 400, "bad_request"},
		{"no Host", "GET /api/jobs HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"two Hosts", "GET /api/jobs HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "bad_request"},
		{"space in a header name", "GET /api/jobs HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n", 400, "bad_request"},
		{"negative Content-Length", "POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"},
		{"not HTTP", "GARBAGE\r\n\r\n", 400, "bad_request"},
		{"HTTP/9.9", "GET /api/jobs HTTP/9.9\r\nHost: x\r\n\r\n", 505, "http_version_not_supported"},
		{"unknown Transfer-Encoding", "POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n", 501, "unsupported_transfer_encoding"},
		{"unsupported Expect", "GET /api/jobs HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n\r\n", 417, "expectation_failed"},
		{"headers over MaxHeaderBytes", "GET /api/jobs HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 16<<10) + "\r\n\r\n", 431, "request_headers_too_large"},
	} {
		r := sendRaw(t, addr, 1, tc.raw)[0]
		requireJSONError(t, tc.name, r, tc.status, tc.code)
		require.Equal(t, "no-store", r.header.Get("Cache-Control"), tc.name)
	}

	// Ordinary traffic passes through untouched, keep-alive included.
	rs := sendRaw(t, addr, 2, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /api/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: "+tok+"\r\n\r\n")
	require.Equal(t, 200, rs[0].status)
	require.JSONEq(t, `{"status":"ok"}`, rs[0].body)
	require.Equal(t, 200, rs[1].status)
	require.JSONEq(t, `{"jobs":[]}`, rs[1].body)
}

// TestProtocolErrorListenerLeavesBodiesAlone: a served file whose bytes
// are exactly net/http's plain error answer comes back as it is, small
// (buffered with the headers) or large (sendfile).
func TestProtocolErrorListenerLeavesBodiesAlone(t *testing.T) {
	dir := t.TempDir()
	plain := "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request"
	small, large := strings.Repeat("a", 32)+".png", strings.Repeat("b", 32)+".png"
	require.NoError(t, os.WriteFile(filepath.Join(dir, small), []byte(plain), 0o644))
	big := strings.Repeat(plain, 4000)
	require.NoError(t, os.WriteFile(filepath.Join(dir, large), []byte(big), 0o644))
	bb := setup(t, testenv.Embedded(t), func(cfg *handlers.Config) {
		cfg.Images = &handlers.ImageFiles{Dir: dir, Name: regexp.MustCompile(`^[a-f0-9]{32}\.png$`)}
	})
	addr := serveReal(t, bb)
	for name, want := range map[string]string{small: plain, large: big} {
		r := sendRaw(t, addr, 1, "GET /files/images/"+name+" HTTP/1.1\r\nHost: x\r\n\r\n")[0]
		require.Equal(t, 200, r.status)
		require.Equal(t, want, r.body)
	}
}

// TestEveryClientErrorIsJSON covers what reaches Echo: OPTIONS and other
// methods a route does not have, HEAD, malformed query strings and
// control characters that net/http lets through.
func TestEveryClientErrorIsJSON(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b)
		user := "Bearer " + token(t, "u1")
		job := bb.createJob(t, "u1", `{"type":"echo","payload":{"text":"x"}}`, http.StatusCreated)
		jobPath := "/api/jobs/" + jsonNumber(job.JobID)

		// OPTIONS is not an API method: 405 with the route's methods.
		rec := bb.do(t, request{method: http.MethodOptions, path: "/api/jobs"})
		requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
		require.Equal(t, "GET, HEAD, POST", rec.Header().Get("Allow"))
		rec = bb.do(t, request{method: http.MethodOptions, path: jobPath, auth: user})
		requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
		require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
		requireError(t, bb.do(t, request{method: http.MethodOptions, path: "/nope"}), http.StatusNotFound, "not_found")
		for _, m := range []string{"TRACE", "CONNECT", "PATCH", "DELETE", "PUT", "FOO"} {
			rec := bb.do(t, request{method: m, path: "/api/jobs"})
			requireError(t, rec, http.StatusMethodNotAllowed, "method_not_allowed")
			require.Equal(t, "GET, HEAD, POST", rec.Header().Get("Allow"), m)
		}

		// HEAD works wherever GET does; its errors say they are JSON.
		require.Equal(t, http.StatusOK, bb.do(t, request{method: http.MethodHead, path: "/api/jobs", auth: user}).Code)
		require.Equal(t, http.StatusOK, bb.do(t, request{method: http.MethodHead, path: jobPath, auth: user}).Code)
		rec = bb.do(t, request{method: http.MethodHead, path: "/api/jobs"})
		require.Equal(t, http.StatusUnauthorized, rec.Code)
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		require.Empty(t, rec.Body.String())
		rec = bb.do(t, request{method: http.MethodHead, path: "/api/workers"})
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
		require.Equal(t, "POST", rec.Header().Get("Allow"))
		require.Equal(t, "application/json", rec.Header().Get("Content-Type"))

		// A query string Go cannot parse was silently dropped: status=%zz
		// listed every job.
		for _, q := range []string{"?status=%zz", "?status=pending;x", "?limit=%", "?%zz=1"} {
			requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/jobs" + q, auth: user}), http.StatusBadRequest, "invalid_query")
		}
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/workers?budget=%zz", auth: "Bearer " + testWorkerSecret}),
			http.StatusBadRequest, "invalid_query")

		// The control characters net/http lets through (tab) are refused
		// in an Idempotency-Key, and nothing is written.
		before := bb.counts(t)
		requireError(t, bb.do(t, request{method: http.MethodPost, path: "/api/jobs", auth: user,
			body: strings.NewReader(`{"type":"echo","payload":{"text":"x"}}`), headers: map[string]string{"Idempotency-Key": "a\tb"}}),
			http.StatusBadRequest, "invalid_idempotency_key")
		require.Equal(t, before, bb.counts(t))
	})
}

func jsonNumber(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
