package tasks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeAIImageGeneration is the job type that asks an OpenAI-compatible
// images API for one or more images.
const TypeAIImageGeneration = "ai_image_generation"

// Limits of an ai_image_generation payload.
const (
	// AIImageMaxPromptChars bounds prompt (gpt-image-1's limit; dall-e-2
	// and dall-e-3 accept less and answer 400, which is permanent).
	AIImageMaxPromptChars = 32000
	// AIImageMaxN is the largest n.
	AIImageMaxN = 4
	// ImageStoreMaxBytesDefault caps one stored image.
	ImageStoreMaxBytesDefault int64 = 20 << 20
)

// AIImageSizes are the accepted values of size.
var AIImageSizes = []string{"256x256", "512x512", "1024x1024", "1024x1792", "1792x1024"}

// AIImageGenerationPayload is the payload of an ai_image_generation job,
// such as {"prompt": "A lighthouse at dawn", "size": "1024x1024", "n": 2}.
// Unknown fields are refused.
type AIImageGenerationPayload struct {
	// Prompt describes the image (required, at most 32000 characters).
	Prompt string `json:"prompt"`
	// Size is one of AIImageSizes; the provider's default when absent.
	Size string `json:"size,omitempty"`
	// N is how many images to make (1–4, default 1).
	N int `json:"n,omitempty"`
	// Model overrides the configured default model.
	Model string `json:"model,omitempty"`
}

// AIImageGenerationResult is the result of an ai_image_generation job.
type AIImageGenerationResult struct {
	// Images are the generated images, in the provider's order.
	Images []AIImage `json:"images"`
	// Model is the model asked.
	Model string `json:"model"`
}

// AIImage is one generated image.
type AIImage struct {
	// URL fetches the image: the provider's URL (OpenAI's expire after
	// 60 minutes) or, for base64 answers, the ImageStore's URL.
	URL string `json:"url"`
	// RevisedPrompt is the prompt dall-e-3 actually used, if it says.
	RevisedPrompt string `json:"revisedPrompt,omitempty"`
}

// ImageStore keeps generated images where the app can fetch them.
type ImageStore interface {
	// Put stores data under name (a random id and an extension, such as
	// "3f9a….png") and returns the URL that serves it.
	Put(ctx context.Context, name string, data []byte, contentType string) (url string, err error)
}

// DirImageStore is an ImageStore writing files into Dir and returning
// BaseURL + "/" + name.
//
// Serving: handlers.Config.Images (handlers.ImageFiles with Dir and
// ImageNamePattern) mounts the read-only GET /files/images/:name route. It
// serves only names matching ImageNamePattern, and only regular files
// directly inside Dir: a symbolic link there is never followed. BaseURL is
// the public URL of that route ("https://jobs.example.com/files/images",
// from IMAGES_BASE_URL) so Instagram and Facebook can fetch it. Names are
// random (128 bits), so URLs are unguessable but not secret; the route
// needs no auth. The handler records each image (jobs.HoldArtifact) before
// writing it; the retention pass deletes it through ImageArtifacts once no
// remaining job names it. Files written before that record existed are
// never deleted.
type DirImageStore struct {
	// Dir is the directory the files go to; it is created if missing.
	Dir string
	// BaseURL prefixes the returned URLs, without a trailing slash.
	BaseURL string
	// MaxBytes caps one image (ImageStoreMaxBytesDefault when zero).
	MaxBytes int64
}

// ImageNamePattern matches the names DirImageStore accepts and writes.
var ImageNamePattern = regexp.MustCompile(`^[a-f0-9]{32}\.(png|jpg|webp|gif)$`)

// errImageRefused marks an image DirImageStore refuses (name, size,
// configuration): storing it again cannot succeed.
var errImageRefused = errors.New("image store refused the image")

// Put writes data to Dir/name (mode 0644, never overwriting) and returns
// BaseURL + "/" + name.
func (s DirImageStore) Put(ctx context.Context, name string, data []byte, contentType string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if !ImageNamePattern.MatchString(name) {
		return "", fmt.Errorf("%w: unsafe file name %q", errImageRefused, name)
	}
	limit := s.MaxBytes
	if limit <= 0 {
		limit = ImageStoreMaxBytesDefault
	}
	if int64(len(data)) > limit {
		return "", fmt.Errorf("%w: image of %d bytes is over the %d-byte limit", errImageRefused, len(data), limit)
	}
	if s.Dir == "" {
		return "", fmt.Errorf("%w: no directory configured", errImageRefused)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", fmt.Errorf("image store: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return "", fmt.Errorf("image store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("image store: %w", err)
	}
	final := filepath.Join(s.Dir, name)
	// Link then remove the temporary name: fails rather than overwrite an
	// existing file. Where hard links are unsupported, rename (names are
	// random, 128 bits, so a clash is not a practical concern).
	if err := os.Link(tmp.Name(), final); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("%w: %s already exists", errImageRefused, name)
		}
		if err := os.Rename(tmp.Name(), final); err != nil {
			return "", fmt.Errorf("image store: %w", err)
		}
	}
	return strings.TrimRight(s.BaseURL, "/") + "/" + url.PathEscape(name), nil
}

// imageExtensions maps the image types accepted from a provider to file
// extensions.
var imageExtensions = map[string]string{
	"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
}

// newImageName returns a random name with the extension of data's
// detected content type, and that type.
func newImageName(data []byte) (name, contentType string, err error) {
	contentType = http.DetectContentType(data)
	ext, ok := imageExtensions[contentType]
	if !ok {
		return "", contentType, fmt.Errorf("decoded image is %s, not PNG, JPEG, WebP or GIF", contentType)
	}
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return "", contentType, err
	}
	return hex.EncodeToString(id[:]) + ext, contentType, nil
}

// AIImageGeneration handles ai_image_generation jobs. It is safe for
// concurrent use; build one with NewAIImageGeneration.
type AIImageGeneration struct {
	cfg    OpenAIConfig
	client *openAIClient
	// hold records an image before it is stored (jobs.HoldArtifact).
	hold func(ctx context.Context, name string) error
}

var (
	_ jobs.Handler          = (*AIImageGeneration)(nil)
	_ jobs.PayloadValidator = (*AIImageGeneration)(nil)
	_ jobs.TimeoutHandler   = (*AIImageGeneration)(nil)
	_ ImageStore            = DirImageStore{}
)

// NewAIImageGeneration returns the handler for ai_image_generation jobs,
// with cfg's zero values replaced by their defaults (Timeout 120s). A
// missing API key is reported when a job runs, not here.
func NewAIImageGeneration(cfg OpenAIConfig) *AIImageGeneration {
	cfg = cfg.withDefaults(AIImageTimeoutDefault)
	return &AIImageGeneration{cfg: cfg, client: newOpenAIClient(cfg), hold: jobs.HoldArtifact}
}

// Timeout returns the job timeout: the configured Timeout plus a margin,
// so that the handler's own deadline fires first.
func (h *AIImageGeneration) Timeout() time.Duration { return h.cfg.Timeout + openAITimeoutMargin }

// ValidatePayload checks an ai_image_generation payload; it returns a
// *jobs.ValidationError with Code "invalid_payload" naming each bad field.
func (h *AIImageGeneration) ValidatePayload(payload json.RawMessage) error {
	_, err := parseAIImagePayload(payload)
	return err
}

func parseAIImagePayload(payload []byte) (*AIImageGenerationPayload, error) {
	p, err := parseAIPayload(payload, TypeAIImageGeneration, `{"prompt": "A lighthouse at dawn", "size": "1024x1024"}`,
		"prompt", "size", "n", "model")
	if err != nil {
		return nil, err
	}
	out := &AIImageGenerationPayload{
		Prompt: p.str("prompt", true, AIImageMaxPromptChars),
		Model:  p.model(),
		N:      1,
	}
	if _, ok := p.raw("size"); ok {
		before := len(p.problems)
		size := p.str("size", false, 20)
		switch {
		case len(p.problems) > before: // not a string
		case !slices.Contains(AIImageSizes, size):
			p.fail("size", "must be one of "+strings.Join(AIImageSizes, ", "))
		default:
			out.Size = size
		}
	}
	if n, ok := p.integer("n", 1, AIImageMaxN); ok {
		out.N = int(n)
	}
	if err := p.err(TypeAIImageGeneration); err != nil {
		return nil, err
	}
	return out, nil
}

type imagesResponse struct {
	Data []struct {
		URL           string `json:"url"`
		B64JSON       string `json:"b64_json"`
		RevisedPrompt string `json:"revised_prompt"`
	} `json:"data"`
}

// Handle calls POST {base}/images/generations and returns an
// AIImageGenerationResult as JSON.
//
// It asks for response_format "b64_json" when an ImageStore is configured
// (so the stored copy does not expire) and "url" otherwise; gpt-image
// models get no response_format (they always answer base64). Base64
// images are decoded, checked to be PNG, JPEG, WebP or GIF, and stored
// through the ImageStore under a random name.
//
// Errors are classified as for ai_text_generation; in addition a base64
// answer without an ImageStore, undecodable base64, a non-image, and an
// image the store refuses are permanent, and fewer images than asked or an
// item with neither url nor b64_json is a malformed (retryable) response.
// A retry generates new images; files stored by a failed attempt stay
// until the job is deleted (each is recorded with jobs.HoldArtifact).
func (h *AIImageGeneration) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	if job == nil {
		return nil, jobs.Permanent(errors.New(TypeAIImageGeneration + ": nil job"))
	}
	p, err := parseAIImagePayload(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()

	model := p.Model
	if model == "" {
		model = h.cfg.ImageModel
	}
	body := map[string]any{"model": model, "prompt": p.Prompt, "n": p.N}
	if p.Size != "" {
		body["size"] = p.Size
	}
	if !strings.HasPrefix(model, "gpt-image") {
		if h.cfg.Images != nil {
			body["response_format"] = "b64_json"
		} else {
			body["response_format"] = "url"
		}
	}

	var resp imagesResponse
	if err := h.client.post(ctx, TypeAIImageGeneration, "/images/generations", body, &resp, openAIMaxImageBody); err != nil {
		return nil, err
	}
	if len(resp.Data) != p.N {
		return nil, fmt.Errorf("%s: malformed response: %d images for n=%d", TypeAIImageGeneration, len(resp.Data), p.N)
	}
	res := AIImageGenerationResult{Images: make([]AIImage, 0, len(resp.Data)), Model: model}
	for i, item := range resp.Data {
		img := AIImage{URL: item.URL, RevisedPrompt: item.RevisedPrompt}
		switch {
		case item.B64JSON != "":
			if img.URL, err = h.store(ctx, i, item.B64JSON); err != nil {
				return nil, err
			}
		case item.URL != "":
			if u, err := url.Parse(item.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") {
				return nil, fmt.Errorf("%s: malformed response: image %d has an invalid url", TypeAIImageGeneration, i)
			}
		default:
			return nil, fmt.Errorf("%s: malformed response: image %d has neither url nor b64_json", TypeAIImageGeneration, i)
		}
		res.Images = append(res.Images, img)
	}
	out, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("%s: encode result: %w", TypeAIImageGeneration, err)
	}
	return out, nil
}

// store decodes image i and puts it in the ImageStore.
func (h *AIImageGeneration) store(ctx context.Context, i int, b64 string) (string, error) {
	what := fmt.Sprintf("%s: image %d", TypeAIImageGeneration, i)
	if h.cfg.Images == nil {
		return "", jobs.Permanent(fmt.Errorf("%s: the provider returned base64 data and no image store is configured (set IMAGES_DIR)", what))
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", jobs.Permanent(fmt.Errorf("%s: invalid base64: %w", what, err))
	}
	name, contentType, err := newImageName(data)
	if err != nil {
		return "", jobs.Permanent(fmt.Errorf("%s: %w", what, err))
	}
	// Recorded before it is written: a file the retention pass does not
	// know of would never be deleted. Called outside a worker (no job),
	// nothing is recorded.
	hold := h.hold
	if hold == nil {
		hold = jobs.HoldArtifact
	}
	if err := hold(ctx, name); err != nil && !errors.Is(err, jobs.ErrNoJob) {
		return "", fmt.Errorf("%s: record: %w", what, err)
	}
	u, err := h.cfg.Images.Put(ctx, name, data, contentType)
	if err != nil {
		if errors.Is(err, errImageRefused) {
			return "", jobs.Permanent(fmt.Errorf("%s: %w", what, err))
		}
		return "", fmt.Errorf("%s: store: %w", what, err) // such as a full disk: retry
	}
	return u, nil
}
