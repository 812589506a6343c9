// Package graph is an httptest fake of the Meta Graph API endpoints that
// jobhook's social publishing tasks call: Instagram content publishing
// (POST /{ig-user}/media, GET /{container}?fields=status_code,status,
// POST /{ig-user}/media_publish, GET /{ig-user}/content_publishing_limit,
// GET /{media}?fields=permalink) and Facebook Page posts (POST /{page}/feed,
// POST /{page}/photos). Paths carry a version prefix such as /v25.0/; POST
// bodies are form-encoded, answers are JSON, errors have Graph's shape
// {"error":{"message","type","code","error_subcode","fbtrace_id"}}.
//
// Tests can make the next N calls fail with a chosen status and body, keep
// containers IN_PROGRESS for K polls, end them in ERROR or EXPIRED, answer
// with malformed JSON, hang, or take effect and then lose the answer (the
// connection is reset after the request was read and served). The fake counts calls, records every request
// and detects a publish of the same creation_id twice.
package graph

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
)

// Call kinds counted by Calls.
const (
	CallCreateContainer = "POST media"
	CallStatus          = "GET status"
	CallPublish         = "POST media_publish"
	CallPublishingLimit = "GET content_publishing_limit"
	CallMedia           = "GET media"
	CallFeed            = "POST feed"
	CallPhotos          = "POST photos"
	CallUnknown         = "unknown"
)

// Request is one request the fake received.
type Request struct {
	Kind   string
	Method string
	// Path is the path without the version prefix, such as "/123/media".
	Path    string
	Version string
	// ContentType is the request's Content-Type header.
	ContentType string
	// Form holds the POST form (or the query of a GET), without
	// access_token.
	Form url.Values
	// Token is the access token sent: form field, query parameter or
	// Authorization: Bearer header.
	Token string
	// TokenInQuery reports whether the token came in the URL query.
	TokenInQuery bool
}

// Failure is an answer the fake gives instead of the normal one.
type Failure struct {
	Status int
	Body   string
	Header http.Header
}

// Container is an Instagram media container held by the fake.
type Container struct {
	ID        string
	IGUser    string
	Params    url.Values
	Children  []string
	Polls     int
	Published bool
	MediaID   string
}

// Server is the fake. Create it with New.
type Server struct {
	*httptest.Server

	// Token, when set, is the only access token accepted; others get a
	// code 190 error.
	Token string

	mu          sync.Mutex
	failures    []Failure
	malformed   int
	hang        int
	hangKinds   map[string]int
	dropKinds   map[string]int
	failKinds   map[string][]Failure
	inProgress  int
	finalStatus string
	calls       map[string]int
	requests    []Request
	containers  map[string]*Container
	order       []string
	publishes   map[string]int
	duplicates  int
	photos      map[string]url.Values
	posts       map[string]url.Values
	nextID      int
	done        chan struct{}
	closeOnce   sync.Once
	usage       usageState  // rate limits (usage.go)
	lookup      lookupState // lookup.go
}

// New starts a fake Graph API server. Close it when done (t.Cleanup).
func New() *Server {
	s := &Server{
		finalStatus: "FINISHED",
		calls:       map[string]int{},
		containers:  map[string]*Container{},
		publishes:   map[string]int{},
		photos:      map[string]url.Values{},
		posts:       map[string]url.Values{},
		hangKinds:   map[string]int{},
		dropKinds:   map[string]int{},
		failKinds:   map[string][]Failure{},
		nextID:      1000,
		done:        make(chan struct{}),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.done)
		s.Server.Close()
	})
}

// GraphError returns a Graph error body.
func GraphError(message, typ string, code, subcode int, transient bool) string {
	e := map[string]any{
		"message":    message,
		"type":       typ,
		"code":       code,
		"fbtrace_id": "AbCdEfFakeTrace",
	}
	if subcode != 0 {
		e["error_subcode"] = subcode
	}
	if transient {
		e["is_transient"] = true
	}
	b, _ := json.Marshal(map[string]any{"error": e})
	return string(b)
}

// FailNext makes the next n calls (of any kind) answer with status and body.
func (s *Server) FailNext(n, status int, body string, header http.Header) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, Failure{Status: status, Body: body, Header: header})
	}
}

// FailNextGraph makes the next n calls answer with a Graph error (HTTP 400,
// as Graph does even for transient errors, unless status is set).
func (s *Server) FailNextGraph(n, status, code, subcode int, message string, transient bool) {
	if status == 0 {
		status = http.StatusBadRequest
	}
	s.FailNext(n, status, GraphError(message, "OAuthException", code, subcode, transient), nil)
}

// FailNextOf makes the next n calls of one kind (such as CallPublish)
// answer with status and body; other calls are not affected.
func (s *Server) FailNextOf(kind string, n, status int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failKinds[kind] = append(s.failKinds[kind], Failure{Status: status, Body: body})
	}
}

// MalformedNext makes the next n calls answer 200 with malformed JSON.
func (s *Server) MalformedNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.malformed += n
}

// HangNext makes the next n calls hang until the client gives up or the
// server closes.
func (s *Server) HangNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang += n
}

// HangNextOf makes the next n calls of one kind hang.
func (s *Server) HangNextOf(kind string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hangKinds[kind] += n
}

// DropAnswerNextOf makes the next n calls of one kind take effect as
// usual (a post is created, a container published) and then lose their
// answer: the connection is reset instead of answered, as when a network
// fails after Graph received the request. The client cannot tell whether
// the call went through.
func (s *Server) DropAnswerNextOf(kind string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropKinds[kind] += n
}

// SetInProgressPolls makes every container answer IN_PROGRESS to its
// first k status polls.
func (s *Server) SetInProgressPolls(k int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inProgress = k
}

// SetFinalStatus sets the status_code containers reach after their
// IN_PROGRESS polls: FINISHED (default), ERROR or EXPIRED.
func (s *Server) SetFinalStatus(status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.finalStatus = status
}

// Calls returns how many calls of a kind were answered (failed ones too).
func (s *Server) Calls(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[kind]
}

// Requests returns the requests received, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	copy(out, s.requests)
	return out
}

// RequestsOf returns the requests of one kind, in order.
func (s *Server) RequestsOf(kind string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// Containers returns the containers created, in order.
func (s *Server) Containers() []Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Container, 0, len(s.order))
	for _, id := range s.order {
		c := *s.containers[id]
		out = append(out, c)
	}
	return out
}

// Publishes returns how many successful media_publish calls each
// creation_id got.
func (s *Server) Publishes() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.publishes))
	for k, v := range s.publishes {
		out[k] = v
	}
	return out
}

// DuplicatePublishes returns how many media_publish calls named a
// creation_id already published.
func (s *Server) DuplicatePublishes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.duplicates
}

// Posts returns the Page posts created, by id, with their form.
func (s *Server) Posts() map[string]url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]url.Values, len(s.posts))
	for k, v := range s.posts {
		out[k] = v
	}
	return out
}

var versionRE = regexp.MustCompile(`^/(v[0-9]+\.[0-9]+)(/.*)$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	req := Request{Method: r.Method, ContentType: r.Header.Get("Content-Type"), Path: r.URL.Path}
	if m := versionRE.FindStringSubmatch(r.URL.Path); m != nil {
		req.Version, req.Path = m[1], m[2]
	}
	parts := strings.Split(strings.Trim(req.Path, "/"), "/")
	req.Kind = kindOf(r.Method, parts)
	if req.Kind == CallStatus && strings.Contains(r.URL.Query().Get("fields"), "permalink") {
		req.Kind = CallMedia
	}

	if r.Method == http.MethodPost {
		if ct := req.ContentType; !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
			s.record(req)
			writeJSON(w, http.StatusBadRequest, GraphError("fake: want a form-encoded body, got "+ct, "OAuthException", 100, 0, false))
			return
		}
		if err := r.ParseForm(); err != nil {
			s.record(req)
			writeJSON(w, http.StatusBadRequest, GraphError("fake: bad form", "OAuthException", 100, 0, false))
			return
		}
		req.Form = cloneValues(r.PostForm)
	} else {
		req.Form = cloneValues(r.URL.Query())
	}
	switch {
	case r.PostForm.Get("access_token") != "":
		req.Token = r.PostForm.Get("access_token")
	case r.URL.Query().Get("access_token") != "":
		req.Token, req.TokenInQuery = r.URL.Query().Get("access_token"), true
	default:
		if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			req.Token = v
		}
	}
	req.Form.Del("access_token")

	s.mu.Lock()
	s.requests = append(s.requests, req)
	s.calls[req.Kind]++
	hang := false
	if s.hang > 0 {
		s.hang--
		hang = true
	} else if s.hangKinds[req.Kind] > 0 {
		s.hangKinds[req.Kind]--
		hang = true
	}
	var fail *Failure
	if !hang {
		if len(s.failures) > 0 {
			f := s.failures[0]
			s.failures = s.failures[1:]
			fail = &f
		} else if q := s.failKinds[req.Kind]; len(q) > 0 {
			f := q[0]
			s.failKinds[req.Kind] = q[1:]
			fail = &f
		}
	}
	account := s.accountOfLocked(parts)
	if !hang && fail == nil {
		fail = s.throttleLocked(account)
	}
	usageHeader := s.usageHeaderLocked(account)
	malformed := false
	if !hang && fail == nil && s.malformed > 0 {
		s.malformed--
		malformed = true
	}
	s.mu.Unlock()
	for k, vs := range usageHeader {
		w.Header()[k] = vs
	}

	switch {
	case hang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return
	case fail != nil:
		for k, vs := range fail.Header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		writeJSON(w, fail.Status, fail.Body)
		return
	case malformed:
		writeJSON(w, http.StatusOK, `{"id": "12`)
		return
	}
	if req.Version == "" {
		writeJSON(w, http.StatusBadRequest, GraphError("fake: unversioned path "+r.URL.Path, "OAuthException", 2500, 0, false))
		return
	}
	if req.Token == "" || (s.Token != "" && req.Token != s.Token) {
		writeJSON(w, http.StatusBadRequest, GraphError("Error validating access token: Session has expired.", "OAuthException", 190, 463, false))
		return
	}
	status, body := s.answer(req, parts)
	s.afterAnswer(req.Kind, status, body)
	s.mu.Lock()
	drop := s.dropKinds[req.Kind] > 0
	if drop {
		s.dropKinds[req.Kind]--
	}
	s.mu.Unlock()
	if drop {
		resetConnection(w)
		return
	}
	writeJSON(w, status, body)
}

// resetConnection closes the request's connection without an answer, with
// a TCP reset where it can (SO_LINGER 0).
func resetConnection(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic("graph fake: the response writer cannot hijack the connection")
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic("graph fake: hijack: " + err.Error())
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
	s.calls[req.Kind]++
}

func kindOf(method string, parts []string) string {
	if k := lookupKind(method, parts); k != "" {
		return k
	}
	switch {
	case method == http.MethodPost && len(parts) == 2 && parts[1] == "media":
		return CallCreateContainer
	case method == http.MethodPost && len(parts) == 2 && parts[1] == "media_publish":
		return CallPublish
	case method == http.MethodPost && len(parts) == 2 && parts[1] == "feed":
		return CallFeed
	case method == http.MethodPost && len(parts) == 2 && parts[1] == "photos":
		return CallPhotos
	case method == http.MethodGet && len(parts) == 2 && parts[1] == "content_publishing_limit":
		return CallPublishingLimit
	case method == http.MethodGet && len(parts) == 1 && parts[0] != "":
		return CallStatus // or CallMedia; refined in answer
	}
	return CallUnknown
}

func (s *Server) newID(prefix string) string {
	s.nextID++
	return fmt.Sprintf("%s%d", prefix, s.nextID)
}

func paramError(msg string) (int, string) {
	return http.StatusBadRequest, GraphError(msg, "OAuthException", 100, 0, false)
}

// answer serves a well-formed request; it returns the status and body.
func (s *Server) answer(req Request, parts []string) (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := req.Form
	switch req.Kind {
	case CallCreateContainer:
		c := &Container{IGUser: parts[0], Params: f}
		switch {
		case f.Get("media_type") == "CAROUSEL":
			kids := strings.Split(f.Get("children"), ",")
			if f.Get("children") == "" || len(kids) < 2 || len(kids) > 10 {
				return paramError("(#100) The carousel must have between 2 and 10 children")
			}
			for _, k := range kids {
				kc, ok := s.containers[k]
				if !ok || kc.Params.Get("is_carousel_item") != "true" {
					return paramError("(#100) Invalid carousel child " + k)
				}
				if kc.Polls <= s.inProgress {
					return http.StatusBadRequest, GraphError("Media ID is not available", "OAuthException", 9007, 2207027, false)
				}
			}
			c.Children = kids
		case f.Get("image_url") == "":
			return paramError("(#100) The parameter image_url is required")
		case f.Get("is_carousel_item") == "true" && f.Get("caption") != "":
			return paramError("(#100) Carousel items cannot have a caption")
		}
		c.ID = s.newID("1790000")
		s.containers[c.ID] = c
		s.order = append(s.order, c.ID)
		return http.StatusOK, fmt.Sprintf(`{"id":%q}`, c.ID)

	case CallStatus, CallMedia:
		id := parts[0]
		if c, ok := s.containers[id]; ok {
			c.Polls++
			st := "IN_PROGRESS"
			switch {
			case c.Published:
				st = "PUBLISHED"
			case c.Polls > s.inProgress:
				st = s.finalStatus
			}
			body, _ := json.Marshal(map[string]string{"status_code": st, "status": st, "id": id})
			return http.StatusOK, string(body)
		}
		for _, c := range s.containers {
			if c.MediaID == id {
				body, _ := json.Marshal(map[string]string{"id": id, "permalink": "https://www.instagram.com/p/FAKE" + id + "/"})
				return http.StatusOK, string(body)
			}
		}
		return http.StatusBadRequest, GraphError("Unsupported get request. Object with ID '"+id+"' does not exist", "GraphMethodException", 100, 33, false)

	case CallPublish:
		id := f.Get("creation_id")
		c, ok := s.containers[id]
		if !ok || c.IGUser != parts[0] || c.Params.Get("is_carousel_item") == "true" {
			return paramError("(#100) Invalid creation_id " + id)
		}
		if c.Published {
			s.duplicates++
			return http.StatusBadRequest, GraphError("The media has already been published", "OAuthException", 9004, 2207008, false)
		}
		if c.Polls <= s.inProgress || s.finalStatus != "FINISHED" {
			return http.StatusBadRequest, GraphError("Media ID is not available", "OAuthException", 9007, 2207027, false)
		}
		if status, body, over := s.overQuotaLocked(parts[0]); over {
			return status, body
		}
		c.Published = true
		c.MediaID = s.newID("1780000")
		s.publishes[id]++
		s.published(CallPublish, parts[0], c.MediaID, c.Params.Get("caption"))
		return http.StatusOK, fmt.Sprintf(`{"id":%q}`, c.MediaID)

	case CallPublishingLimit:
		return s.publishingLimitLocked(parts[0])

	case CallFeed:
		if f.Get("message") == "" && f.Get("link") == "" && f.Get("attached_media[0]") == "" {
			return paramError("(#100) Missing message or attachment")
		}
		for i := 0; ; i++ {
			v := f.Get(fmt.Sprintf("attached_media[%d]", i))
			if v == "" {
				break
			}
			var m struct {
				MediaFBID string `json:"media_fbid"`
			}
			if err := json.Unmarshal([]byte(v), &m); err != nil || m.MediaFBID == "" {
				return paramError("(#100) attached_media must be JSON with media_fbid")
			}
			if p, ok := s.photos[m.MediaFBID]; !ok || p.Get("published") != "false" {
				return paramError("(#100) Unknown or published photo " + m.MediaFBID)
			}
		}
		id := parts[0] + "_" + s.newID("50000")
		s.posts[id] = f
		s.published(CallFeed, parts[0], id, f.Get("message"))
		return http.StatusOK, fmt.Sprintf(`{"id":%q}`, id)

	case CallPhotos:
		if f.Get("url") == "" {
			return paramError("(#100) url or source is required")
		}
		id := s.newID("60000")
		s.photos[id] = f
		if f.Get("published") == "false" {
			return http.StatusOK, fmt.Sprintf(`{"id":%q}`, id)
		}
		postID := parts[0] + "_" + id
		s.posts[postID] = f
		s.published(CallPhotos, parts[0], postID, f.Get("caption")+f.Get("message"))
		return http.StatusOK, fmt.Sprintf(`{"id":%q,"post_id":%q}`, id, postID)
	}
	if status, body, ok := s.answerLookup(req, parts); ok {
		return status, body
	}
	return http.StatusBadRequest, GraphError("Unknown path components: "+req.Path, "OAuthException", 2500, 0, false)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
