package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeAITextGeneration is the job type that asks an OpenAI-compatible
// chat-completions API for a text.
const TypeAITextGeneration = "ai_text_generation"

// Limits of an ai_text_generation payload.
const (
	// AITextMaxPromptChars bounds prompt and system (in characters).
	AITextMaxPromptChars = 32000
	// AITextMaxTokens is the largest maxTokens.
	AITextMaxTokens = 32768
)

// AITextGenerationPayload is the payload of an ai_text_generation job, such
// as {"prompt": "Write a caption about autumn", "maxTokens": 200}. Unknown
// fields are refused.
type AITextGenerationPayload struct {
	// Prompt is the user message (required, at most 32000 characters).
	Prompt string `json:"prompt"`
	// System is an optional system message (at most 32000 characters).
	System string `json:"system,omitempty"`
	// Model overrides the configured default model.
	Model string `json:"model,omitempty"`
	// MaxTokens bounds the completion (1–32768); the provider's default
	// when absent.
	MaxTokens *int `json:"maxTokens,omitempty"`
	// Temperature is the sampling temperature (0–2); the provider's
	// default when absent.
	Temperature *float64 `json:"temperature,omitempty"`
}

// AITextGenerationResult is the result of an ai_text_generation job.
type AITextGenerationResult struct {
	// Text is the assistant's answer.
	Text string `json:"text"`
	// Model is the model that answered, as the provider names it.
	Model string `json:"model"`
	// FinishReason is "stop", or "length" when maxTokens cut the text.
	FinishReason string `json:"finishReason"`
	// Usage counts the tokens billed.
	Usage AITokenUsage `json:"usage"`
}

// AITokenUsage is the token usage of a chat completion.
type AITokenUsage struct {
	PromptTokens     int `json:"promptTokens"`
	CompletionTokens int `json:"completionTokens"`
	TotalTokens      int `json:"totalTokens"`
}

// AITextGeneration handles ai_text_generation jobs. It is safe for
// concurrent use; build one with NewAITextGeneration.
type AITextGeneration struct {
	cfg    OpenAIConfig
	client *openAIClient
}

var (
	_ jobs.Handler          = (*AITextGeneration)(nil)
	_ jobs.PayloadValidator = (*AITextGeneration)(nil)
	_ jobs.TimeoutHandler   = (*AITextGeneration)(nil)
)

// NewAITextGeneration returns the handler for ai_text_generation jobs, with
// cfg's zero values replaced by their defaults (Timeout 60s). A missing
// API key is reported when a job runs, not here.
func NewAITextGeneration(cfg OpenAIConfig) *AITextGeneration {
	cfg = cfg.withDefaults(AITextTimeoutDefault)
	return &AITextGeneration{cfg: cfg, client: newOpenAIClient(cfg)}
}

// Timeout returns the job timeout: the configured Timeout plus a margin,
// so that the handler's own deadline fires first.
func (h *AITextGeneration) Timeout() time.Duration { return h.cfg.Timeout + openAITimeoutMargin }

// ValidatePayload checks an ai_text_generation payload; it returns a
// *jobs.ValidationError with Code "invalid_payload" naming each bad field.
func (h *AITextGeneration) ValidatePayload(payload json.RawMessage) error {
	_, err := parseAITextPayload(payload)
	return err
}

func parseAITextPayload(payload []byte) (*AITextGenerationPayload, error) {
	p, err := parseAIPayload(payload, TypeAITextGeneration, `{"prompt": "Write a caption about autumn"}`,
		"prompt", "system", "model", "maxTokens", "temperature")
	if err != nil {
		return nil, err
	}
	out := &AITextGenerationPayload{
		Prompt: p.str("prompt", true, AITextMaxPromptChars),
		System: p.str("system", false, AITextMaxPromptChars),
		Model:  p.model(),
	}
	if n, ok := p.integer("maxTokens", 1, AITextMaxTokens); ok {
		v := int(n)
		out.MaxTokens = &v
	}
	if t, ok := p.number("temperature", 0, 2); ok {
		out.Temperature = &t
	}
	if err := p.err(TypeAITextGeneration); err != nil {
		return nil, err
	}
	return out, nil
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatCompletion struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
			Refusal *string `json:"refusal"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// Handle calls POST {base}/chat/completions and returns an
// AITextGenerationResult as JSON.
//
// Errors: an invalid payload, a missing API key, 4xx answers other than
// 408, 409 and 429, a 429 for exhausted quota or billing limits, a refusal
// and finish_reason "content_filter" are permanent (with the provider's
// message, type and code). 429, 408, 409 and 5xx are retried, after the
// delay in retry-after-ms or Retry-After when present. Timeouts, connection
// errors and a malformed 2xx body are plain errors, retried with backoff.
// finish_reason "length" is a success with FinishReason "length".
func (h *AITextGeneration) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	if job == nil {
		return nil, jobs.Permanent(errors.New(TypeAITextGeneration + ": nil job"))
	}
	p, err := parseAITextPayload(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()

	model := p.Model
	if model == "" {
		model = h.cfg.TextModel
	}
	var messages []chatMessage
	if p.System != "" {
		messages = append(messages, chatMessage{Role: "system", Content: p.System})
	}
	messages = append(messages, chatMessage{Role: "user", Content: p.Prompt})
	body := map[string]any{"model": model, "messages": messages}
	if p.MaxTokens != nil {
		body[h.cfg.MaxTokensField] = *p.MaxTokens
	}
	if p.Temperature != nil {
		body["temperature"] = *p.Temperature
	}

	var resp chatCompletion
	if err := h.client.post(ctx, TypeAITextGeneration, "/chat/completions", body, &resp, openAIMaxTextBody); err != nil {
		return nil, err
	}
	if len(resp.Choices) == 0 {
		return nil, fmt.Errorf("%s: malformed response: no choices", TypeAITextGeneration)
	}
	choice := resp.Choices[0]
	if r := choice.Message.Refusal; r != nil && *r != "" {
		return nil, jobs.Permanent(fmt.Errorf("%s: the model refused: %s", TypeAITextGeneration, *r))
	}
	if choice.FinishReason == "content_filter" {
		return nil, jobs.Permanent(fmt.Errorf("%s: the answer was withheld by the provider's content filter", TypeAITextGeneration))
	}
	if choice.Message.Content == nil {
		return nil, fmt.Errorf("%s: malformed response: no message content (finish_reason %q)", TypeAITextGeneration, choice.FinishReason)
	}
	if resp.Model == "" {
		resp.Model = model
	}
	out, err := json.Marshal(AITextGenerationResult{
		Text:         *choice.Message.Content,
		Model:        resp.Model,
		FinishReason: choice.FinishReason,
		Usage: AITokenUsage{
			PromptTokens:     resp.Usage.PromptTokens,
			CompletionTokens: resp.Usage.CompletionTokens,
			TotalTokens:      resp.Usage.TotalTokens,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: encode result: %w", TypeAITextGeneration, err)
	}
	return out, nil
}
