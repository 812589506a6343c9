package tasks_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// carouselEngine runs carousel_creation with its AI children against the
// fakes, through the real queue and worker.
func carouselEngine(t *testing.T, b testenv.Backend, textURL, imageURL string) (*jobs.Service, *jobs.Worker) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := jobs.NewRegistry()
	reg.MustRegister(tasks.TypeCarouselCreation, tasks.NewCarouselCreation())
	reg.MustRegister(tasks.TypeAITextGeneration, tasks.NewAITextGeneration(tasks.OpenAIConfig{BaseURL: textURL, APIKey: "sk-test"}))
	reg.MustRegister(tasks.TypeAIImageGeneration, tasks.NewAIImageGeneration(tasks.OpenAIConfig{BaseURL: imageURL, APIKey: "sk-test"}))
	eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log, Concurrency: 8,
		Backoff: func(int) time.Duration { return time.Millisecond }})
	return eng.Service(), eng.Worker()
}

func drainUntilFinished(t *testing.T, svc *jobs.Service, w *jobs.Worker, user string, id int64) *models.Job {
	t.Helper()
	var job *models.Job
	testenv.WaitFor(t, 30*time.Second, "the carousel to finish", func() bool {
		_, err := w.Drain(context.Background(), jobs.DefaultDrainBudget)
		require.NoError(t, err)
		job, err = svc.Get(context.Background(), user, id)
		require.NoError(t, err)
		return job.Status.Finished()
	})
	return job
}

func TestCarouselOfFiveSlidesEndToEnd(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		ai := openaifake.New(t, "sk-test")
		svc, w := carouselEngine(t, b, ai.URL, ai.URL)
		parent, _, err := svc.Create(context.Background(), jobs.CreateRequest{UserID: "ann", Type: tasks.TypeCarouselCreation,
			Payload: json.RawMessage(`{"topic":"Spring recipes","slides":5,"style":"watercolour"}`)})
		require.NoError(t, err)
		job := drainUntilFinished(t, svc, w, "ann", parent.ID)
		require.Equal(t, models.StatusCompleted, job.Status, job.Error)

		var res tasks.CarouselCreationResult
		require.NoError(t, json.Unmarshal(job.Result, &res))
		require.Len(t, res.Slides, 5)
		for i, s := range res.Slides {
			require.Equal(t, i+1, s.Index)
			require.NotEmpty(t, s.Text)
			require.NotEmpty(t, s.ImageURL)
		}
		// The children are the parent's, in slide order, and were made once.
		var children []models.Job
		require.NoError(t, b.DB.Gorm.Where("parent_id = ?", parent.ID).Order("id").Find(&children).Error)
		require.Len(t, children, 10)
		for i := 0; i < 5; i++ {
			require.Equal(t, tasks.TypeAITextGeneration, children[2*i].Type)
			require.Contains(t, string(children[2*i].Payload), fmt.Sprintf("slide %d of 5", i+1))
			require.Equal(t, tasks.TypeAIImageGeneration, children[2*i+1].Type)
			require.Equal(t, "ann", children[2*i+1].UserID, "children belong to the parent's user")
		}
		require.Equal(t, 10, ai.Calls(), "one provider call per child")
	})
}

func TestCarouselFailsWhenAChildsProviderFailsForGood(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		text := openaifake.New(t, "sk-test")
		images := openaifake.New(t, "sk-test")
		images.FailNext(100, openaifake.BadRequest("Your request was rejected by the safety system.", "prompt"))
		svc, w := carouselEngine(t, b, text.URL, images.URL)
		parent, _, err := svc.Create(context.Background(), jobs.CreateRequest{UserID: "ann", Type: tasks.TypeCarouselCreation,
			Payload: json.RawMessage(`{"topic":"Spring recipes","slides":5}`)})
		require.NoError(t, err)
		job := drainUntilFinished(t, svc, w, "ann", parent.ID)
		require.Equal(t, models.StatusFailed, job.Status)
		require.Contains(t, job.Error, "ai_image_generation")
		require.Contains(t, job.Error, "rejected by the safety system")
	})
}

func TestCarouselPayloadValidation(t *testing.T) {
	h := tasks.NewCarouselCreation()
	for _, bad := range []string{`{}`, `{"topic":""}`, `{"topic":"x","slides":1}`, `{"topic":"x","slides":11}`, `{"topic":"x","slides":2.5}`, `{"topic":"x","colour":"red"}`, `[]`} {
		require.Error(t, h.ValidatePayload(json.RawMessage(bad)), bad)
	}
	require.NoError(t, h.ValidatePayload(json.RawMessage(`{"topic":"x"}`)))
}
