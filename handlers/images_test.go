package handlers_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
)

func TestGeneratedImagesAreServedReadOnly(t *testing.T) {
	dir := t.TempDir()
	name := "0123456789abcdef0123456789abcdef.png"
	png := []byte("\x89PNG\r\n\x1a\n-not-really")
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), png, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(filepath.Dir(dir), "secret.txt"), []byte("no"), 0o644))
	bb := setup(t, testenv.Embedded(t), func(cfg *handlers.Config) {
		cfg.Images = &handlers.ImageFiles{Dir: dir, Name: regexp.MustCompile(`^[a-f0-9]{32}\.(png|jpg|webp|gif)$`)}
	})
	rec := bb.do(t, request{method: http.MethodGet, path: "/files/images/" + name})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, png, rec.Body.Bytes())
	require.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
	for _, bad := range []string{"..%2Fsecret.txt", "secret.txt", "ffffffffffffffffffffffffffffffff.png", "%2e%2e"} {
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/files/images/" + bad}), http.StatusNotFound, "not_found")
	}
	requireError(t, bb.do(t, request{method: http.MethodPost, path: "/files/images/" + name}), http.StatusMethodNotAllowed, "method_not_allowed")
}
