package tasks

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs"
)

// Flow keys: the external accounts and resources each job type's work is
// limited by (jobs.FlowKeyer). A key is one of these prefixes followed by
// an id; configuration sets limits per prefix, and a provider's signal
// pauses one key. No key carries a secret.
//
//	social_publish_instagram  ig:<igUserId>, graph:app
//	social_publish_facebook   fb:<pageId>, graph:app
//	ai_text_generation        openai:<keyID>:<model>
//	ai_image_generation       openai:<keyID>:<model>
//	web_scraping              host:<hostname>
//	carousel_creation         none (its children have keys)
//	scheduled_publish         none (its children have keys)
const (
	// FlowPrefixInstagram prefixes the key of one Instagram professional
	// account, "ig:17841400000000001": its Business Use Case limits and
	// its 24-hour publishing quota.
	FlowPrefixInstagram = "ig:"
	// FlowPrefixFacebook prefixes the key of one Facebook Page,
	// "fb:102030405060708": its Business Use Case limits.
	FlowPrefixFacebook = "fb:"
	// FlowPrefixGraph prefixes the keys of Meta's platform limits, which
	// count the calls of the whole app.
	FlowPrefixGraph = "graph:"
	// FlowKeyGraphApp is the key every Graph job shares: the Meta app's
	// own rate limit (X-App-Usage, error codes 4 and 341). It is meant to
	// be paused, not limited: give it no concurrency limit.
	FlowKeyGraphApp = FlowPrefixGraph + "app"
	// FlowPrefixOpenAI prefixes the key of one model on one API key,
	// "openai:3f2a9c0b1d4e:gpt-4o-mini": OpenAI limits requests and tokens
	// per model and organization. The key id is OpenAIKeyID of the
	// configured key; the model is the rest of the key (it may itself
	// contain colons, as fine-tuned model names do).
	FlowPrefixOpenAI = "openai:"
	// FlowPrefixHost prefixes the key of one web host, "host:example.com"
	// (the URL's host name, lower-cased, without port or trailing dot).
	FlowPrefixHost = "host:"
)

// openAIKeyIDLength is the number of hex digits of an API key's id.
const openAIKeyIDLength = 12

// OpenAIKeyID names an API key without revealing it: the first 12 hex
// digits of its SHA-256 (the same as `printf %s "$OPENAI_API_KEY" |
// sha256sum | cut -c1-12`), or "none" when no key is configured. 48 bits
// tell keys apart and cannot be turned back into a key.
func OpenAIKeyID(apiKey string) string {
	apiKey = strings.TrimSpace(apiKey)
	if apiKey == "" {
		return "none"
	}
	sum := sha256.Sum256([]byte(apiKey))
	return hex.EncodeToString(sum[:])[:openAIKeyIDLength]
}

// openAIFlowKey is the key of model on the API key with id keyID.
func openAIFlowKey(keyID, model string) string {
	return FlowPrefixOpenAI + keyID + ":" + model
}

// graphAccountField reads the account id field of a Graph payload (igUserId
// or pageId) with the check the handler applies. Only that field is read,
// so a payload whose accessToken is already sealed is read the same way.
func graphAccountField(jobType string, payload []byte, field string) (string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return "", fmt.Errorf("%s flow keys: payload must be a JSON object", jobType)
	}
	var id string
	if raw, ok := fields[field]; !ok || json.Unmarshal(raw, &id) != nil || id == "" {
		return "", fmt.Errorf("%s flow keys: %s is required and must be a string", jobType, field)
	}
	if msg := checkGraphID(id); msg != "" {
		return "", fmt.Errorf("%s flow keys: %s %s", jobType, field, msg)
	}
	return id, nil
}

// graphAccountKey is the flow key of the account a Graph payload publishes
// to, as its handler parsed it.
func graphAccountKey(p any) string {
	switch p := p.(type) {
	case *SocialPublishInstagramPayload:
		return FlowPrefixInstagram + p.IGUserID
	case *SocialPublishFacebookPayload:
		return FlowPrefixFacebook + p.PageID
	}
	return ""
}

// FlowKeys returns the Instagram account's key and the Meta app's key
// (jobs.FlowKeyer).
func (h *SocialPublishInstagram) FlowKeys(payload json.RawMessage) ([]string, error) {
	id, err := graphAccountField(TypeSocialPublishInstagram, payload, "igUserId")
	if err != nil {
		return nil, err
	}
	return []string{FlowPrefixInstagram + id, FlowKeyGraphApp}, nil
}

// FlowKeys returns the Facebook Page's key and the Meta app's key
// (jobs.FlowKeyer).
func (h *SocialPublishFacebook) FlowKeys(payload json.RawMessage) ([]string, error) {
	id, err := graphAccountField(TypeSocialPublishFacebook, payload, "pageId")
	if err != nil {
		return nil, err
	}
	return []string{FlowPrefixFacebook + id, FlowKeyGraphApp}, nil
}

// FlowKeys returns the key of the model the job asks (the configured
// TextModel when the payload names none) on the configured API key
// (jobs.FlowKeyer).
func (h *AITextGeneration) FlowKeys(payload json.RawMessage) ([]string, error) {
	p, err := parseAITextPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%s flow keys: %w", TypeAITextGeneration, err)
	}
	return []string{h.flowKey(p.Model)}, nil
}

// flowKey is the key of model, or of the default model when it is empty.
func (h *AITextGeneration) flowKey(model string) string {
	if model == "" {
		model = h.cfg.TextModel
	}
	return openAIFlowKey(h.client.keyID, model)
}

// FlowKeys returns the key of the model the job asks (the configured
// ImageModel when the payload names none) on the configured API key
// (jobs.FlowKeyer).
func (h *AIImageGeneration) FlowKeys(payload json.RawMessage) ([]string, error) {
	p, err := parseAIImagePayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%s flow keys: %w", TypeAIImageGeneration, err)
	}
	return []string{h.flowKey(p.Model)}, nil
}

// flowKey is the key of model, or of the default model when it is empty.
func (h *AIImageGeneration) flowKey(model string) string {
	if model == "" {
		model = h.cfg.ImageModel
	}
	return openAIFlowKey(h.client.keyID, model)
}

// FlowKeys returns the key of the URL's host (jobs.FlowKeyer). Redirects
// to other hosts count against the first host's key only.
func (h *WebScraping) FlowKeys(payload json.RawMessage) ([]string, error) {
	_, target, err := parseWebScrapingPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("%s flow keys: %w", TypeWebScraping, err)
	}
	return []string{hostFlowKey(target.Hostname())}, nil
}

// hostFlowKey is the key of a host name: lower-cased, without a trailing
// dot, so that "Example.COM." and "example.com" share one key.
func hostFlowKey(host string) string {
	return FlowPrefixHost + strings.TrimSuffix(strings.ToLower(host), ".")
}

// pauseWithMargin returns the pause for a wait d a provider announced: d
// plus margin (a share of d), between lo and hi.
func pauseWithMargin(d time.Duration, margin float64, lo, hi time.Duration) time.Duration {
	d = min(max(d, 0), hi)
	d += time.Duration(float64(d) * margin)
	return min(max(d, lo), hi)
}

// approxDuration formats a wait for a pause's reason: "~40 ms", "~30 s",
// "~2 min", "~1.5 h".
func approxDuration(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("~%d ms", d.Milliseconds())
	case d < 90*time.Second:
		return fmt.Sprintf("~%d s", int64(math.Round(d.Seconds())))
	case d < 90*time.Minute:
		return fmt.Sprintf("~%d min", int64(math.Round(d.Minutes())))
	}
	h := math.Round(d.Hours()*10) / 10
	if h == math.Trunc(h) {
		return fmt.Sprintf("~%d h", int64(h))
	}
	return fmt.Sprintf("~%.1f h", h)
}

var (
	_ jobs.FlowKeyer = (*SocialPublishInstagram)(nil)
	_ jobs.FlowKeyer = (*SocialPublishFacebook)(nil)
	_ jobs.FlowKeyer = (*AITextGeneration)(nil)
	_ jobs.FlowKeyer = (*AIImageGeneration)(nil)
	_ jobs.FlowKeyer = (*WebScraping)(nil)
)
