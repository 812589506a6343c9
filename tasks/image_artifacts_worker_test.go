package tasks_test

import (
	"context"
	"encoding/json"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	openaifake "github.com/jobhook/jobhook/internal/fakes/openai"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// TestGeneratedImagesAreRecordedForTheirJob: run by a worker,
// ai_image_generation records each image it writes for its job, so that
// retention can delete it once no job names it.
func TestGeneratedImagesAreRecordedForTheirJob(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		const key = "sk-test-images"
		fake := openaifake.New(t, key)
		dir := t.TempDir()
		reg := jobs.NewRegistry()
		require.NoError(t, tasks.Register(reg, tasks.Config{
			OpenAI:    tasks.OpenAIConfig{BaseURL: fake.URL, APIKey: key, Timeout: 5 * time.Second},
			ImagesDir: dir, ImagesBaseURL: "https://jobs.example.com/files/images",
		}))
		eng, _ := signalsEngine(t, b, reg, func(c *jobs.Config) { c.Artifacts = tasks.ImageArtifacts{Dir: dir} })
		job, _, err := eng.Service().Create(context.Background(), jobs.CreateRequest{UserID: "u", Type: tasks.TypeAIImageGeneration,
			Payload: json.RawMessage(`{"prompt":"A lighthouse","model":"gpt-image-1","n":2}`)})
		require.NoError(t, err)
		row := drainAndLoad(t, b, eng.Worker(), job.ID)
		require.Equal(t, models.StatusCompleted, row.Status, row.Error)
		var res tasks.AIImageGenerationResult
		require.NoError(t, json.Unmarshal(row.Result, &res))
		require.Len(t, res.Images, 2)
		var recorded []struct {
			Name  string
			JobID int64
		}
		require.NoError(t, b.DB.Gorm.Table("job_artifacts").Select("name", "job_id").Order("name").Scan(&recorded).Error)
		require.Len(t, recorded, 2)
		for _, r := range recorded {
			require.Equal(t, job.ID, r.JobID)
			require.FileExists(t, filepath.Join(dir, r.Name))
		}
		names := []string{path.Base(res.Images[0].URL), path.Base(res.Images[1].URL)}
		require.ElementsMatch(t, names, []string{recorded[0].Name, recorded[1].Name})
	})
}
