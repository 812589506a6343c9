package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/internal/fakes/graph"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
	"github.com/jobhook/jobhook/tasks"
)

// A scheduled_publish to Instagram and Facebook at a future time runs at
// that time through QStash (the clock advanced), publishes exactly once
// per target, and a repeated delivery publishes nothing more.
func TestScheduledPublishToBothNetworksRunsOnceAtItsTime(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		fake := graph.New()
		t.Cleanup(fake.Close)
		key, err := secretbox.GenerateKey()
		require.NoError(t, err)
		ring, err := secretbox.ParseKeyring(key)
		require.NoError(t, err)
		gcfg := tasks.GraphConfig{BaseURL: fake.URL, PollInterval: time.Millisecond}
		s := newSystem(t, b, options{secrets: ring, register: func(reg *jobs.Registry) {
			reg.MustRegister(tasks.TypeScheduledPublish, tasks.NewScheduledPublish())
			reg.MustRegister(tasks.TypeSocialPublishInstagram, tasks.NewSocialPublishInstagram(gcfg))
			reg.MustRegister(tasks.TypeSocialPublishFacebook, tasks.NewSocialPublishFacebook(gcfg))
		}})
		_, err = schedulesSync(s)
		require.NoError(t, err)

		at := s.clock.Now().Add(30 * time.Minute)
		payload := `{"caption":"Spring menu is out","mediaUrls":["https://cdn.example.com/spring.jpg"],"targets":[
			{"network":"instagram","accountId":"17841400000000001","accessToken":"IG-TOKEN-secret"},
			{"network":"facebook","accountId":"100000000000002","accessToken":"FB-TOKEN-secret"}]}`
		job, _, err := s.service.Create(context.Background(), jobs.CreateRequest{UserID: "alice", Type: tasks.TypeScheduledPublish,
			Payload: json.RawMessage(payload), ScheduledFor: &at})
		require.NoError(t, err)
		require.Equal(t, models.StatusScheduled, job.Status)
		require.NotContains(t, string(job.Payload), "TOKEN-secret", "the API never shows the tokens")

		s.advance(t, 29*time.Minute)
		require.Equal(t, models.StatusScheduled, s.status(t, job.ID), "not before its time")
		require.Zero(t, fake.Calls(graph.CallPublish)+fake.Calls(graph.CallPhotos)+fake.Calls(graph.CallFeed))

		// Its time comes: the delayed delivery starts it; the children run
		// in the same and the following (per-minute) drains.
		s.advance(t, time.Minute)
		testenv.WaitFor(t, 20*time.Second, "the publish to finish", func() bool {
			if s.status(t, job.ID).Finished() {
				return true
			}
			s.advance(t, time.Minute)
			return false
		})
		got, err := s.service.Get(context.Background(), "alice", job.ID)
		require.NoError(t, err)
		require.Equal(t, models.StatusCompleted, got.Status, got.Error)
		var res tasks.ScheduledPublishResult
		require.NoError(t, json.Unmarshal(got.Result, &res))
		require.Equal(t, 2, res.Published)

		// QStash retries the delivery: nothing is published again.
		for _, d := range s.dev.Deliveries() {
			if !bytes.Contains(d.Body, []byte(fmt.Sprintf(`"jobId":%d`, job.ID))) {
				continue
			}
			req, err := http.NewRequest(http.MethodPost, s.workerURL, bytes.NewReader(d.Body))
			require.NoError(t, err)
			req.Header = d.Header.Clone()
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
		}
		s.advance(t, 5*time.Minute)
		require.Equal(t, 1, fake.Calls(graph.CallPublish), "instagram published once")
		require.Zero(t, fake.DuplicatePublishes())
		require.Equal(t, 1, fake.Calls(graph.CallPhotos)+fake.Calls(graph.CallFeed), "facebook posted once")
	})
}

func schedulesSync(s *system) (int, error) {
	f, err := loadSchedulesFile()
	if err != nil {
		return 0, err
	}
	changes, err := syncSchedules(s, f)
	return len(changes), err
}
