package tasks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

func imageJob(payload string) *models.Job {
	return &models.Job{ID: 2, Type: TypeAIImageGeneration, Payload: models.JSON(payload)}
}

func newImageFake(t *testing.T, store ImageStore) (*openaifake.Server, *AIImageGeneration) {
	t.Helper()
	fake := openaifake.New(t, aiTestKey)
	h := NewAIImageGeneration(OpenAIConfig{BaseURL: fake.URL, APIKey: aiTestKey, Timeout: 5 * time.Second, Images: store})
	return fake, h
}

func TestAIImageGenerationSuccessURL(t *testing.T) {
	fake, h := newImageFake(t, nil)
	out, err := h.Handle(context.Background(), imageJob(`{"prompt": "A lighthouse at dawn", "size": "512x512", "n": 2, "model": "dall-e-2"}`))
	require.NoError(t, err)
	var res AIImageGenerationResult
	require.NoError(t, json.Unmarshal(out, &res))
	assert.Equal(t, "dall-e-2", res.Model)
	require.Len(t, res.Images, 2)
	assert.Equal(t, fake.URL+"/files/img-0.png", res.Images[0].URL)
	assert.Equal(t, fake.URL+"/files/img-1.png", res.Images[1].URL)

	reqs := fake.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "/v1/images/generations", reqs[0].Path)
	assert.True(t, reqs[0].Authorized)
	assert.JSONEq(t, `{"prompt": "A lighthouse at dawn", "size": "512x512", "n": 2, "model": "dall-e-2", "response_format": "url"}`,
		string(reqs[0].Body))
	assert.Equal(t, AIImageTimeoutDefault+openAITimeoutMargin, NewAIImageGeneration(OpenAIConfig{}).Timeout())
}

func TestAIImageGenerationB64Stored(t *testing.T) {
	dir := t.TempDir()
	store := DirImageStore{Dir: dir, BaseURL: "https://jobs.example.com/files/images/"}
	fake, h := newImageFake(t, store)
	out, err := h.Handle(context.Background(), imageJob(`{"prompt": "A lighthouse", "model": "dall-e-3", "size": "1792x1024"}`))
	require.NoError(t, err)
	var res AIImageGenerationResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res.Images, 1)
	img := res.Images[0]
	assert.Equal(t, "A revised A lighthouse", img.RevisedPrompt)
	require.True(t, strings.HasPrefix(img.URL, "https://jobs.example.com/files/images/"), img.URL)
	name := path.Base(img.URL)
	assert.Regexp(t, ImageNamePattern, name)
	assert.True(t, strings.HasSuffix(name, ".png"))
	data, err := os.ReadFile(filepath.Join(dir, name))
	require.NoError(t, err)
	assert.Equal(t, openaifake.PNG, data)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files left")

	assert.JSONEq(t, `{"prompt": "A lighthouse", "size": "1792x1024", "n": 1, "model": "dall-e-3", "response_format": "b64_json"}`,
		string(fake.Requests()[0].Body))
}

func TestAIImageGenerationGPTImageNoResponseFormat(t *testing.T) {
	store := DirImageStore{Dir: t.TempDir(), BaseURL: "http://localhost/img"}
	jpeg := append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{0}, 20)...)
	fake, h := newImageFake(t, store)
	fake.SetImageData(jpeg)
	out, err := h.Handle(context.Background(), imageJob(`{"prompt": "p", "model": "gpt-image-1", "n": 3}`))
	require.NoError(t, err)
	var res AIImageGenerationResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res.Images, 3)
	seen := map[string]bool{}
	for _, img := range res.Images {
		assert.True(t, strings.HasSuffix(img.URL, ".jpg"), img.URL)
		seen[img.URL] = true
	}
	assert.Len(t, seen, 3, "distinct names")
	assert.JSONEq(t, `{"prompt": "p", "n": 3, "model": "gpt-image-1"}`, string(fake.Requests()[0].Body))
}

func TestAIImageGenerationB64WithoutStoreIsPermanent(t *testing.T) {
	_, h := newImageFake(t, nil)
	_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p", "model": "gpt-image-1"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "IMAGES_DIR")
}

func TestAIImageGenerationBadImageData(t *testing.T) {
	store := DirImageStore{Dir: t.TempDir(), BaseURL: "http://x", MaxBytes: 10}
	fake, h := newImageFake(t, store)

	// Too large for the store: permanent.
	_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "limit")

	// Not an image: permanent.
	fake.SetImageData([]byte("<html>oops</html>"))
	_, err = h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "not PNG")

	// Invalid base64: permanent.
	fake.FailNext(1, openaifake.Failure{Body: `{"created":1,"data":[{"b64_json":"!!!"}]}`})
	_, err = h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "base64")
}

func TestAIImageGenerationTransientThenSuccess(t *testing.T) {
	fake, h := newImageFake(t, nil)
	fake.FailNext(1, openaifake.RateLimited("7"))
	_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	var ra *jobs.RetryAfterError
	require.ErrorAs(t, err, &ra)
	assert.Equal(t, 7*time.Second, ra.After)

	fake.FailNext(1, openaifake.Failure{Status: 503, Body: "upstream overloaded", Header: map[string][]string{"Retry-After-Ms": {"250"}}})
	_, err = h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.ErrorAs(t, err, &ra)
	assert.Equal(t, 250*time.Millisecond, ra.After)
	assert.Contains(t, err.Error(), "upstream overloaded")

	out, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.NoError(t, err)
	assert.Contains(t, string(out), "/files/img-0.png")
	assert.Equal(t, 3, fake.Calls())
}

func TestAIImageGenerationPermanentError(t *testing.T) {
	fake, h := newImageFake(t, nil)
	fake.FailNext(1, openaifake.Failure{Status: 400, Body: openaifake.ErrorBody(
		"Your request was rejected as a result of our safety system.", "invalid_request_error", "content_policy_violation", "")})
	_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "rejected as a result of our safety system")
	assert.Contains(t, err.Error(), "content_policy_violation")
}

func TestAIImageGenerationMalformedResponse(t *testing.T) {
	fake, h := newImageFake(t, nil)
	fake.FailNext(1, openaifake.Malformed())
	fake.FailNext(1, openaifake.Failure{Body: `{"created":1,"data":[]}`})
	fake.FailNext(1, openaifake.Failure{Body: `{"created":1,"data":[{}]}`})
	fake.FailNext(1, openaifake.Failure{Body: `{"created":1,"data":[{"url":"javascript:alert(1)"}]}`})
	for range 4 {
		_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
		require.Error(t, err)
		assert.False(t, jobs.IsPermanent(err), "%v", err)
		assert.Contains(t, err.Error(), "malformed response")
	}
}

func TestAIImageGenerationTimeout(t *testing.T) {
	fake, h := newImageFake(t, nil)
	fake.FailNext(1, openaifake.Hang())
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := h.Handle(ctx, imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.False(t, jobs.IsPermanent(err))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestAIImageGenerationMissingKey(t *testing.T) {
	h := NewAIImageGeneration(OpenAIConfig{BaseURL: "http://127.0.0.1:1/v1"})
	_, err := h.Handle(context.Background(), imageJob(`{"prompt": "p"}`))
	require.Error(t, err)
	assert.True(t, jobs.IsPermanent(err))
	assert.Contains(t, err.Error(), "OPENAI_API_KEY")
}

func TestAIImageGenerationValidatePayload(t *testing.T) {
	h := NewAIImageGeneration(OpenAIConfig{})
	for _, tc := range []struct {
		name, payload string
		fields        []string
	}{
		{"missing prompt", `{"size": "256x256"}`, []string{"prompt"}},
		{"empty prompt", `{"prompt": ""}`, []string{"prompt"}},
		{"prompt too long", `{"prompt": "` + strings.Repeat("a", AIImageMaxPromptChars+1) + `"}`, []string{"prompt"}},
		{"bad size", `{"prompt": "p", "size": "100x100"}`, []string{"size"}},
		{"size not string", `{"prompt": "p", "size": 1024}`, []string{"size"}},
		{"n zero", `{"prompt": "p", "n": 0}`, []string{"n"}},
		{"n too big", `{"prompt": "p", "n": 5}`, []string{"n"}},
		{"n fraction", `{"prompt": "p", "n": 1.5}`, []string{"n"}},
		{"model empty", `{"prompt": "p", "model": " "}`, []string{"model"}},
		{"unknown", `{"prompt": "p", "quality": "hd"}`, []string{"quality"}},
		{"several", `{"n": "2", "size": "auto", "style": 1}`, []string{"style", "prompt", "size", "n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireFieldErrors(t, h.ValidatePayload(json.RawMessage(tc.payload)), tc.fields...)
		})
	}
	for _, good := range []string{
		`{"prompt": "p"}`,
		`{"prompt": "p", "size": null, "n": null, "model": null}`,
		`{"prompt": "p", "size": "1024x1792", "n": 4, "model": "dall-e-3"}`,
	} {
		assert.NoError(t, h.ValidatePayload(json.RawMessage(good)), good)
	}
	for _, size := range AIImageSizes {
		assert.NoError(t, h.ValidatePayload(json.RawMessage(`{"prompt": "p", "size": "`+size+`"}`)))
	}
}

func TestDirImageStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sub")
	s := DirImageStore{Dir: dir, BaseURL: "https://h/img"}
	name, ct, err := newImageName(openaifake.PNG)
	require.NoError(t, err)
	assert.Equal(t, "image/png", ct)
	u, err := s.Put(context.Background(), name, openaifake.PNG, ct)
	require.NoError(t, err)
	assert.Equal(t, "https://h/img/"+name, u)
	info, err := os.Stat(filepath.Join(dir, name))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), info.Mode().Perm())

	// Never overwrites.
	_, err = s.Put(context.Background(), name, openaifake.PNG, ct)
	require.Error(t, err)

	for _, bad := range []string{"../x.png", "x.png", "/etc/passwd", "0123456789abcdef0123456789abcdef.exe", ".." + string(os.PathSeparator) + "0123456789abcdef0123456789abcdef.png"} {
		_, err := s.Put(context.Background(), bad, openaifake.PNG, "image/png")
		require.Error(t, err, bad)
		assert.True(t, errors.Is(err, errImageRefused), bad)
	}
	_, err = DirImageStore{BaseURL: "x"}.Put(context.Background(), name, openaifake.PNG, ct)
	assert.ErrorIs(t, err, errImageRefused)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = s.Put(ctx, name, openaifake.PNG, ct)
	assert.ErrorIs(t, err, context.Canceled)
}

func FuzzAIImageGenerationPayload(f *testing.F) {
	for _, seed := range []string{
		`{"prompt": "p"}`,
		`{"prompt": "p", "size": "1024x1024", "n": 4, "model": "dall-e-3"}`,
		`{"prompt": "p", "size": "1024X1024"}`,
		`{"prompt": "p", "n": 1e2}`,
		`{"prompt": "p", "n": -0}`,
		`{"prompt": "", "size": null, "extra": 1}`,
		`[]`, `null`, `"x"`, ``, `{`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		p, err := parseAIImagePayload(payload)
		if err != nil {
			var verr *jobs.ValidationError
			if !errors.As(err, &verr) || verr.Code != "invalid_payload" {
				t.Fatalf("want an invalid_payload ValidationError, got %#v", err)
			}
			return
		}
		if strings.TrimSpace(p.Prompt) == "" {
			t.Fatal("accepted an empty prompt")
		}
		if p.N < 1 || p.N > AIImageMaxN {
			t.Fatalf("accepted n %d", p.N)
		}
		if p.Size != "" && !strings.Contains(strings.Join(AIImageSizes, ","), p.Size) {
			t.Fatalf("accepted size %q", p.Size)
		}
	})
}
