package tasks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"

	"github.com/jobhook/jobhook/jobs"
)

// ImageArtifacts is the jobs.Artifacts of the images a DirImageStore
// writes into Dir: the retention pass asks it which image names a job's
// payload or result mentions, and deletes through it the images no
// remaining job names.
type ImageArtifacts struct {
	// Dir is the DirImageStore's directory.
	Dir string
}

var _ jobs.Artifacts = ImageArtifacts{}

// imageNameInText finds image names (ImageNamePattern, unanchored) in a
// payload or result, such as the last segment of an image URL.
var imageNameInText = regexp.MustCompile(`[a-f0-9]{32}\.(?:png|jpg|webp|gif)`)

// Names returns the image names text mentions, each once.
func (ImageArtifacts) Names(text []byte) []string {
	found := imageNameInText.FindAll(text, -1)
	if len(found) == 0 {
		return nil
	}
	out := make([]string, 0, len(found))
	seen := make(map[string]bool, len(found))
	for _, f := range found {
		if name := string(f); !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

// Remove deletes Dir/name; an image already gone (or a Dir that does not
// exist) is not an error. A name that is not one DirImageStore writes is
// refused. Only a name directly inside Dir is removed (os.Root).
func (a ImageArtifacts) Remove(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !ImageNamePattern.MatchString(name) {
		return fmt.Errorf("image store: refusing to delete %q: not an image name", name)
	}
	root, err := os.OpenRoot(a.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image store: delete %s: %w", name, err)
	}
	defer root.Close()
	if err := root.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image store: delete %s: %w", name, err)
	}
	return nil
}
