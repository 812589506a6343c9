package handlers_test

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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

// TestImagesServeRegularFilesOnly: a symbolic link inside IMAGES_DIR is
// never followed, whether it points outside the folder or to another image
// inside it; a directory with an image's name is not served either.
func TestImagesServeRegularFilesOnly(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "images")
	require.NoError(t, os.Mkdir(dir, 0o755))
	secret := filepath.Join(base, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("server secret"), 0o600))
	real := "0123456789abcdef0123456789abcdef.png"
	require.NoError(t, os.WriteFile(filepath.Join(dir, real), []byte("png"), 0o644))
	outside, inside, folder := strings.Repeat("a", 32)+".png", strings.Repeat("b", 32)+".png", strings.Repeat("c", 32)+".png"
	require.NoError(t, os.Symlink(secret, filepath.Join(dir, outside)))
	require.NoError(t, os.Symlink(filepath.Join(dir, real), filepath.Join(dir, inside)))
	require.NoError(t, os.Mkdir(filepath.Join(dir, folder), 0o755))
	bb := setup(t, testenv.Embedded(t), func(cfg *handlers.Config) {
		cfg.Images = &handlers.ImageFiles{Dir: dir, Name: regexp.MustCompile(`^[a-f0-9]{32}\.(png|jpg|webp|gif)$`)}
	})
	for _, name := range []string{outside, inside, folder} {
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			rec := bb.do(t, request{method: m, path: "/files/images/" + name})
			require.Equal(t, http.StatusNotFound, rec.Code, "%s %s", m, name)
			require.NotContains(t, rec.Body.String(), "server secret")
		}
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/files/images/" + name}), http.StatusNotFound, "not_found")
	}
	rec := bb.do(t, request{method: http.MethodGet, path: "/files/images/" + real})
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "png", rec.Body.String())
	require.Equal(t, "image/png", rec.Header().Get("Content-Type"))

	// A range or precondition that would fail is ignored: the whole image,
	// never a plain-text 416 or an empty 412.
	for _, h := range []map[string]string{
		{"Range": "bytes=999999-"},
		{"Range": "bytes=0-1"},
		{"Range": "garbage"},
		{"If-Match": `"nope"`},
		{"If-Unmodified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"},
	} {
		rec := bb.do(t, request{method: http.MethodGet, path: "/files/images/" + real, headers: h})
		require.Equal(t, http.StatusOK, rec.Code, "%v", h)
		require.Equal(t, "png", rec.Body.String(), "%v", h)
	}
}
