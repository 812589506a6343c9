package handlers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// ProtocolErrorListener wraps ln so that the errors net/http answers by
// itself, before any handler runs, reach the client as this API's JSON
// errors instead of Go's plain text: a request line or URL it cannot parse
// (GET /api/jobs/%zz), a control character in a header, a missing or
// malformed Host, a bad Content-Length, headers over the server's
// MaxHeaderBytes (431 request_headers_too_large), an unsupported
// Transfer-Encoding (501 unsupported_transfer_encoding) or HTTP version
// (505 http_version_not_supported), an Expect other than 100-continue (417
// expectation_failed), and plain HTTP sent to a TLS server. Serve the app
// on the wrapped listener:
//
//	srv.Serve(handlers.ProtocolErrorListener(ln))
//
// net/http writes each of these answers in one piece on the raw
// connection, in a fixed form no handler of this API produces (they carry
// no X-Request-Id, and no route answers 417); a write is replaced only
// when it is exactly one of them. Everything else passes through
// untouched, sendfile included.
func ProtocolErrorListener(ln net.Listener) net.Listener {
	return protocolErrorListener{ln}
}

type protocolErrorListener struct{ net.Listener }

// Accept wraps each connection.
func (l protocolErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &protocolErrorConn{Conn: c}, nil
}

// protocolErrorConn rewrites net/http's own error answers on one
// connection.
type protocolErrorConn struct{ net.Conn }

// maxProtocolError bounds the writes inspected: net/http's error answers
// are all shorter.
const maxProtocolError = 512

// Write sends p, or the JSON form of p when p is one of net/http's plain
// error answers.
func (c *protocolErrorConn) Write(p []byte) (int, error) {
	if len(p) <= maxProtocolError && bytes.HasPrefix(p, []byte("HTTP/1.")) {
		if ae, ok := parseProtocolError(string(p)); ok {
			if _, err := c.Conn.Write(protocolErrorResponse(ae)); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.Conn.Write(p)
}

// ReadFrom lets net/http use the connection's sendfile path.
func (c *protocolErrorConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c}, r)
}

// CloseWrite half-closes the connection, as net/http does after a 431.
func (c *protocolErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// The fixed parts of net/http's plain error answers (net/http/server.go).
const (
	plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	plainTLSError     = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"
	plainExpectFailed = "HTTP/1.1 417 Expectation Failed\r\n"
)

// parseProtocolError recognises one of net/http's own error answers and
// returns the API error to send instead.
func parseProtocolError(s string) (*APIError, bool) {
	if s == plainTLSError {
		return apiError(http.StatusBadRequest, CodeBadRequest, "this server speaks HTTPS; the request was plain HTTP"), true
	}
	if strings.HasPrefix(s, plainExpectFailed) && strings.HasSuffix(s, "\r\n\r\n") &&
		strings.Contains(s, "\r\nContent-Length: 0\r\n") && !strings.Contains(s, "\r\nX-Request-Id:") {
		return apiError(http.StatusExpectationFailed, CodeExpectationFailed, `the only Expect header supported is "Expect: 100-continue"`), true
	}
	head, body, ok := strings.Cut(s, plainErrorHeaders)
	if !ok || !strings.HasPrefix(head, "HTTP/1.1 ") {
		return nil, false
	}
	status := strings.TrimPrefix(head, "HTTP/1.1 ")
	if status != body && (status != "501 Not Implemented" || body != "Unsupported transfer encoding") {
		return nil, false
	}
	code, err := strconv.Atoi(status[:min(3, len(status))])
	if err != nil {
		return nil, false
	}
	_, reason, _ := strings.Cut(status, ": ")
	return protocolAPIError(code, reason), true
}

// protocolAPIError is the API error for a status net/http answered with,
// and the reason it gave, if any (a fixed phrase of net/http's).
func protocolAPIError(status int, reason string) *APIError {
	switch status {
	case http.StatusRequestHeaderFieldsTooLarge:
		return apiError(status, CodeRequestHeadersTooLarge, "the request's headers are over the server's limit")
	case http.StatusNotImplemented:
		return apiError(status, CodeUnsupportedTransferEncoding, `the Transfer-Encoding is not supported; use "chunked" or a Content-Length`)
	case http.StatusHTTPVersionNotSupported:
		return apiError(status, CodeHTTPVersionNotSupported, "the HTTP version is not supported; use HTTP/1.1")
	}
	msg := "the request is not valid HTTP: a malformed request line or URL (such as a bad %-escape), " +
		"a control character in a header, or a bad Content-Length"
	switch reason {
	case "":
	case "missing required Host header":
		msg = "the request has no Host header"
	case "malformed Host header":
		msg = "the request's Host header is malformed"
	case "invalid header name", "invalid header value":
		msg = "the request has a header name or value that is not allowed"
	default:
		msg = "the request is not valid HTTP: " + reason
	}
	return apiError(http.StatusBadRequest, CodeBadRequest, msg)
}

// protocolErrorResponse is the whole HTTP response for ae; the connection
// closes after it, as net/http closes it.
func protocolErrorResponse(ae *APIError) []byte {
	body, err := json.Marshal(ErrorResponse{Error: ae})
	if err != nil { // an APIError always marshals
		body = []byte(`{"error":{"code":"bad_request","message":"bad request"}}`)
	}
	body = append(body, '\n')
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", ae.Status, http.StatusText(ae.Status))
	b.WriteString("Content-Type: application/json\r\n")
	b.WriteString("Cache-Control: no-store\r\n")
	b.WriteString("X-Content-Type-Options: nosniff\r\n")
	b.WriteString("Connection: close\r\n")
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes()
}
