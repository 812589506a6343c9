package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeSocialPublishInstagram is the job type that publishes an image post
// or a carousel to an Instagram professional account through the Graph
// API's content publishing flow.
const TypeSocialPublishInstagram = "social_publish_instagram"

// InstagramMaxCaptionRunes is the longest caption Instagram accepts.
const InstagramMaxCaptionRunes = 2200

// SocialPublishInstagramPayload is the payload of a social_publish_instagram
// job, such as
//
//	{"igUserId": "17841400000000001", "accessToken": "EAAB…",
//	 "imageUrls": ["https://cdn.example.com/a.jpg"], "caption": "Hello"}
//
// accessToken is a secret field: encrypted at rest, never returned.
type SocialPublishInstagramPayload struct {
	// IGUserID is the Instagram professional account id (required).
	IGUserID string `json:"igUserId"`
	// AccessToken is the token with instagram_content_publish (required).
	AccessToken string `json:"accessToken"`
	// ImageURLs are public https JPEG URLs: one for a single image post,
	// 2–10 for a carousel, in order.
	ImageURLs []string `json:"imageUrls"`
	// Caption is at most 2200 characters.
	Caption string `json:"caption"`
}

// The values of a publishing result's "publish" field.
const (
	// PublishPublished: the job published the post once; its id is in
	// the result.
	PublishPublished = "published"
	// PublishAdopted: an earlier attempt published the post and its
	// outcome was lost (the process died, the answer or the write of the
	// id was lost); the retry found it already published at Graph and
	// adopted its id instead of publishing again.
	PublishAdopted = "adopted"
)

// publishState names an Effect's outcome for a result's "publish" field.
func publishState(o jobs.EffectOutcome) string {
	if o.Adopted() {
		return PublishAdopted
	}
	return PublishPublished
}

// EffectRunner runs a publisher's irreversible step once: jobs.Effect,
// unless a test outside a worker sets another (WithEffect).
type EffectRunner func(ctx context.Context, name, key string, do jobs.EffectFunc, check jobs.EffectCheckFunc) (jobs.EffectOutcome, error)

// orEffect is run, or jobs.Effect when run is nil.
func orEffect(run EffectRunner) EffectRunner {
	if run == nil {
		return jobs.Effect
	}
	return run
}

// graphEffectSkew is how much earlier than an intent's time a post found
// by a check may be stamped by Graph and still be the intent's: the two
// clocks differ.
const graphEffectSkew = 2 * time.Minute

// A check reads the recent media or posts newest first, graphLookupLimit
// a page, until it reaches one older than the intent (less the skew); at
// most graphLookupPages pages, beyond which it cannot tell (an error: the
// job retries).
const (
	graphLookupLimit = "100"
	graphLookupPages = 5
)

// graphTime parses a Graph time (timestamp, created_time), such as
// 2026-11-28T12:00:00+0000.
func graphTime(v string) (time.Time, bool) {
	for _, layout := range []string{"2006-01-02T15:04:05-0700", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// graphRecent is one entry of a recent media or posts listing.
type graphRecent struct {
	ID   string
	Text string
	At   string
}

// graphRecentSince reads a listing of recent media or posts (newest
// first; GET path?fields=id,<text>,<time>), following its paging, until it
// holds the entries no older than since less graphEffectSkew.
func graphRecentSince(ctx context.Context, c *graphClient, what, path, textField, timeField string, since time.Time) ([]graphRecent, error) {
	var out []graphRecent
	q := url.Values{"fields": {"id," + textField + "," + timeField}, "limit": {graphLookupLimit}}
	for range graphLookupPages {
		var list struct {
			Data   []map[string]any `json:"data"`
			Paging struct {
				Cursors struct {
					After string `json:"after"`
				} `json:"cursors"`
				Next string `json:"next"`
			} `json:"paging"`
		}
		if err := c.get(ctx, what, path, q, &list); err != nil {
			return nil, err
		}
		older := false
		for _, m := range list.Data {
			e := graphRecent{}
			e.ID, _ = m["id"].(string)
			e.Text, _ = m[textField].(string)
			e.At, _ = m[timeField].(string)
			out = append(out, e)
			if at, ok := graphTime(e.At); ok && at.Before(since.Add(-graphEffectSkew)) {
				older = true
			}
		}
		if older || list.Paging.Next == "" || list.Paging.Cursors.After == "" {
			return out, nil
		}
		q.Set("after", list.Paging.Cursors.After)
	}
	return nil, fmt.Errorf("graph: %s: more than %d pages since %s; cannot tell whether the post went out", what, graphLookupPages, since.UTC().Format(time.RFC3339))
}

// matchRecent returns the earliest entry of a listing whose text is text,
// whose time is no earlier than the intent's less graphEffectSkew, and
// which no other job took (the intent's Taken).
func matchRecent(entries []graphRecent, text string, in jobs.EffectIntent) (string, bool) {
	var id string
	var best time.Time
	for _, e := range entries {
		at, ok := graphTime(e.At)
		if !ok || e.Text != text || at.Before(in.At.Add(-graphEffectSkew)) || in.Taken[e.ID] {
			continue
		}
		if id == "" || at.Before(best) {
			id, best = e.ID, at
		}
	}
	return id, id != ""
}

// SocialPublishInstagramResult is the result of a social_publish_instagram
// job.
type SocialPublishInstagramResult struct {
	// Publish is "published" (this job published the post once) or
	// "adopted" (found already published by an earlier attempt whose
	// outcome was lost; not published again).
	Publish string `json:"publish"`
	// MediaID is the published Instagram media id.
	MediaID string `json:"mediaId"`
	// Permalink is the post's URL, when Graph returned it.
	Permalink string `json:"permalink,omitempty"`
	// ContainerID is the published container (the carousel container for
	// a carousel).
	ContainerID string `json:"containerId"`
	// Children are the carousel item containers, in order.
	Children []string `json:"children,omitempty"`
}

// instagramCheckpoint is the progress saved after every container, so
// that a retry never creates a container twice; the publish itself is a
// jobs.Effect. MediaID is only read: versions before Effect saved it after
// the publish.
type instagramCheckpoint struct {
	Children  []string `json:"children,omitempty"`
	Container string   `json:"container,omitempty"`
	MediaID   string   `json:"mediaId,omitempty"`
	Permalink string   `json:"permalink,omitempty"`
}

// SocialPublishInstagram handles social_publish_instagram jobs. Build it
// with NewSocialPublishInstagram; it is safe for concurrent use.
type SocialPublishInstagram struct {
	cfg    GraphConfig
	effect EffectRunner
}

// NewSocialPublishInstagram returns the handler, with cfg's defaults filled
// in.
func NewSocialPublishInstagram(cfg GraphConfig) *SocialPublishInstagram {
	return &SocialPublishInstagram{cfg: cfg.withDefaults(), effect: jobs.Effect}
}

// WithEffect returns a copy of h that runs its media_publish step through
// run instead of jobs.Effect (which needs a worker's context), as tests
// that call Handle directly do; nil is jobs.Effect.
func (h *SocialPublishInstagram) WithEffect(run EffectRunner) *SocialPublishInstagram {
	c := *h
	c.effect = orEffect(run)
	return &c
}

// SecretFields marks accessToken secret (jobs.SecretFielder).
func (h *SocialPublishInstagram) SecretFields() []string { return []string{"accessToken"} }

// Timeout returns the job timeout: the configured Timeout plus a margin.
func (h *SocialPublishInstagram) Timeout() time.Duration { return h.cfg.Timeout + jobTimeoutMargin }

// ValidatePayload checks a payload; it returns a *jobs.ValidationError with
// Code "invalid_payload" naming each bad field. It never quotes the token.
func (h *SocialPublishInstagram) ValidatePayload(payload json.RawMessage) error {
	_, err := parseInstagramPayload(payload)
	return err
}

func parseInstagramPayload(payload []byte) (*SocialPublishInstagramPayload, error) {
	var p SocialPublishInstagramPayload
	problems, verr := decodeGraphPayload(payload, map[string]any{
		"igUserId": &p.IGUserID, "accessToken": &p.AccessToken, "imageUrls": &p.ImageURLs, "caption": &p.Caption,
	}, `{"igUserId": "178414…", "accessToken": "…", "imageUrls": ["https://…/a.jpg"], "caption": "…"}`)
	if verr != nil {
		return nil, verr
	}
	bad := func(field string) bool {
		for _, f := range problems {
			if f.Field == field {
				return true
			}
		}
		return false
	}
	add := func(field, msg string) {
		if msg != "" && !bad(field) {
			problems = append(problems, jobs.FieldError{Field: field, Message: msg})
		}
	}
	if p.IGUserID == "" {
		add("igUserId", "is required")
	} else {
		add("igUserId", checkGraphID(p.IGUserID))
	}
	add("accessToken", graphCheckToken(p.AccessToken))
	switch n := len(p.ImageURLs); {
	case bad("imageUrls"):
	case n == 0:
		add("imageUrls", "is required: one URL for an image post, 2 to 10 for a carousel")
	case n > graphMaxImages:
		add("imageUrls", fmt.Sprintf("has %d URLs; a carousel takes at most %d", n, graphMaxImages))
	default:
		for i, u := range p.ImageURLs {
			if msg := graphCheckURL(u, false); msg != "" {
				problems = append(problems, jobs.FieldError{Field: fmt.Sprintf("imageUrls[%d]", i), Message: msg})
			}
		}
	}
	if n := utf8.RuneCountInString(p.Caption); n > InstagramMaxCaptionRunes {
		add("caption", fmt.Sprintf("has %d characters; at most %d", n, InstagramMaxCaptionRunes))
	}
	if len(problems) > 0 {
		return nil, &jobs.ValidationError{Code: "invalid_payload", Message: "invalid social_publish_instagram payload", Fields: problems}
	}
	return &p, nil
}

// Handle publishes the post and returns a SocialPublishInstagramResult.
//
// Flow: create the item containers (carousel: is_carousel_item=true), wait
// until each is FINISHED, create the carousel container with the children
// in order, wait until it is FINISHED, then media_publish. The checkpoint
// is saved after each container, so a retry resumes where the last attempt
// stopped. media_publish is a jobs.Effect (name "media_publish", key the
// container id): its intent is recorded before the container's last
// status poll and the call, and the media id after it; a step recorded
// done is not repeated (no Graph call at all). A retry whose earlier attempt published and lost the outcome
// (the process died, the answer was lost, the id write failed) checks
// first: the container's status_code PUBLISHED, then the account's recent
// media (GET /{ig-user}/media?fields=id,caption,timestamp) matched by
// caption and a timestamp no earlier than the intent (less a skew of
// graphEffectSkew) for the media id; it adopts that id instead of
// publishing again (result "publish": "adopted"). A container FINISHED or
// IN_PROGRESS was not published, and is published. A container PUBLISHED
// whose media is not found yet is retried, never published again.
//
// Errors: transient Graph errors (codes 1, 2, 4, 17, 32, 341, 613,
// 80001–80014, is_transient, Instagram's retryable subcodes), 429, 5xx,
// timeouts and a container still IN_PROGRESS after MaxPolls are retried
// (rate limits after Retry-After or a minute); other Graph errors,
// including 190 (token), 100 (parameter), 10/200 (permission), and a
// container in ERROR or EXPIRED, fail the job for good with Graph's message
// and code.
func (h *SocialPublishInstagram) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	return runGraphJob(ctx, h.cfg, TypeSocialPublishInstagram, job, parseInstagramPayload,
		func(p *SocialPublishInstagramPayload) string { return p.AccessToken }, h.run)
}

func (h *SocialPublishInstagram) run(ctx context.Context, c *graphClient, p *SocialPublishInstagramPayload, cp *instagramCheckpoint) (*SocialPublishInstagramResult, error) {
	publish := PublishPublished
	result := func() *SocialPublishInstagramResult {
		return &SocialPublishInstagramResult{Publish: publish, MediaID: cp.MediaID, Permalink: cp.Permalink, ContainerID: cp.Container, Children: cp.Children}
	}
	if cp.MediaID != "" {
		return result(), nil // published by an earlier attempt (a checkpoint from before Effect)
	}
	save := func() error {
		if err := h.cfg.SaveCheckpoint(ctx, cp); err != nil {
			return fmt.Errorf("social_publish_instagram: %w", err)
		}
		return nil
	}
	carousel := len(p.ImageURLs) > 1
	if cp.Container == "" {
		if carousel {
			if len(cp.Children) > len(p.ImageURLs) {
				return nil, jobs.Permanent(errors.New("social_publish_instagram: checkpoint has more carousel items than the payload"))
			}
			for i := len(cp.Children); i < len(p.ImageURLs); i++ {
				id, err := h.createContainer(ctx, c, p.IGUserID, url.Values{
					"image_url":        {p.ImageURLs[i]},
					"is_carousel_item": {"true"},
				}, fmt.Sprintf("create carousel item %d", i))
				if err != nil {
					return nil, err
				}
				cp.Children = append(cp.Children, id)
				if err := save(); err != nil {
					return nil, err
				}
			}
			for i, id := range cp.Children {
				if _, err := h.waitFinished(ctx, c, id, fmt.Sprintf("carousel item %d", i), cp); err != nil {
					return nil, err
				}
			}
			id, err := h.createContainer(ctx, c, p.IGUserID, url.Values{
				"media_type": {"CAROUSEL"},
				"children":   {strings.Join(cp.Children, ",")},
				"caption":    {p.Caption},
			}, "create carousel container")
			if err != nil {
				return nil, err
			}
			cp.Container = id
		} else {
			id, err := h.createContainer(ctx, c, p.IGUserID, url.Values{
				"image_url": {p.ImageURLs[0]},
				"caption":   {p.Caption},
			}, "create image container")
			if err != nil {
				return nil, err
			}
			cp.Container = id
		}
		if err := save(); err != nil {
			return nil, err
		}
	}

	container := cp.Container
	out, err := h.effect(ctx, "media_publish", container, func(ctx context.Context) (string, error) {
		status, err := h.waitFinished(ctx, c, container, "container", cp)
		if err != nil {
			return "", err
		}
		if status == "PUBLISHED" {
			// Published, with no publish of this job recorded: the next
			// attempt's check finds the media and adopts it.
			return "", fmt.Errorf("graph: container %s is already PUBLISHED: %w", container, jobs.ErrEffectUnknown)
		}
		if err := checkPublishingLimit(ctx, c, p.IGUserID); err != nil {
			return "", err // the 24-hour quota is used up: pause the account
		}
		var pub struct {
			ID string `json:"id"`
		}
		if err := c.post(ctx, "media_publish", p.IGUserID+"/media_publish", url.Values{"creation_id": {container}}, &pub); err != nil {
			return "", err
		}
		if pub.ID == "" {
			return "", fmt.Errorf("graph: media_publish: %w: no id", errGraphResponse)
		}
		return pub.ID, nil
	}, func(ctx context.Context, in jobs.EffectIntent) (string, bool, error) {
		return h.findPublished(ctx, c, p, container, in)
	})
	if err != nil {
		return nil, err
	}
	cp.MediaID, publish = out.ProviderID, publishState(out)

	// The permalink is a convenience: a failure to read it does not fail
	// the published job.
	var media struct {
		Permalink string `json:"permalink"`
	}
	if err := c.get(ctx, "read permalink", cp.MediaID, url.Values{"fields": {"permalink"}}, &media); err == nil && media.Permalink != "" {
		cp.Permalink = media.Permalink
	}
	return result(), nil
}

// findPublished is the check of media_publish: whether the container was
// published after all, and its media id. The container's status_code
// decides whether it was (PUBLISHED) or not (FINISHED, IN_PROGRESS); when
// it cannot tell (ERROR, EXPIRED, or Graph refuses to read it) the recent
// media decide alone. The media id comes from the account's recent media,
// matched by caption and time.
func (h *SocialPublishInstagram) findPublished(ctx context.Context, c *graphClient, p *SocialPublishInstagramPayload, container string, in jobs.EffectIntent) (string, bool, error) {
	var st struct {
		StatusCode string `json:"status_code"`
	}
	published := false
	err := c.get(ctx, "status of container", container, url.Values{"fields": {"status_code"}}, &st)
	var ge *GraphError
	switch {
	case err == nil && st.StatusCode == "PUBLISHED":
		published = true
	case err == nil && (st.StatusCode == "FINISHED" || st.StatusCode == "IN_PROGRESS"):
		return "", false, nil
	case err != nil && !(errors.As(err, &ge) && !ge.Retryable()):
		return "", false, err // cannot tell now: retry
	}
	entries, err := graphRecentSince(ctx, c, "recent media", p.IGUserID+"/media", "caption", "timestamp", in.At)
	if err != nil {
		return "", false, err
	}
	if id, ok := matchRecent(entries, p.Caption, in); ok {
		return id, true, nil
	}
	if published {
		return "", false, fmt.Errorf("graph: container %s is PUBLISHED but none of the account's recent media matches its caption since %s; not publishing again",
			container, in.At.UTC().Format(time.RFC3339))
	}
	return "", false, nil
}

func (h *SocialPublishInstagram) createContainer(ctx context.Context, c *graphClient, igUser string, form url.Values, what string) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	if err := c.post(ctx, what, igUser+"/media", form, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", fmt.Errorf("graph: %s: %w: no id", what, errGraphResponse)
	}
	return out.ID, nil
}

// waitFinished polls a container until its status_code is FINISHED or
// PUBLISHED, at most MaxPolls times. ERROR and EXPIRED are permanent: the
// checkpoint is then cleared, so that a manual retry starts afresh.
func (h *SocialPublishInstagram) waitFinished(ctx context.Context, c *graphClient, id, what string, cp *instagramCheckpoint) (string, error) {
	for i := 0; ; i++ {
		var st struct {
			StatusCode string `json:"status_code"`
			Status     string `json:"status"`
		}
		if err := c.get(ctx, "status of "+what, id, url.Values{"fields": {"status_code,status"}}, &st); err != nil {
			return "", err
		}
		switch st.StatusCode {
		case "FINISHED", "PUBLISHED":
			return st.StatusCode, nil
		case "ERROR", "EXPIRED":
			*cp = instagramCheckpoint{}
			if err := h.cfg.SaveCheckpoint(ctx, cp); err != nil {
				return "", fmt.Errorf("social_publish_instagram: %w", err)
			}
			return "", jobs.Permanent(fmt.Errorf("graph: %s %s is %s: %s", what, id, st.StatusCode, c.scrubText(st.Status)))
		case "IN_PROGRESS":
		default:
			return "", fmt.Errorf("graph: status of %s: %w: status_code %q", what, errGraphResponse, st.StatusCode)
		}
		if i+1 >= h.cfg.MaxPolls {
			return "", fmt.Errorf("graph: %s %s still IN_PROGRESS after %d polls", what, id, h.cfg.MaxPolls)
		}
		if err := graphSleep(ctx, h.cfg.PollInterval); err != nil {
			return "", fmt.Errorf("graph: waiting for %s %s: %w", what, id, err)
		}
	}
}
