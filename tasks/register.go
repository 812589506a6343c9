package tasks

import (
	"fmt"

	"github.com/jobhook/jobhook/jobs"
)

// Config carries the settings of every job type.
type Config struct {
	// ScrapeAllowPrivate lets web_scraping reach private, loopback and
	// link-local addresses (SCRAPE_ALLOW_PRIVATE; tests and local use).
	ScrapeAllowPrivate bool
}

// Register adds every job type's handler to reg.
func Register(reg *jobs.Registry, cfg Config) error {
	if err := reg.Register(TypeWebScraping, NewWebScraping(WebScrapingConfig{AllowPrivate: cfg.ScrapeAllowPrivate})); err != nil {
		return fmt.Errorf("tasks: %w", err)
	}
	return nil
}
