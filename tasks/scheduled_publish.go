package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeScheduledPublish publishes one post to several accounts at a time
// (create it with scheduledFor): one social_publish_* child per target.
const TypeScheduledPublish = "scheduled_publish"

// Scheduled publish bounds.
const (
	ScheduledPublishMaxTargets = 10
	scheduledPublishPoll       = time.Minute
)

// PublishTarget is one account to publish to.
type PublishTarget struct {
	// Network is "instagram" or "facebook".
	Network string `json:"network"`
	// AccountID is the Instagram user id or the Facebook Page id.
	AccountID string `json:"accountId"`
	// AccessToken is secret: encrypted at rest, never returned.
	AccessToken string `json:"accessToken"`
}

// ScheduledPublishPayload is a scheduled_publish job's payload.
type ScheduledPublishPayload struct {
	Caption   string          `json:"caption"`
	MediaURLs []string        `json:"mediaUrls"`
	Targets   []PublishTarget `json:"targets"`
}

// TargetOutcome reports one target of the result.
type TargetOutcome struct {
	Network   string          `json:"network"`
	AccountID string          `json:"accountId"`
	JobID     int64           `json:"jobId"`
	Status    models.Status   `json:"status"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// ScheduledPublishResult is a scheduled_publish job's result: one outcome
// per target, in order.
type ScheduledPublishResult struct {
	Published int             `json:"published"`
	Failed    int             `json:"failed"`
	Targets   []TargetOutcome `json:"targets"`
}

// ScheduledPublish is the scheduled_publish handler. It completes when
// every target has been tried, reporting each; it fails only when every
// target failed.
type ScheduledPublish struct{}

var (
	_ jobs.Handler          = ScheduledPublish{}
	_ jobs.PayloadValidator = ScheduledPublish{}
	_ jobs.SecretFielder    = ScheduledPublish{}
)

// NewScheduledPublish returns the handler.
func NewScheduledPublish() ScheduledPublish { return ScheduledPublish{} }

// SecretFields marks every target's access token secret.
func (ScheduledPublish) SecretFields() []string { return []string{"targets[].accessToken"} }

func parseScheduledPublish(payload []byte) (ScheduledPublishPayload, error) {
	var out ScheduledPublishPayload
	p, err := parseAIPayload(payload, TypeScheduledPublish,
		`{"caption":"Hello","mediaUrls":["https://cdn.example.com/a.jpg"],"targets":[{"network":"instagram","accountId":"1784…","accessToken":"…"}]}`,
		"caption", "mediaUrls", "targets")
	if err != nil {
		return out, err
	}
	out.Caption = p.str("caption", false, InstagramMaxCaptionRunes)
	if raw, ok := p.raw("mediaUrls"); ok {
		if json.Unmarshal(raw, &out.MediaURLs) != nil {
			p.fail("mediaUrls", "must be an array of https URLs")
		} else if len(out.MediaURLs) > 10 {
			p.fail("mediaUrls", "must have at most 10 URLs")
		}
		for i, u := range out.MediaURLs {
			if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
				p.fail(fmt.Sprintf("mediaUrls[%d]", i), "must be an https URL")
			}
		}
	}
	raw, ok := p.raw("targets")
	switch {
	case !ok:
		p.fail("targets", "is required")
	case json.Unmarshal(raw, &out.Targets) != nil:
		p.fail("targets", `must be an array of {"network","accountId","accessToken"}`)
	case len(out.Targets) == 0 || len(out.Targets) > ScheduledPublishMaxTargets:
		p.fail("targets", fmt.Sprintf("must have 1 to %d targets", ScheduledPublishMaxTargets))
	}
	for i, t := range out.Targets {
		f := fmt.Sprintf("targets[%d]", i)
		switch t.Network {
		case "instagram":
			if len(out.MediaURLs) == 0 {
				p.fail(f+".network", "instagram needs at least one of mediaUrls")
			}
		case "facebook":
			if out.Caption == "" && len(out.MediaURLs) == 0 {
				p.fail(f+".network", "facebook needs a caption or mediaUrls")
			}
		default:
			p.fail(f+".network", `must be "instagram" or "facebook"`)
		}
		if t.AccountID == "" || strings.Trim(t.AccountID, "0123456789") != "" {
			p.fail(f+".accountId", "must be a numeric account id")
		}
		if strings.TrimSpace(t.AccessToken) == "" {
			p.fail(f+".accessToken", "is required")
		}
	}
	return out, p.err(TypeScheduledPublish)
}

// ValidatePayload checks the payload at create time.
func (ScheduledPublish) ValidatePayload(payload json.RawMessage) error {
	_, err := parseScheduledPublish(payload)
	return err
}

// Handle creates one publishing child per target (once), waits for them,
// and reports each target.
func (ScheduledPublish) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	p, err := parseScheduledPublish(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	specs := make([]jobs.ChildSpec, len(p.Targets))
	for i, t := range p.Targets {
		var payload map[string]any
		var typ string
		if t.Network == "instagram" {
			typ = TypeSocialPublishInstagram
			payload = map[string]any{"igUserId": t.AccountID, "accessToken": t.AccessToken, "imageUrls": p.MediaURLs, "caption": p.Caption}
		} else {
			typ = TypeSocialPublishFacebook
			payload = map[string]any{"pageId": t.AccountID, "accessToken": t.AccessToken}
			if p.Caption != "" {
				payload["message"] = p.Caption
			}
			if len(p.MediaURLs) > 0 {
				payload["imageUrls"] = p.MediaURLs
			}
		}
		raw, err := json.Marshal(payload)
		if err != nil {
			return nil, jobs.Permanent(err)
		}
		specs[i] = jobs.ChildSpec{Type: typ, Payload: raw, Priority: job.Priority}
	}
	if _, err := jobs.SpawnChildren(ctx, specs); err != nil {
		return nil, err
	}
	children, err := jobs.AwaitChildren(ctx, scheduledPublishPoll)
	if err != nil {
		return nil, err
	}
	if len(children) != len(p.Targets) {
		return nil, fmt.Errorf("scheduled_publish: %d children found, %d expected", len(children), len(p.Targets))
	}
	var res ScheduledPublishResult
	var reasons []string
	for i, c := range children {
		o := TargetOutcome{Network: p.Targets[i].Network, AccountID: p.Targets[i].AccountID, JobID: c.ID, Status: c.Status}
		if c.Status == models.StatusCompleted {
			o.Result = json.RawMessage(c.Result)
			res.Published++
		} else {
			o.Error = c.Error
			res.Failed++
			reasons = append(reasons, fmt.Sprintf("%s %s: %s", o.Network, o.AccountID, c.Error))
		}
		res.Targets = append(res.Targets, o)
	}
	if res.Published == 0 {
		return nil, jobs.Permanent(fmt.Errorf("every target failed: %s", strings.Join(reasons, "; ")))
	}
	return json.Marshal(res)
}
