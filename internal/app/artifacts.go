package app

import (
	"github.com/jobhook/jobhook/internal/config"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/tasks"
)

// imageArtifacts lets the retention pass delete the generated images in
// IMAGES_DIR that no remaining job names; nil when no folder is set.
func imageArtifacts(cfg *config.Config) jobs.Artifacts {
	if cfg.ImagesDir == "" {
		return nil
	}
	return tasks.ImageArtifacts{Dir: cfg.ImagesDir}
}
