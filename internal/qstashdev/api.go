package qstashdev

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// deliverySpec is what publish and schedule-create headers say about the
// messages to deliver.
type deliverySpec struct {
	method  string
	header  http.Header // forwarded headers + Content-Type
	retries int
	delay   time.Duration
	timeout time.Duration
}

// ignoredHeaders are QStash headers qstashdev accepts but does not act on.
var ignoredHeaders = []string{
	"Upstash-Callback", "Upstash-Failure-Callback", "Upstash-Retry-Delay",
	"Upstash-Flow-Control-Key", "Upstash-Flow-Control-Value", "Upstash-Queue-Name",
	"Upstash-Label", "Upstash-Redact-Fields",
}

// parseDeliverySpec reads Upstash-Method, Upstash-Retries, Upstash-Delay,
// Upstash-Timeout, Upstash-Forward-* and Content-Type.
func (s *Server) parseDeliverySpec(h http.Header) (deliverySpec, *apiError) {
	spec := deliverySpec{method: http.MethodPost, retries: DefaultRetries, header: forwardedHeaders(h)}
	if m := strings.TrimSpace(h.Get("Upstash-Method")); m != "" {
		spec.method = strings.ToUpper(m)
		if !validMethod(spec.method) {
			return spec, errorf(http.StatusBadRequest, "invalid Upstash-Method %q: want GET, POST, PUT, PATCH or DELETE", m)
		}
	}
	if r := strings.TrimSpace(h.Get("Upstash-Retries")); r != "" {
		n, err := strconv.Atoi(r)
		if err != nil || n < 0 {
			return spec, errorf(http.StatusBadRequest, "invalid Upstash-Retries %q: want an integer >= 0", r)
		}
		spec.retries = n
	}
	var err error
	if spec.delay, err = parseQStashDuration(h.Get("Upstash-Delay")); err != nil {
		return spec, errorf(http.StatusBadRequest, "invalid Upstash-Delay: %v", err)
	}
	if spec.timeout, err = parseQStashDuration(h.Get("Upstash-Timeout")); err != nil {
		return spec, errorf(http.StatusBadRequest, "invalid Upstash-Timeout: %v", err)
	}
	if spec.timeout <= 0 || spec.timeout > s.cfg.DeliveryTimeout {
		spec.timeout = s.cfg.DeliveryTimeout
	}
	for _, name := range ignoredHeaders {
		if h.Get(name) != "" {
			s.log.Warn("header not supported by qstashdev, ignored", "header", name)
		}
	}
	return spec, nil
}

// publishResponse is QStash's answer to a publish.
type publishResponse struct {
	MessageID    string `json:"messageId"`
	Deduplicated bool   `json:"deduplicated,omitempty"`
}

// destinationFrom rebuilds the destination URL from the raw path remainder
// and the request's query (a query in the destination arrives as the API
// request's query).
//
// A net/http.ServeMux in front of the server cleans "http://host" in the
// path to "http:/host" (and redirects the client there); the lost slash is
// restored.
func destinationFrom(rest, query string) string {
	for _, scheme := range []string{"http:/", "https:/"} {
		if len(rest) > len(scheme) && strings.EqualFold(rest[:len(scheme)], scheme) && rest[len(scheme)] != '/' {
			rest = rest[:len(scheme)] + "/" + rest[len(scheme):]
		}
	}
	if query != "" {
		return rest + "?" + query
	}
	return rest
}

func (s *Server) handlePublish(req apiRequest, rest string) (int, any, *apiError) {
	if req.r.Method != http.MethodPost {
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/publish (use POST)", req.r.Method)
	}
	return s.publish(destinationFrom(rest, req.query), req.r.Header, req.body, req.callerIP)
}

// publish accepts one message for dest.
func (s *Server) publish(dest string, h http.Header, body []byte, caller string) (int, any, *apiError) {
	if err := validDestination(dest); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	spec, aerr := s.parseDeliverySpec(h)
	if aerr != nil {
		return 0, nil, aerr
	}
	var notBefore time.Time
	if nb := strings.TrimSpace(h.Get("Upstash-Not-Before")); nb != "" {
		n, err := strconv.ParseInt(nb, 10, 64)
		if err != nil || n < 0 {
			return 0, nil, errorf(http.StatusBadRequest, "invalid Upstash-Not-Before %q: want a unix timestamp in seconds", nb)
		}
		notBefore = time.Unix(n, 0)
	}
	dedupID := strings.TrimSpace(h.Get("Upstash-Deduplication-Id"))
	if dedupID == "" && headerIs(h, "Upstash-Content-Based-Deduplication", "true") {
		dedupID = contentDedupID(dest, spec, body)
	}

	s.mu.Lock()
	now := s.clock.Now()
	if dedupID != "" {
		for k, e := range s.dedup {
			if now.Sub(e.at) >= DeduplicationWindow {
				delete(s.dedup, k)
			}
		}
		if e, ok := s.dedup[dedupID]; ok {
			s.stats.Deduplicated++
			s.notifyLocked()
			s.mu.Unlock()
			s.log.Info("publish deduplicated", "messageId", e.messageID, "deduplicationId", dedupID)
			return http.StatusAccepted, publishResponse{MessageID: e.messageID, Deduplicated: true}, nil
		}
	}
	if notBefore.IsZero() {
		notBefore = now.Add(spec.delay)
	}
	m := &message{
		id: newID("msg_", 40), url: dest, method: spec.method, header: spec.header,
		body: bytes.Clone(body), maxRetries: spec.retries, notBefore: notBefore,
		createdAt: now, timeout: spec.timeout, callerIP: caller, state: StateCreated,
	}
	s.messages[m.id] = m
	if dedupID != "" {
		s.dedup[dedupID] = dedupEntry{messageID: m.id, at: now}
	}
	s.stats.Published++
	s.notifyLocked()
	s.mu.Unlock()
	s.poke()
	s.log.Info("message published", "messageId", m.id, "url", dest, "method", spec.method,
		"notBefore", notBefore.UTC().Format(time.RFC3339), "retries", spec.retries)
	return http.StatusOK, publishResponse{MessageID: m.id}, nil
}

// contentDedupID derives a deduplication id from the destination, body and
// delivered headers (Upstash-Content-Based-Deduplication).
func contentDedupID(dest string, spec deliverySpec, body []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", dest, spec.method)
	for _, k := range slices.Sorted(maps.Keys(spec.header)) {
		fmt.Fprintf(h, "%s: %s\n", k, strings.Join(spec.header[k], ","))
	}
	h.Write(body)
	return "content_" + hex.EncodeToString(h.Sum(nil))
}

// batchItem is one element of a POST /v2/batch body. qstash-go v1.0.0 sends
// header values as arrays, other clients as strings; both are accepted.
type batchItem struct {
	Destination string                     `json:"destination"`
	Headers     map[string]json.RawMessage `json:"headers"`
	Body        string                     `json:"body"`
	Queue       string                     `json:"queue"`
}

func (s *Server) handleBatch(req apiRequest, rest string) (int, any, *apiError) {
	if rest != "" {
		return 0, nil, errorf(http.StatusNotFound, "not found: %s /v2/batch/%s", req.r.Method, rest)
	}
	if req.r.Method != http.MethodPost {
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/batch (use POST)", req.r.Method)
	}
	var items []batchItem
	if err := json.Unmarshal(req.body, &items); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "invalid batch body: want a JSON array of {destination, headers, body}: %v", err)
	}
	out := make([]any, 0, len(items))
	for i, it := range items {
		h := http.Header{}
		bad := ""
		for k, raw := range it.Headers {
			var one string
			var many []string
			switch {
			case json.Unmarshal(raw, &one) == nil:
				h.Add(k, one)
			case json.Unmarshal(raw, &many) == nil:
				for _, v := range many {
					h.Add(k, v)
				}
			default:
				bad = k
			}
		}
		switch {
		case bad != "":
			out = append(out, map[string]string{"error": fmt.Sprintf("batch item %d: header %q must be a string or an array of strings", i, bad)})
		case it.Queue != "":
			out = append(out, map[string]string{"error": fmt.Sprintf("batch item %d: queues are not supported by qstashdev", i)})
		default:
			_, resp, aerr := s.publish(it.Destination, h, []byte(it.Body), req.callerIP)
			if aerr != nil {
				out = append(out, map[string]string{"error": fmt.Sprintf("batch item %d: %s", i, aerr.msg)})
				continue
			}
			out = append(out, resp)
		}
	}
	return http.StatusOK, out, nil
}

func (s *Server) handleMessages(req apiRequest, rest string) (int, any, *apiError) {
	if rest == "" {
		if req.r.Method != http.MethodDelete {
			return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/messages (use DELETE to cancel many)", req.r.Method)
		}
		return s.cancelMany(req.body)
	}
	id, err := url.PathUnescape(rest)
	if err != nil || strings.Contains(id, "/") {
		return 0, nil, errorf(http.StatusNotFound, "not found: %s /v2/messages/%s", req.r.Method, rest)
	}
	switch req.r.Method {
	case http.MethodGet:
		s.mu.Lock()
		defer s.mu.Unlock()
		m, ok := s.messages[id]
		if !ok {
			return 0, nil, errorf(http.StatusNotFound, "message %s not found", id)
		}
		return http.StatusOK, m.toJSON(), nil
	case http.MethodDelete:
		if !s.cancel1(id) {
			return 0, nil, errorf(http.StatusNotFound, "message %s not found", id)
		}
		return http.StatusOK, nil, nil
	default:
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/messages/{id} (use GET or DELETE)", req.r.Method)
	}
}

// cancel1 cancels a message; false if it is unknown or finished.
func (s *Server) cancel1(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.cancelLocked(id)
	if ok {
		s.notifyLocked()
	}
	return ok
}

// cancelLocked cancels a pending message at once, or a message in flight
// after its attempt (no further retries). s.mu must be held.
func (s *Server) cancelLocked(id string) bool {
	m, ok := s.messages[id]
	if !ok {
		return false
	}
	if m.state == StateActive {
		m.cancelRequested = true
		s.log.Info("cancel requested for message in flight", "messageId", id)
		return true
	}
	m.state = StateCancelled
	delete(s.messages, id)
	s.stats.Cancelled++
	s.markScheduleStateLocked(m, "FAIL")
	s.log.Info("message cancelled", "messageId", id)
	return true
}

// cancelMany serves DELETE /v2/messages: body {"messageIds": [...]}; an
// empty body or empty list cancels every message, as QStash does.
func (s *Server) cancelMany(body []byte) (int, any, *apiError) {
	var ids []string
	if len(bytes.TrimSpace(body)) > 0 {
		var in map[string]json.RawMessage
		if err := json.Unmarshal(body, &in); err != nil {
			return 0, nil, errorf(http.StatusBadRequest, "invalid body: want {\"messageIds\": [...]}: %v", err)
		}
		for k, v := range in {
			if k != "messageIds" {
				return 0, nil, errorf(http.StatusBadRequest, "filter %q is not supported by qstashdev (only messageIds)", k)
			}
			if err := json.Unmarshal(v, &ids); err != nil {
				return 0, nil, errorf(http.StatusBadRequest, "invalid messageIds: %v", err)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(ids) == 0 {
		for id := range s.messages {
			ids = append(ids, id)
		}
	}
	n := 0
	for _, id := range ids {
		if s.cancelLocked(id) {
			n++
		}
	}
	s.notifyLocked()
	return http.StatusOK, map[string]int{"cancelled": n}, nil
}

// isURLish reports whether a schedules path remainder is a destination URL
// rather than a schedule id.
func isURLish(rest string) bool {
	l := strings.ToLower(rest)
	return strings.HasPrefix(l, "http:") || strings.HasPrefix(l, "https:")
}

func (s *Server) handleSchedules(req apiRequest, rest string) (int, any, *apiError) {
	method := req.r.Method
	switch {
	case rest == "":
		if method != http.MethodGet {
			return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/schedules (GET lists; POST /v2/schedules/<destination> creates)", method)
		}
		return http.StatusOK, s.listSchedulesJSON(), nil
	case method == http.MethodPost && isURLish(rest):
		return s.createSchedule(req, destinationFrom(rest, req.query))
	}
	idPart, action, hasAction := strings.Cut(rest, "/")
	id, err := url.PathUnescape(idPart)
	if err != nil {
		return 0, nil, errorf(http.StatusNotFound, "not found: %s /v2/schedules/%s", method, rest)
	}
	if hasAction {
		if method != http.MethodPatch && method != http.MethodPost {
			return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/schedules/{id}/%s (use PATCH or POST)", method, action)
		}
		switch action {
		case "pause":
			return s.setPaused(id, true)
		case "resume":
			return s.setPaused(id, false)
		default:
			return 0, nil, errorf(http.StatusNotFound, "not found: %s /v2/schedules/%s", method, rest)
		}
	}
	switch method {
	case http.MethodGet:
		s.mu.Lock()
		defer s.mu.Unlock()
		sc, ok := s.schedules[id]
		if !ok {
			return 0, nil, errorf(http.StatusNotFound, "schedule %s not found", id)
		}
		return http.StatusOK, sc.toJSON(), nil
	case http.MethodDelete:
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.schedules[id]; !ok {
			return 0, nil, errorf(http.StatusNotFound, "schedule %s not found", id)
		}
		delete(s.schedules, id)
		s.notifyLocked()
		s.log.Info("schedule deleted", "scheduleId", id)
		return http.StatusOK, nil, nil
	case http.MethodPost:
		return 0, nil, errorf(http.StatusBadRequest, "invalid schedule destination %q: must be an http:// or https:// URL", rest)
	default:
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/schedules/{id} (use GET or DELETE)", method)
	}
}

func (s *Server) listSchedulesJSON() []scheduleJSON {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]scheduleJSON, 0, len(s.schedules))
	for _, sc := range s.sortedSchedulesLocked() {
		out = append(out, sc.toJSON())
	}
	return out
}

// sortedSchedulesLocked returns the schedules by creation time, then id.
func (s *Server) sortedSchedulesLocked() []*schedule {
	out := make([]*schedule, 0, len(s.schedules))
	for _, sc := range s.schedules {
		out = append(out, sc)
	}
	slices.SortFunc(out, func(a, b *schedule) int {
		return cmp.Or(a.createdAt.Compare(b.createdAt), strings.Compare(a.id, b.id))
	})
	return out
}

// createSchedule serves POST /v2/schedules/<destination>: Upstash-Cron is
// required; Upstash-Schedule-Id upserts.
func (s *Server) createSchedule(req apiRequest, dest string) (int, any, *apiError) {
	if err := validDestination(dest); err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	h := req.r.Header
	cronExpr := strings.TrimSpace(h.Get("Upstash-Cron"))
	if cronExpr == "" {
		return 0, nil, errorf(http.StatusBadRequest, "Upstash-Cron header is required to create a schedule")
	}
	spec, err := parseCron(cronExpr)
	if err != nil {
		return 0, nil, errorf(http.StatusBadRequest, "%v", err)
	}
	ds, aerr := s.parseDeliverySpec(h)
	if aerr != nil {
		return 0, nil, aerr
	}
	id := strings.TrimSpace(h.Get("Upstash-Schedule-Id"))
	if id != "" && !validScheduleID(id) {
		return 0, nil, errorf(http.StatusBadRequest, "invalid Upstash-Schedule-Id %q: use only letters, digits, '-', '.' and '_'", id)
	}

	s.mu.Lock()
	now := s.clock.Now()
	sc := &schedule{
		cron: cronExpr, spec: spec, destination: dest, method: ds.method, header: ds.header,
		body: bytes.Clone(req.body), retries: ds.retries, delay: ds.delay, timeout: ds.timeout,
		callerIP: req.callerIP, createdAt: now, next: spec.Next(now.UTC()),
	}
	updated := false
	if id == "" {
		id = newID("scd_", 28)
	} else if old, ok := s.schedules[id]; ok {
		// Upsert: settings are replaced; creation time, pause state and the
		// last run are kept.
		sc.createdAt, sc.paused, sc.last, sc.lastStates = old.createdAt, old.paused, old.last, old.lastStates
		updated = true
	}
	sc.id = id
	s.schedules[id] = sc
	never := sc.next.IsZero()
	s.notifyLocked()
	s.mu.Unlock()
	s.poke()
	if never {
		s.log.Warn("schedule's cron never matches; it will not fire", "scheduleId", id, "cron", cronExpr)
	}
	s.log.Info("schedule saved", "scheduleId", id, "cron", cronExpr, "destination", dest, "updated", updated)
	return http.StatusOK, map[string]string{"scheduleId": id}, nil
}

// setPaused pauses or resumes a schedule. Doing it twice has no effect.
func (s *Server) setPaused(id string, paused bool) (int, any, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.schedules[id]
	if !ok {
		return 0, nil, errorf(http.StatusNotFound, "schedule %s not found", id)
	}
	if sc.paused != paused {
		sc.paused = paused
		if !paused {
			// Ticks missed while paused are not made up.
			if now := s.clock.Now(); !sc.next.IsZero() && !sc.next.After(now) {
				sc.next = sc.spec.Next(now.UTC())
			}
		}
		s.notifyLocked()
		s.log.Info("schedule paused state changed", "scheduleId", id, "paused", paused)
	}
	return http.StatusOK, nil, nil
}

// signingKeysJSON is QStash's {"current","next"} answer.
type signingKeysJSON struct {
	Current string `json:"current"`
	Next    string `json:"next"`
}

func (s *Server) handleKeys(req apiRequest, rest string) (int, any, *apiError) {
	switch {
	case rest == "" && req.r.Method == http.MethodGet:
		cur, next := s.SigningKeys()
		return http.StatusOK, signingKeysJSON{Current: cur, Next: next}, nil
	case rest == "rotate":
		return s.handleRotate(req)
	case rest == "":
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on /v2/keys (use GET)", req.r.Method)
	default:
		return 0, nil, errorf(http.StatusNotFound, "not found: %s /v2/keys/%s", req.r.Method, rest)
	}
}

func (s *Server) handleRotate(req apiRequest) (int, any, *apiError) {
	if req.r.Method != http.MethodPost {
		return 0, nil, errorf(http.StatusMethodNotAllowed, "method %s not allowed on key rotation (use POST)", req.r.Method)
	}
	cur, next, err := s.RotateKeys()
	if err != nil {
		return 0, nil, errorf(http.StatusInternalServerError, "%v", err)
	}
	return http.StatusOK, signingKeysJSON{Current: cur, Next: next}, nil
}
