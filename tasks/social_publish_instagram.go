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

// SocialPublishInstagramResult is the result of a social_publish_instagram
// job.
type SocialPublishInstagramResult struct {
	// MediaID is the published Instagram media id. It is empty only when an
	// earlier attempt published the container but its answer was lost.
	MediaID string `json:"mediaId"`
	// Permalink is the post's URL, when Graph returned it.
	Permalink string `json:"permalink,omitempty"`
	// ContainerID is the published container (the carousel container for
	// a carousel).
	ContainerID string `json:"containerId"`
	// Children are the carousel item containers, in order.
	Children []string `json:"children,omitempty"`
}

// instagramCheckpoint is the progress saved after every step, so that a
// retry never creates a container twice nor publishes twice.
type instagramCheckpoint struct {
	Children  []string `json:"children,omitempty"`
	Container string   `json:"container,omitempty"`
	MediaID   string   `json:"mediaId,omitempty"`
	Permalink string   `json:"permalink,omitempty"`
}

// SocialPublishInstagram handles social_publish_instagram jobs. Build it
// with NewSocialPublishInstagram; it is safe for concurrent use.
type SocialPublishInstagram struct {
	cfg GraphConfig
}

// NewSocialPublishInstagram returns the handler, with cfg's defaults filled
// in.
func NewSocialPublishInstagram(cfg GraphConfig) *SocialPublishInstagram {
	return &SocialPublishInstagram{cfg: cfg.withDefaults()}
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
// is saved after each container and after the publish, so a retry resumes
// where the last attempt stopped. Before publishing a container an earlier
// attempt created, its status is read: PUBLISHED means the earlier publish
// went through and its answer was lost, so it is not published again. A
// media_publish that never left (Graph unreachable: the error says
// "request never sent") and one whose outcome is unknown (sent, then a
// timeout or reset) are both retried; the status read settles the second.
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
	result := func() *SocialPublishInstagramResult {
		return &SocialPublishInstagramResult{MediaID: cp.MediaID, Permalink: cp.Permalink, ContainerID: cp.Container, Children: cp.Children}
	}
	if cp.MediaID != "" {
		return result(), nil // published by an earlier attempt
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

	status, err := h.waitFinished(ctx, c, cp.Container, "container", cp)
	if err != nil {
		return nil, err
	}
	if status == "PUBLISHED" {
		// An earlier attempt published it and lost the answer.
		return result(), nil
	}

	if err := checkPublishingLimit(ctx, c, p.IGUserID); err != nil {
		return nil, err // the 24-hour quota is used up: pause the account
	}
	var pub struct {
		ID string `json:"id"`
	}
	if err := c.post(ctx, "media_publish", p.IGUserID+"/media_publish", url.Values{"creation_id": {cp.Container}}, &pub); err != nil {
		return nil, err
	}
	if pub.ID == "" {
		return nil, fmt.Errorf("graph: media_publish: %w: no id", errGraphResponse)
	}
	cp.MediaID = pub.ID
	if err := save(); err != nil {
		return nil, err
	}

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
