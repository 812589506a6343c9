package handlers_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// throttledType is a job type on flow key "ig:9" whose provider always
// asks it to wait ten minutes.
type throttledType struct{}

func (throttledType) FlowKeys(json.RawMessage) ([]string, error) { return []string{"ig:9"}, nil }

func (throttledType) Handle(context.Context, *models.Job) (json.RawMessage, error) {
	return nil, jobs.PauseFlow(errors.New("graph: application request limit reached"), "ig:9", 10*time.Minute, "app usage 100% (call_count)")
}

func TestFlowKeysShowAPauseToOperatorsAndOnTheJob(t *testing.T) {
	const admin = "an-operator-token-of-at-least-32-bytes"
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		var cfg *handlers.Config
		bb := setup(t, b, func(c *handlers.Config) {
			c.AdminToken = admin
			require.NoError(t, c.Service.Registry().Register("throttled", throttledType{}))
			cfg = c
		})
		created := bb.createJob(t, "alice", `{"type":"throttled"}`, http.StatusCreated)
		_, err := realWorker(t, b, cfg).Drain(context.Background(), 30*time.Second)
		require.NoError(t, err)

		rec := bb.do(t, request{method: http.MethodGet, path: "/api/flow-keys/ig:9", auth: "Bearer " + admin})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var st jobs.FlowKeyStatus
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
		require.Equal(t, "ig:9", st.Key)
		require.NotNil(t, st.PausedUntil)
		require.WithinDuration(t, time.Now().Add(10*time.Minute), *st.PausedUntil, 5*time.Second)
		require.Equal(t, "app usage 100% (call_count)", st.PauseReason)
		require.Nil(t, st.Limit, "the test engine sets no limits")

		rec = bb.do(t, request{method: http.MethodGet, path: "/api/flow-keys?prefix=ig:", auth: "Bearer " + admin})
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var list struct {
			Keys []jobs.FlowKeyStatus `json:"keys"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &list))
		require.Len(t, list.Keys, 1)
		require.Equal(t, "ig:9", list.Keys[0].Key)

		// The job shows what it waits for, to its owner.
		rec = bb.asUser(t, "alice", http.MethodGet, "/api/jobs/"+strconv.FormatInt(created.JobID, 10), "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var job struct {
			Status     string             `json:"status"`
			Attempts   int                `json:"attempts"`
			WaitingFor *models.WaitingFor `json:"waitingFor"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, "pending", job.Status)
		require.Zero(t, job.Attempts)
		require.NotNil(t, job.WaitingFor)
		require.Equal(t, "ig:9", job.WaitingFor.Key)
		require.Equal(t, "app usage 100% (call_count)", job.WaitingFor.Reason)

		// A user may not see the keys; a bad key is refused.
		requireError(t, bb.asUser(t, "alice", http.MethodGet, "/api/flow-keys", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.asUser(t, "alice", http.MethodGet, "/api/flow-keys/ig:9", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/flow-keys/ig:%20x", auth: "Bearer " + admin}), http.StatusBadRequest, handlers.CodeInvalidFlowKey)
		requireError(t, bb.do(t, request{method: http.MethodGet, path: "/api/flow-keys?limit=0", auth: "Bearer " + admin}), http.StatusBadRequest, handlers.CodeInvalidLimit)
	})
}

func TestOperatorHoldsAndResumesAFlowKey(t *testing.T) {
	const admin = "an-operator-token-of-at-least-32-bytes"
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		bb := setup(t, b, func(c *handlers.Config) { c.AdminToken = admin })
		op := func(method, path, body string) *httptest.ResponseRecorder {
			r := request{method: method, path: path, auth: "Bearer " + admin}
			if body != "" {
				r.body = strings.NewReader(body)
			}
			return bb.do(t, r)
		}
		rec := op(http.MethodPost, "/api/flow-keys/ig:7/pause", `{"reason":"account under review"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		var st jobs.FlowKeyStatus
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
		require.True(t, st.Paused)
		require.Nil(t, st.PausedUntil, "a hold has no end")
		require.Equal(t, "paused by an operator: account under review", st.PauseReason)

		rec = op(http.MethodPost, "/api/flow-keys/ig:7/resume", "")
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		st = jobs.FlowKeyStatus{}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &st))
		require.False(t, st.Paused)

		requireError(t, op(http.MethodPost, "/api/flow-keys/ig:7/pause", `{"why":"x"}`), http.StatusBadRequest, handlers.CodeInvalidJSON)
		requireError(t, bb.asUser(t, "alice", http.MethodPost, "/api/flow-keys/ig:7/pause", `{}`), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.asUser(t, "alice", http.MethodPost, "/api/flow-keys/ig:7/resume", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
	})
}

func TestOperatorPausesAJobTypeAndItsJobsWait(t *testing.T) {
	const admin = "an-operator-token-of-at-least-32-bytes"
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		var cfg *handlers.Config
		bb := setup(t, b, func(c *handlers.Config) { c.AdminToken = admin; cfg = c })
		op := func(method, path, body string) *httptest.ResponseRecorder {
			r := request{method: method, path: path, auth: "Bearer " + admin}
			if body != "" {
				r.body = strings.NewReader(body)
			}
			return bb.do(t, r)
		}
		rec := op(http.MethodPost, "/api/job-types/noop/pause", `{"reason":"deploying"}`)
		require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
		created := bb.createJob(t, "alice", `{"type":"noop"}`, http.StatusCreated)
		w := realWorker(t, b, cfg)
		_, err := w.Drain(context.Background(), 30*time.Second)
		require.NoError(t, err)

		rec = bb.asUser(t, "alice", http.MethodGet, "/api/jobs/"+strconv.FormatInt(created.JobID, 10), "")
		var job struct {
			Status     string             `json:"status"`
			WaitingFor *models.WaitingFor `json:"waitingFor"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &job))
		require.Equal(t, "pending", job.Status, "a paused type's job waits")
		require.Equal(t, &models.WaitingFor{Key: "type:noop", Reason: "job type paused by an operator: deploying"}, job.WaitingFor)

		rec = op(http.MethodGet, "/api/job-types", "")
		require.Equal(t, http.StatusOK, rec.Code)
		require.Contains(t, rec.Body.String(), `{"type":"noop","paused":true,"reason":"deploying"}`)

		require.Equal(t, http.StatusOK, op(http.MethodPost, "/api/job-types/noop/resume", "").Code)
		_, err = w.Drain(context.Background(), 30*time.Second)
		require.NoError(t, err)
		rec = bb.asUser(t, "alice", http.MethodGet, "/api/jobs/"+strconv.FormatInt(created.JobID, 10), "")
		require.Contains(t, rec.Body.String(), `"status":"completed"`)

		requireError(t, op(http.MethodPost, "/api/job-types/nope/pause", ""), http.StatusBadRequest, handlers.CodeUnknownJobType)
		requireError(t, bb.asUser(t, "alice", http.MethodPost, "/api/job-types/noop/pause", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
		requireError(t, bb.asUser(t, "alice", http.MethodGet, "/api/job-types", ""), http.StatusForbidden, handlers.CodeOperatorOnly)
	})
}
