package graph

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Call kinds of the lookups a publisher makes to find out whether an
// earlier post went through.
const (
	// CallListMedia is GET /{ig-user}/media?fields=id,caption,timestamp:
	// the account's recent media, newest first.
	CallListMedia = "GET ig media list"
	// CallPublishedPosts is GET /{page}/published_posts?fields=id,message,created_time:
	// the Page's recent posts, newest first.
	CallPublishedPosts = "GET published_posts"
)

// TimeLayout is how Graph writes times (timestamp, created_time), such as
// 2026-11-28T12:00:00+0000.
const TimeLayout = "2006-01-02T15:04:05-0700"

// Publication is one post that went out: an Instagram media published
// (media_publish) or a Facebook Page post (/feed, or /photos without
// published=false).
type Publication struct {
	// Kind is the call that published it: CallPublish, CallFeed or
	// CallPhotos.
	Kind string
	// Account is the Instagram user id or the Page id.
	Account string
	// ID is the media id or the Page post id.
	ID string
	// Text is the caption (Instagram) or the message (Facebook; the
	// caption of a photo post).
	Text string
	// At is when it was published, by the fake's clock (see SetClock).
	At time.Time
}

// lookupState is the fake's record of what it published, for the lookups
// and the exactly-once counts. Its fields are guarded by Server.mu, except
// the hook's own lock.
type lookupState struct {
	pubs []Publication
	now  func() time.Time

	hookMu sync.Mutex
	hook   func(Publication)
}

// SetClock makes the fake stamp publications with now instead of
// time.Now (a test's manual clock).
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lookup.now = now
}

// OnPublished sets a hook that runs once per publication, right after the
// post took effect and before the answer is written: a test can kill the
// publishing process there, cut the connection, or note the moment. The
// request waits for the hook to return. nil removes it.
func (s *Server) OnPublished(hook func(Publication)) {
	s.lookup.hookMu.Lock()
	defer s.lookup.hookMu.Unlock()
	s.lookup.hook = hook
}

// Publications returns every post that went out, in order.
func (s *Server) Publications() []Publication {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Publication(nil), s.lookup.pubs...)
}

// PublishedCount returns how many posts went out on one account or Page:
// the count a test asserts exactly-once with.
func (s *Server) PublishedCount(account string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range s.lookup.pubs {
		if p.Account == account {
			n++
		}
	}
	return n
}

// published records a publication; the caller holds s.mu.
func (s *Server) published(kind, account, id, text string) {
	now := time.Now
	if s.lookup.now != nil {
		now = s.lookup.now
	}
	s.lookup.pubs = append(s.lookup.pubs, Publication{Kind: kind, Account: account, ID: id, Text: text, At: now().UTC()})
}

// afterAnswer runs the OnPublished hook for a request whose answer
// (status, body) published something.
func (s *Server) afterAnswer(kind string, status int, body string) {
	if status != http.StatusOK || (kind != CallPublish && kind != CallFeed && kind != CallPhotos) {
		return
	}
	var ids struct {
		ID     string `json:"id"`
		PostID string `json:"post_id"`
	}
	if json.Unmarshal([]byte(body), &ids) != nil {
		return
	}
	id := ids.ID
	if kind == CallPhotos {
		id = ids.PostID // empty for an unpublished photo
	}
	var pub *Publication
	s.mu.Lock()
	for i := range s.lookup.pubs {
		if p := s.lookup.pubs[i]; id != "" && p.ID == id {
			pub = &p
		}
	}
	s.mu.Unlock()
	s.lookup.hookMu.Lock()
	hook := s.lookup.hook
	s.lookup.hookMu.Unlock()
	if pub != nil && hook != nil {
		hook(*pub)
	}
}

// lookupKind names the lookup calls; "" for another call.
func lookupKind(method string, parts []string) string {
	if method != http.MethodGet || len(parts) != 2 {
		return ""
	}
	switch parts[1] {
	case "media":
		return CallListMedia
	case "published_posts":
		return CallPublishedPosts
	}
	return ""
}

// answerLookup serves the lookups, newest first, limit (default 25, at
// most 100) entries a page from the cursor after, in Graph's shape
// {"data":[…],"paging":{"cursors":{"after":…},"next":…}} (paging only
// when more entries follow); the caller holds s.mu. It reports false for
// another call.
func (s *Server) answerLookup(req Request, parts []string) (int, string, bool) {
	var kind, textField, timeField string
	switch req.Kind {
	case CallListMedia:
		kind, textField, timeField = CallPublish, "caption", "timestamp"
	case CallPublishedPosts:
		kind, textField, timeField = "", "message", "created_time"
	default:
		return 0, "", false
	}
	limit := 25
	if v, err := strconv.Atoi(req.Form.Get("limit")); err == nil && v > 0 {
		limit = min(v, 100)
	}
	skip, _ := strconv.Atoi(req.Form.Get("after"))
	data, seen, more := []map[string]string{}, 0, false
	for i := len(s.lookup.pubs) - 1; i >= 0; i-- {
		p := s.lookup.pubs[i]
		if p.Account != parts[0] || (kind == CallPublish) != (p.Kind == CallPublish) {
			continue
		}
		if seen++; seen <= skip {
			continue
		}
		if len(data) == limit {
			more = true
			break
		}
		e := map[string]string{"id": p.ID, timeField: p.At.Format(TimeLayout)}
		if p.Text != "" {
			e[textField] = p.Text // Graph leaves an empty caption or message out
		}
		data = append(data, e)
	}
	out := map[string]any{"data": data}
	if more {
		after := strconv.Itoa(skip + len(data))
		next := url.Values{"fields": {req.Form.Get("fields")}, "limit": {strconv.Itoa(limit)}, "after": {after}}
		out["paging"] = map[string]any{"cursors": map[string]string{"after": after}, "next": s.URL + "/" + req.Version + req.Path + "?" + next.Encode()}
	}
	b, _ := json.Marshal(out)
	return http.StatusOK, string(b), true
}
