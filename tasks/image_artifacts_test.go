package tasks

import (
	"context"
	"encoding/json"
	"os"
	"path"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/jobs"
)

const testImageName = "0123456789abcdef0123456789abcdef.png"

func TestImageArtifactsNames(t *testing.T) {
	a := ImageArtifacts{}
	text := []byte(`{"imageUrls":["https://jobs.example.com/files/images/` + testImageName + `","https://cdn.example.com/a.jpg"],` +
		`"again":"` + testImageName + `","other":"fedcba9876543210fedcba9876543210.webp"}`)
	require.Equal(t, []string{testImageName, "fedcba9876543210fedcba9876543210.webp"}, a.Names(text))
	require.Empty(t, a.Names([]byte(`{"url":"https://cdn.example.com/a.png"}`)))
}

func TestImageArtifactsRemove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := ImageArtifacts{Dir: dir}
	file := filepath.Join(dir, testImageName)
	require.NoError(t, os.WriteFile(file, []byte("png"), 0o644))
	require.NoError(t, a.Remove(ctx, testImageName))
	_, err := os.Stat(file)
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, a.Remove(ctx, testImageName), "a missing file is not an error")
	require.NoError(t, ImageArtifacts{Dir: filepath.Join(dir, "none")}.Remove(ctx, testImageName), "nor a missing folder")
	require.Error(t, a.Remove(ctx, "../"+testImageName), "only image names")
	require.Error(t, a.Remove(ctx, "notes.txt"))

	// A failure is reported (to be retried): here a directory in the way.
	require.NoError(t, os.Mkdir(file, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(file, "x"), nil, 0o644))
	require.Error(t, a.Remove(ctx, testImageName))
}

// TestAIImageGenerationHoldsBeforeWriting: each image is recorded for its
// job before its file is written; a failed record writes nothing and is
// retryable.
func TestAIImageGenerationHoldsBeforeWriting(t *testing.T) {
	dir := t.TempDir()
	_, h := newImageFake(t, DirImageStore{Dir: dir, BaseURL: "http://localhost/img"})
	var held []string
	h.hold = func(_ context.Context, name string) error {
		_, err := os.Stat(filepath.Join(dir, name))
		require.ErrorIs(t, err, os.ErrNotExist, "recorded before it is written")
		held = append(held, name)
		return nil
	}
	out, err := h.Handle(context.Background(), imageJob(`{"prompt": "p", "model": "gpt-image-1", "n": 2}`))
	require.NoError(t, err)
	var res AIImageGenerationResult
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, held, 2)
	for i, img := range res.Images {
		require.Equal(t, held[i], path.Base(img.URL))
		require.FileExists(t, filepath.Join(dir, held[i]))
	}

	h.hold = func(context.Context, string) error { return jobs.ErrUnavailable }
	_, err = h.Handle(context.Background(), imageJob(`{"prompt": "p", "model": "gpt-image-1"}`))
	require.ErrorIs(t, err, jobs.ErrUnavailable)
	require.False(t, jobs.IsPermanent(err), "retryable")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2, "nothing written")
}
