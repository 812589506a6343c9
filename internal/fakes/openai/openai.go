// Package openai is a test fake of an OpenAI-compatible API: an httptest
// server answering POST {base}/chat/completions and POST
// {base}/images/generations in the real wire format, with Bearer auth and
// OpenAI error bodies. Tests point a client's base URL at Server.URL (which
// ends in "/v1"), queue failures with FailNext, and inspect the recorded
// requests.
package openai

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// BasePath is the path prefix the fake serves the API under.
const BasePath = "/v1"

// PNG is a valid 1×1 PNG image, returned as b64_json by default.
var PNG = []byte{
	0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d,
	0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01,
	0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00, 0x00, 0x00,
	0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
	0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00,
	0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
}

// Failure is what the fake answers instead of a normal response.
type Failure struct {
	// Status is the HTTP status (such as 429); 0 means 200.
	Status int
	// Body is written as is (use ErrorBody for an OpenAI error body).
	Body string
	// Header is added to the response.
	Header http.Header
	// Hang makes the fake wait until the request's context ends (or the
	// server closes) without answering.
	Hang bool
}

// ErrorBody returns an OpenAI error body {"error":{...}}.
func ErrorBody(message, typ, code, param string) string {
	e := map[string]any{"message": message, "type": typ, "code": nil, "param": nil}
	if code != "" {
		e["code"] = code
	}
	if param != "" {
		e["param"] = param
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

// RateLimited is a 429 rate_limit_exceeded with the given Retry-After
// header (none when empty).
func RateLimited(retryAfter string) Failure {
	f := Failure{Status: http.StatusTooManyRequests, Header: http.Header{},
		Body: ErrorBody("Rate limit reached for requests", "requests", "rate_limit_exceeded", "")}
	if retryAfter != "" {
		f.Header.Set("Retry-After", retryAfter)
	}
	return f
}

// InsufficientQuota is a 429 insufficient_quota (billing; not retryable).
func InsufficientQuota() Failure {
	return Failure{Status: http.StatusTooManyRequests,
		Body: ErrorBody("You exceeded your current quota, please check your plan and billing details.", "insufficient_quota", "insufficient_quota", "")}
}

// ServerError is a 500 server_error.
func ServerError() Failure {
	return Failure{Status: http.StatusInternalServerError,
		Body: ErrorBody("The server had an error while processing your request.", "server_error", "", "")}
}

// BadRequest is a 400 invalid_request_error naming param.
func BadRequest(message, param string) Failure {
	return Failure{Status: http.StatusBadRequest,
		Body: ErrorBody(message, "invalid_request_error", "", param)}
}

// Malformed is a 200 whose body is not valid JSON.
func Malformed() Failure {
	return Failure{Status: http.StatusOK, Body: `{"id": "chatcmpl-x", "choices": [`}
}

// Hang is a request that is never answered.
func Hang() Failure { return Failure{Hang: true} }

// Request is one request the fake received.
type Request struct {
	Method string
	Path   string // such as "/v1/chat/completions"
	// Authorized reports whether the Bearer token matched.
	Authorized bool
	Header     http.Header // Authorization removed
	Body       []byte
}

// JSON decodes the request body into a map.
func (r Request) JSON() map[string]any {
	var m map[string]any
	_ = json.Unmarshal(r.Body, &m)
	return m
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the API base URL, such as http://127.0.0.1:1234/v1.
	URL string
	// APIKey is the only Bearer token accepted.
	APIKey string

	srv     *httptest.Server
	closing chan struct{}
	once    sync.Once

	mu       sync.Mutex
	failures []Failure
	requests []Request
	chatText string
	finish   string
	imageB64 []byte
	// rate limits per model (ratelimit.go)
	rateLimits    map[string]RateLimit
	modelFailures map[string][]Failure
}

// New starts a fake accepting apiKey and closes it when tb ends.
func New(tb testing.TB, apiKey string) *Server {
	s := &Server{APIKey: apiKey, closing: make(chan struct{}), chatText: "Hello from the fake.", finish: "stop", imageB64: PNG}
	mux := http.NewServeMux()
	mux.HandleFunc(BasePath+"/chat/completions", s.chat)
	mux.HandleFunc(BasePath+"/images/generations", s.images)
	mux.HandleFunc(BasePath+"/files/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(PNG)
	})
	s.srv = httptest.NewServer(mux)
	s.URL = s.srv.URL + BasePath
	tb.Cleanup(s.Close)
	return s
}

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closing)
		s.srv.Close()
	})
}

// FailNext makes the next n authorized POST calls (to either endpoint)
// answer f.
func (s *Server) FailNext(n int, f Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, f)
	}
}

// SetChatReply sets the assistant text and finish_reason of chat answers.
func (s *Server) SetChatReply(text, finishReason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.chatText, s.finish = text, finishReason
}

// SetImageData sets the bytes returned as b64_json.
func (s *Server) SetImageData(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.imageB64 = data
}

// Requests returns a copy of the requests received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Calls returns how many requests were received.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.requests)
}

// begin records r and returns its body, the queued failure if any, and
// whether the request was answered already (auth or method error).
func (s *Server) begin(w http.ResponseWriter, r *http.Request) ([]byte, *Failure, bool) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	h := r.Header.Clone()
	h.Del("Authorization")
	authorized := r.Header.Get("Authorization") == "Bearer "+s.APIKey
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Authorized: authorized, Header: h, Body: body})
	var f *Failure
	if len(s.failures) > 0 && authorized && r.Method == http.MethodPost {
		f = &s.failures[0]
		s.failures = s.failures[1:]
	}
	var rateHeader http.Header
	if authorized && r.Method == http.MethodPost {
		var mf *Failure
		mf, rateHeader = s.modelAnswerLocked(requestModel(body), f != nil)
		if f == nil {
			f = mf
		}
	}
	s.mu.Unlock()
	for k, vs := range rateHeader {
		w.Header()[k] = vs
	}

	switch {
	case r.Method != http.MethodPost:
		writeJSON(w, http.StatusMethodNotAllowed, ErrorBody("Method not allowed", "invalid_request_error", "", ""), nil)
		return nil, nil, true
	case !authorized:
		writeJSON(w, http.StatusUnauthorized, ErrorBody("Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.", "invalid_request_error", "invalid_api_key", ""), nil)
		return nil, nil, true
	}
	if f != nil {
		if f.Hang {
			select {
			case <-r.Context().Done():
			case <-s.closing:
			}
			return nil, nil, true
		}
		status := f.Status
		if status == 0 {
			status = http.StatusOK
		}
		writeJSON(w, status, f.Body, f.Header)
		return nil, nil, true
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		writeJSON(w, http.StatusBadRequest, ErrorBody("Content-Type must be application/json", "invalid_request_error", "", ""), nil)
		return nil, nil, true
	}
	return body, nil, false
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	body, _, done := s.begin(w, r)
	if done {
		return
	}
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody("We could not parse the JSON body of your request.", "invalid_request_error", "", ""), nil)
		return
	}
	if req.Model == "" {
		writeJSON(w, http.StatusBadRequest, ErrorBody("you must provide a model parameter", "invalid_request_error", "", "model"), nil)
		return
	}
	if len(req.Messages) == 0 {
		writeJSON(w, http.StatusBadRequest, ErrorBody("[] is too short - 'messages'", "invalid_request_error", "", "messages"), nil)
		return
	}
	s.mu.Lock()
	text, finish := s.chatText, s.finish
	s.mu.Unlock()
	prompt := 0
	for _, m := range req.Messages {
		prompt += len(strings.Fields(m.Content)) + 1
	}
	completion := len(strings.Fields(text))
	resp := map[string]any{
		"id":                 "chatcmpl-fake",
		"object":             "chat.completion",
		"created":            time.Now().Unix(),
		"model":              req.Model + "-2024-07-18",
		"system_fingerprint": "fp_fake",
		"choices": []any{map[string]any{
			"index":         0,
			"message":       map[string]any{"role": "assistant", "content": text, "refusal": nil},
			"logprobs":      nil,
			"finish_reason": finish,
		}},
		"usage": map[string]any{
			"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
		},
	}
	b, _ := json.Marshal(resp)
	writeJSON(w, http.StatusOK, string(b), http.Header{"X-Request-Id": {"req_fake"}})
}

func (s *Server) images(w http.ResponseWriter, r *http.Request) {
	body, _, done := s.begin(w, r)
	if done {
		return
	}
	var req struct {
		Prompt         string `json:"prompt"`
		Model          string `json:"model"`
		N              *int   `json:"n"`
		Size           string `json:"size"`
		ResponseFormat string `json:"response_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody("We could not parse the JSON body of your request.", "invalid_request_error", "", ""), nil)
		return
	}
	if req.Prompt == "" {
		writeJSON(w, http.StatusBadRequest, ErrorBody("Missing required parameter: 'prompt'.", "invalid_request_error", "", "prompt"), nil)
		return
	}
	n := 1
	if req.N != nil {
		n = *req.N
	}
	b64 := req.ResponseFormat == "b64_json" || strings.HasPrefix(req.Model, "gpt-image")
	s.mu.Lock()
	data := base64.StdEncoding.EncodeToString(s.imageB64)
	s.mu.Unlock()
	items := make([]map[string]any, n)
	for i := range items {
		if b64 {
			items[i] = map[string]any{"b64_json": data}
		} else {
			items[i] = map[string]any{"url": fmt.Sprintf("%s%s/files/img-%d.png", s.srv.URL, BasePath, i)}
		}
		if req.Model == "dall-e-3" {
			items[i]["revised_prompt"] = "A revised " + req.Prompt
		}
	}
	out, _ := json.Marshal(map[string]any{"created": time.Now().Unix(), "data": items})
	writeJSON(w, http.StatusOK, string(out), nil)
}

func writeJSON(w http.ResponseWriter, status int, body string, header http.Header) {
	for k, vs := range header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
