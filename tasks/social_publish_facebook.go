package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
	"unicode/utf8"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeSocialPublishFacebook is the job type that publishes a post to a
// Facebook Page: text/link, one photo, or several photos.
const TypeSocialPublishFacebook = "social_publish_facebook"

// FacebookMaxMessageRunes is the longest Page post message accepted.
const FacebookMaxMessageRunes = 63206

// SocialPublishFacebookPayload is the payload of a social_publish_facebook
// job, such as
//
//	{"pageId": "102030405060708", "accessToken": "EAAB…",
//	 "message": "Hello", "imageUrls": ["https://cdn.example.com/a.jpg"]}
//
// With no imageUrls it is a text post (message and/or link); with one, a
// photo post with message as its caption; with 2–10, one post with the
// photos attached in order. link cannot be combined with imageUrls.
// accessToken (a Page token with pages_manage_posts) is a secret field.
type SocialPublishFacebookPayload struct {
	PageID      string   `json:"pageId"`
	AccessToken string   `json:"accessToken"`
	Message     string   `json:"message"`
	Link        string   `json:"link"`
	ImageURLs   []string `json:"imageUrls"`
}

// SocialPublishFacebookResult is the result of a social_publish_facebook
// job.
type SocialPublishFacebookResult struct {
	// Publish is "published" (this job posted once) or "adopted" (found
	// already posted by an earlier attempt whose outcome was lost; not
	// posted again).
	Publish string `json:"publish"`
	// PostID is the Page post id ("<pageid>_<postid>").
	PostID string `json:"postId"`
	// PhotoIDs are the uploaded photos, in order (photo posts only).
	PhotoIDs []string `json:"photoIds,omitempty"`
}

// facebookCheckpoint is the progress saved after every photo upload; the
// post itself is a jobs.Effect. Posting and PostID are only read: versions
// before Effect set Posting just before the post call (a retry finding it
// set without a PostID fails rather than risk a second post, as those
// versions did) and saved PostID after it.
type facebookCheckpoint struct {
	Photos  []string `json:"photos,omitempty"`
	Posting bool     `json:"posting,omitempty"`
	PostID  string   `json:"postId,omitempty"`
}

// SocialPublishFacebook handles social_publish_facebook jobs. Build it with
// NewSocialPublishFacebook; it is safe for concurrent use.
type SocialPublishFacebook struct {
	cfg    GraphConfig
	effect EffectRunner
}

// NewSocialPublishFacebook returns the handler, with cfg's defaults filled
// in.
func NewSocialPublishFacebook(cfg GraphConfig) *SocialPublishFacebook {
	return &SocialPublishFacebook{cfg: cfg.withDefaults(), effect: jobs.Effect}
}

// WithEffect returns a copy of h that runs its post step through run
// instead of jobs.Effect (which needs a worker's context), as tests that
// call Handle directly do; nil is jobs.Effect.
func (h *SocialPublishFacebook) WithEffect(run EffectRunner) *SocialPublishFacebook {
	c := *h
	c.effect = orEffect(run)
	return &c
}

// SecretFields marks accessToken secret (jobs.SecretFielder).
func (h *SocialPublishFacebook) SecretFields() []string { return []string{"accessToken"} }

// Timeout returns the job timeout: the configured Timeout plus a margin.
func (h *SocialPublishFacebook) Timeout() time.Duration { return h.cfg.Timeout + jobTimeoutMargin }

// ValidatePayload checks a payload; it returns a *jobs.ValidationError with
// Code "invalid_payload" naming each bad field. It never quotes the token.
func (h *SocialPublishFacebook) ValidatePayload(payload json.RawMessage) error {
	_, err := parseFacebookPayload(payload)
	return err
}

func parseFacebookPayload(payload []byte) (*SocialPublishFacebookPayload, error) {
	var p SocialPublishFacebookPayload
	problems, verr := decodeGraphPayload(payload, map[string]any{
		"pageId": &p.PageID, "accessToken": &p.AccessToken, "message": &p.Message, "link": &p.Link, "imageUrls": &p.ImageURLs,
	}, `{"pageId": "1020…", "accessToken": "…", "message": "…", "link": "https://…", "imageUrls": ["https://…/a.jpg"]}`)
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
	if p.PageID == "" {
		add("pageId", "is required")
	} else {
		add("pageId", checkGraphID(p.PageID))
	}
	add("accessToken", graphCheckToken(p.AccessToken))
	if n := utf8.RuneCountInString(p.Message); n > FacebookMaxMessageRunes {
		add("message", fmt.Sprintf("has %d characters; at most %d", n, FacebookMaxMessageRunes))
	}
	if p.Link != "" {
		add("link", graphCheckURL(p.Link, true))
		if len(p.ImageURLs) > 0 {
			add("link", "cannot be combined with imageUrls; put the link in message")
		}
	}
	switch n := len(p.ImageURLs); {
	case bad("imageUrls"):
	case n > graphMaxImages:
		add("imageUrls", fmt.Sprintf("has %d URLs; at most %d", n, graphMaxImages))
	default:
		for i, u := range p.ImageURLs {
			if msg := graphCheckURL(u, false); msg != "" {
				problems = append(problems, jobs.FieldError{Field: fmt.Sprintf("imageUrls[%d]", i), Message: msg})
			}
		}
	}
	if p.Message == "" && p.Link == "" && len(p.ImageURLs) == 0 && !bad("message") && !bad("link") && !bad("imageUrls") {
		add("message", "is required when there is no link and no imageUrls")
	}
	if len(problems) > 0 {
		return nil, &jobs.ValidationError{Code: "invalid_payload", Message: "invalid social_publish_facebook payload", Fields: problems}
	}
	return &p, nil
}

// Handle publishes the post and returns a SocialPublishFacebookResult.
//
// Text/link: POST /{page}/feed with message and link. One photo: POST
// /{page}/photos with url and caption. Several: each photo is uploaded with
// published=false (ids checkpointed one by one), then POST /{page}/feed
// with message and attached_media[i]={"media_fbid":"<id>"} in order.
//
// Errors are classified as for social_publish_instagram. A retry never
// uploads a photo twice (the checkpoint) nor posts twice: the post call is
// a jobs.Effect (name "page_post", key the Page id), its intent recorded
// before the call and the post id after it. A retry whose earlier attempt
// may have posted without recording it (the process died; the request was
// sent, then timed out, was reset or answered unreadably; the id write
// failed) checks the Page's recent posts (GET
// /{page}/published_posts?fields=id,message,created_time) for one with the
// same message created no earlier than the intent (less a skew of
// graphEffectSkew): found, it adopts that post (result "publish":
// "adopted"); not found, it posts.
func (h *SocialPublishFacebook) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	return runGraphJob(ctx, h.cfg, TypeSocialPublishFacebook, job, parseFacebookPayload,
		func(p *SocialPublishFacebookPayload) string { return p.AccessToken }, h.run)
}

func (h *SocialPublishFacebook) run(ctx context.Context, c *graphClient, p *SocialPublishFacebookPayload, cp *facebookCheckpoint) (*SocialPublishFacebookResult, error) {
	publish := PublishPublished
	result := func() *SocialPublishFacebookResult {
		return &SocialPublishFacebookResult{Publish: publish, PostID: cp.PostID, PhotoIDs: cp.Photos}
	}
	if cp.PostID != "" {
		return result(), nil
	}
	if cp.Posting {
		return nil, jobs.Permanent(errors.New("social_publish_facebook: an earlier attempt's post request ended without a readable answer; not posting again to avoid a duplicate (check the Page)"))
	}
	save := func() error {
		if err := h.cfg.SaveCheckpoint(ctx, cp); err != nil {
			return fmt.Errorf("social_publish_facebook: %w", err)
		}
		return nil
	}
	// post makes the call that creates the post, once (jobs.Effect):
	// its id is the post's (for a photo post, post_id; id is the photo).
	post := func(what, path string, form url.Values) error {
		out, err := h.effect(ctx, "page_post", p.PageID, func(ctx context.Context) (string, error) {
			var out struct {
				ID     string `json:"id"`
				PostID string `json:"post_id"`
			}
			if err := c.post(ctx, what, path, form, &out); err != nil {
				return "", err
			}
			if out.PostID != "" && out.ID != "" {
				cp.Photos = []string{out.ID}
				return out.PostID, nil
			}
			if out.ID == "" {
				return "", fmt.Errorf("graph: %s: %w: no id", what, errGraphResponse)
			}
			return out.ID, nil
		}, func(ctx context.Context, in jobs.EffectIntent) (string, bool, error) {
			return h.findPost(ctx, c, p, in)
		})
		if err != nil {
			return err
		}
		cp.PostID, publish = out.ProviderID, publishState(out)
		return nil
	}
	switch len(p.ImageURLs) {
	case 0:
		form := url.Values{}
		if p.Message != "" {
			form.Set("message", p.Message)
		}
		if p.Link != "" {
			form.Set("link", p.Link)
		}
		if err := post("create post", p.PageID+"/feed", form); err != nil {
			return nil, err
		}
	case 1:
		form := url.Values{"url": {p.ImageURLs[0]}}
		if p.Message != "" {
			form.Set("caption", p.Message)
		}
		if err := post("create photo post", p.PageID+"/photos", form); err != nil {
			return nil, err
		}
	default:
		if len(cp.Photos) > len(p.ImageURLs) {
			return nil, jobs.Permanent(errors.New("social_publish_facebook: checkpoint has more photos than the payload"))
		}
		for i := len(cp.Photos); i < len(p.ImageURLs); i++ {
			var photo struct {
				ID string `json:"id"`
			}
			what := fmt.Sprintf("upload photo %d", i)
			if err := c.post(ctx, what, p.PageID+"/photos", url.Values{"url": {p.ImageURLs[i]}, "published": {"false"}}, &photo); err != nil {
				return nil, err
			}
			if photo.ID == "" {
				return nil, fmt.Errorf("graph: %s: %w: no id", what, errGraphResponse)
			}
			cp.Photos = append(cp.Photos, photo.ID)
			if err := save(); err != nil {
				return nil, err
			}
		}
		form := url.Values{}
		if p.Message != "" {
			form.Set("message", p.Message)
		}
		for i, id := range cp.Photos {
			b, _ := json.Marshal(map[string]string{"media_fbid": id})
			form.Set(fmt.Sprintf("attached_media[%d]", i), string(b))
		}
		if err := post("create multi-photo post", p.PageID+"/feed", form); err != nil {
			return nil, err
		}
	}
	return result(), nil
}

// findPost is the check of the post step: the Page's recent posts, for
// one with the payload's message (a photo post's caption) created no
// earlier than the intent, less graphEffectSkew.
func (h *SocialPublishFacebook) findPost(ctx context.Context, c *graphClient, p *SocialPublishFacebookPayload, in jobs.EffectIntent) (string, bool, error) {
	entries, err := graphRecentSince(ctx, c, "recent posts", p.PageID+"/published_posts", "message", "created_time", in.At)
	if err != nil {
		return "", false, err
	}
	id, ok := matchRecent(entries, p.Message, in)
	return id, ok, nil
}
