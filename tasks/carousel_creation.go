package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// TypeCarouselCreation builds an ordered carousel: one ai_text_generation
// and one ai_image_generation child per slide.
const TypeCarouselCreation = "carousel_creation"

// Carousel bounds.
const (
	CarouselMinSlides     = 2
	CarouselMaxSlides     = 10
	CarouselDefaultSlides = 5
	carouselPoll          = time.Minute
)

// CarouselCreationPayload is a carousel_creation job's payload, such as
// {"topic":"Spring recipes","slides":5,"style":"watercolour"}.
type CarouselCreationPayload struct {
	// Topic is what the carousel is about (required, ≤ 500 characters).
	Topic string `json:"topic"`
	// Slides is how many slides, 2–10; defaults to 5.
	Slides int `json:"slides,omitempty"`
	// Style, optional, is added to every image prompt.
	Style string `json:"style,omitempty"`
}

// CarouselSlide is one slide of the result, in order.
type CarouselSlide struct {
	Index    int    `json:"index"`
	Text     string `json:"text"`
	ImageURL string `json:"imageUrl"`
}

// CarouselCreationResult is a carousel_creation job's result.
type CarouselCreationResult struct {
	Topic  string          `json:"topic"`
	Slides []CarouselSlide `json:"slides"`
}

// CarouselCreation is the carousel_creation handler: a parent job whose
// children write and illustrate each slide. It finishes when they all
// have; a child's final failure fails it with the reason.
type CarouselCreation struct{}

var (
	_ jobs.Handler          = CarouselCreation{}
	_ jobs.PayloadValidator = CarouselCreation{}
)

// NewCarouselCreation returns the handler.
func NewCarouselCreation() CarouselCreation { return CarouselCreation{} }

func parseCarousel(payload []byte) (CarouselCreationPayload, error) {
	var out CarouselCreationPayload
	p, err := parseAIPayload(payload, TypeCarouselCreation, `{"topic":"Spring recipes","slides":5}`, "topic", "slides", "style")
	if err != nil {
		return out, err
	}
	out.Topic = p.str("topic", true, 500)
	out.Style = p.str("style", false, 200)
	out.Slides = CarouselDefaultSlides
	if n, ok := p.integer("slides", CarouselMinSlides, CarouselMaxSlides); ok {
		out.Slides = int(n)
	}
	return out, p.err(TypeCarouselCreation)
}

// ValidatePayload checks the payload at create time.
func (CarouselCreation) ValidatePayload(payload json.RawMessage) error {
	_, err := parseCarousel(payload)
	return err
}

// Handle spawns the slide children (once) and, when they have all
// finished, assembles the slides in order.
func (CarouselCreation) Handle(ctx context.Context, job *models.Job) (json.RawMessage, error) {
	p, err := parseCarousel(job.Payload)
	if err != nil {
		return nil, jobs.Permanent(err)
	}
	specs := make([]jobs.ChildSpec, 0, 2*p.Slides)
	for i := 1; i <= p.Slides; i++ {
		text, _ := json.Marshal(map[string]any{
			"system":    "You write concise, engaging social-media carousel slides. Answer with the slide text only.",
			"prompt":    fmt.Sprintf("Write the text of slide %d of %d of a carousel about: %s. At most 40 words.", i, p.Slides, p.Topic),
			"maxTokens": 200,
		})
		imagePrompt := fmt.Sprintf("Illustration for slide %d of %d of a carousel about: %s.", i, p.Slides, p.Topic)
		if p.Style != "" {
			imagePrompt += " Style: " + p.Style + "."
		}
		image, _ := json.Marshal(map[string]any{"prompt": imagePrompt, "n": 1})
		specs = append(specs,
			jobs.ChildSpec{Type: TypeAITextGeneration, Payload: text, Priority: job.Priority},
			jobs.ChildSpec{Type: TypeAIImageGeneration, Payload: image, Priority: job.Priority})
	}
	if _, err := jobs.SpawnChildren(ctx, specs); err != nil {
		return nil, err
	}
	children, err := jobs.AwaitChildren(ctx, carouselPoll)
	if err != nil {
		return nil, err
	}
	if len(children) != len(specs) {
		return nil, fmt.Errorf("carousel: %d children found, %d expected", len(children), len(specs))
	}
	res := CarouselCreationResult{Topic: p.Topic}
	for i := 0; i < p.Slides; i++ {
		text, image := children[2*i], children[2*i+1]
		for _, c := range []models.Job{text, image} {
			if c.Status != models.StatusCompleted {
				return nil, jobs.Permanent(fmt.Errorf("slide %d: %s job %d %s: %s", i+1, c.Type, c.ID, c.Status, strings.TrimSpace(c.Error)))
			}
		}
		var t AITextGenerationResult
		var im AIImageGenerationResult
		if json.Unmarshal(text.Result, &t) != nil || json.Unmarshal(image.Result, &im) != nil || len(im.Images) == 0 {
			return nil, jobs.Permanent(fmt.Errorf("slide %d: a child's result is not readable", i+1))
		}
		res.Slides = append(res.Slides, CarouselSlide{Index: i + 1, Text: strings.TrimSpace(t.Text), ImageURL: im.Images[0].URL})
	}
	return json.Marshal(res)
}
