package tasks

import (
	"fmt"

	"go.opentelemetry.io/otel/trace"

	"github.com/jobhook/jobhook/jobs"
)

// Config carries the settings of every job type.
type Config struct {
	// ScrapeAllowPrivate lets web_scraping reach private, loopback and
	// link-local addresses (SCRAPE_ALLOW_PRIVATE; tests and local use).
	ScrapeAllowPrivate bool
	// OpenAI configures ai_text_generation and ai_image_generation.
	OpenAI OpenAIConfig
	// ImagesDir, when set, keeps images the provider returns as base64,
	// served at ImagesBaseURL.
	ImagesDir     string
	ImagesBaseURL string
	// Graph configures social_publish_instagram and social_publish_facebook.
	Graph GraphConfig
	// TracerProvider, when set, traces every provider call of every job
	// type (OpenAI, Graph, web pages) as a client span.
	TracerProvider trace.TracerProvider
}

// Register adds every job type's handler to reg.
func Register(reg *jobs.Registry, cfg Config) error {
	ai := cfg.OpenAI
	ai.TracerProvider = cfg.TracerProvider
	graph := cfg.Graph
	graph.TracerProvider = cfg.TracerProvider
	if cfg.ImagesDir != "" {
		ai.Images = DirImageStore{Dir: cfg.ImagesDir, BaseURL: cfg.ImagesBaseURL}
	}
	handlers := map[string]jobs.Handler{
		TypeWebScraping:            NewWebScraping(WebScrapingConfig{AllowPrivate: cfg.ScrapeAllowPrivate, TracerProvider: cfg.TracerProvider}),
		TypeAITextGeneration:       NewAITextGeneration(ai),
		TypeAIImageGeneration:      NewAIImageGeneration(ai),
		TypeSocialPublishInstagram: NewSocialPublishInstagram(graph),
		TypeSocialPublishFacebook:  NewSocialPublishFacebook(graph),
		TypeCarouselCreation:       NewCarouselCreation(),
		TypeScheduledPublish:       NewScheduledPublish(),
	}
	for typ, h := range handlers {
		if err := reg.Register(typ, h); err != nil {
			return fmt.Errorf("tasks: %w", err)
		}
	}
	return nil
}
