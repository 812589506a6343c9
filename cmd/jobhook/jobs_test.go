package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/client"
	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/apikeys"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

// testAdminToken is the ADMIN_TOKEN of the servers of these tests.
const testAdminToken = "jobs-cli-test-admin-token-0123456789"

// jobsServer is a real HTTP layer and engine on one backend. Job types
// "boom" and "other" fail at their first attempt; "ok" completes.
type jobsServer struct {
	url string
	eng *jobs.Engine
}

// startJobsServer serves the handlers with the operator's token, and
// points the jobs commands at it through ADMIN_TOKEN and JOBHOOK_URL.
func startJobsServer(t *testing.T, b testenv.Backend) *jobsServer {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := jobs.NewRegistry()
	for _, typ := range []string{"boom", "other"} {
		reg.MustRegister(typ, jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			return nil, jobs.Permanent(errors.New(typ + ": the provider said no\nsecond line"))
		}))
	}
	reg.MustRegister("ok", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
		return json.RawMessage(`{"done":true}`), nil
	}))
	eng := jobstest.Start(t, jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Logger: log})
	app := handlers.New(handlers.Config{Service: eng.Service(), Worker: eng.Worker(),
		Verifier: auth.NewHS256Verifier([]byte(auth.DevJWTSecret)), AdminToken: testAdminToken, WorkerSecret: "jobs-cli-test-worker-secret", Logger: log,
		APIKeys: apikeys.New(b.DB.Gorm, nil)})
	srv := httptest.NewServer(app)
	t.Cleanup(srv.Close)
	t.Setenv("ADMIN_TOKEN", testAdminToken)
	t.Setenv("JOBHOOK_URL", srv.URL)
	return &jobsServer{url: srv.URL, eng: eng}
}

// create makes n jobs of typ for user and returns their ids.
func (s *jobsServer) create(t *testing.T, user, typ string, n int) []int64 {
	t.Helper()
	var ids []int64
	for range n {
		job, _, err := s.eng.Service().Create(context.Background(), jobs.CreateRequest{UserID: user, Type: typ})
		require.NoError(t, err)
		ids = append(ids, job.ID)
	}
	return ids
}

// drainBudget is a test drain's budget: a job starts only when its
// timeout (jobstest.TestJobTimeout) fits in what is left of it.
const drainBudget = 4 * jobstest.TestJobTimeout

// drainUntil drains until want jobs are in status, as the API counts them.
func (s *jobsServer) drainUntil(t *testing.T, status models.Status, want int) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, fmt.Sprintf("%d %s jobs", want, status), func() bool {
		_, err := s.eng.Worker().Drain(context.Background(), drainBudget)
		require.NoError(t, err)
		return len(s.apiIDs(t, status, "")) == want
	})
}

// apiIDs pages through the API's own list, as the operator, and returns
// the ids of the jobs in status (and of typ, when given), sorted.
func (s *jobsServer) apiIDs(t *testing.T, status models.Status, typ string) []int64 {
	t.Helper()
	var ids []int64
	req := jobs.ListRequest{UserID: jobs.Operator, Status: status, Type: typ, Limit: jobs.MaxListLimit}
	for {
		page, err := s.eng.Service().List(context.Background(), req)
		require.NoError(t, err)
		for _, j := range page.Jobs {
			ids = append(ids, j.ID)
		}
		if page.NextCursor == "" {
			slices.Sort(ids)
			return ids
		}
		req.Cursor = page.NextCursor
	}
}

// idsOf reads the ids of a --json list.
func idsOf(t *testing.T, out string) []int64 {
	t.Helper()
	var list []models.Job
	require.NoError(t, json.Unmarshal([]byte(out), &list), out)
	ids := make([]int64, len(list))
	for i, j := range list {
		ids[i] = j.ID
	}
	slices.Sort(ids)
	return ids
}

// TestJobsListAndRetryByFilter is the issue's must-show: `jobs list
// --status failed --json` has as many jobs as the API counts, and `jobs
// retry --filter status=failed,type=boom` retries exactly the failed boom
// jobs, of every user, and no other.
func TestJobsListAndRetryByFilter(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		boom := append(s.create(t, "alice", "boom", 7), s.create(t, "bob", "boom", 5)...)
		other := s.create(t, "alice", "other", 4)
		s.create(t, "alice", "ok", 3)
		s.drainUntil(t, models.StatusFailed, len(boom)+len(other))
		waiting := s.create(t, "bob", "boom", 2) // pending: not to be retried

		failed := s.apiIDs(t, models.StatusFailed, "")
		require.Len(t, failed, 16)
		code, out, errOut := runCmd(t, "jobs", "list", "--status", "failed", "--json", "--page-size", "5")
		require.Equal(t, 0, code, errOut)
		require.Empty(t, errOut)
		require.Equal(t, failed, idsOf(t, out), "the CLI lists what the API counts, across pages")
		code, out, _ = runCmd(t, "jobs", "list", "--status", "failed", "--all", "--json")
		require.Equal(t, 0, code)
		require.Len(t, idsOf(t, out), len(failed))

		code, out, errOut = runCmd(t, "jobs", "list", "--status", "failed", "--limit", "3", "--page-size", "2")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 4, out)
		require.Regexp(t, `^ID +TYPE +STATUS +ATTEMPTS +USER +CREATED +ERROR$`, lines[0])
		require.Regexp(t, `^\d+ +other +failed +1/3 +alice +20\d\d-\d\d-\d\d \d\d:\d\d:\d\d +other: the provider said no …$`, lines[1])
		require.Contains(t, errOut, "the first 3 jobs shown; more match (--all shows every one)")

		code, out, _ = runCmd(t, "jobs", "list", "--user", "bob", "--error", "PROVIDER", "--json", "--page-size", "3")
		require.Equal(t, 0, code)
		require.Equal(t, boom[7:], idsOf(t, out), "user and error filtered by the API")
		code, out, _ = runCmd(t, "jobs", "list", "--type", "nothing", "--json")
		require.Equal(t, 0, code)
		require.Equal(t, "[]\n", out)

		code, out, errOut = runCmd(t, "jobs", "retry", "--filter", "status=failed,type=boom", "--page-size", "4")
		require.Equal(t, 0, code, errOut)
		require.Empty(t, errOut)
		for _, id := range boom {
			require.Contains(t, out, fmt.Sprintf("retried %d (boom, ", id))
		}
		require.Equal(t, len(boom)+1, strings.Count(out, "\n"), "one line per job retried, and the total: %s", out)
		require.Contains(t, out, fmt.Sprintf(`retried %d of %d jobs matching status "failed", type "boom"`, len(boom), len(boom)))
		require.Equal(t, other, s.apiIDs(t, models.StatusFailed, ""), "only the failed boom jobs were retried")
		pending := s.apiIDs(t, models.StatusPending, "boom")
		require.Equal(t, append(slices.Clone(boom), waiting...), pending)
		for _, id := range waiting {
			job, err := s.eng.Service().Get(context.Background(), jobs.Operator, id)
			require.NoError(t, err)
			require.Zero(t, job.Attempts)
		}

		code, out, _ = runCmd(t, "jobs", "retry", "--filter", "type=boom")
		require.Equal(t, 0, code)
		require.Equal(t, "retried 0 of 0 jobs matching status \"failed\", type \"boom\"\n", out)
	})
}

// TestJobsGetRetryCancel: one job read with its history, cancelled,
// retried; refusals exit 1 with the API's status and code.
func TestJobsGetRetryCancel(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		id := s.create(t, "alice", "boom", 1)[0]
		s.drainUntil(t, models.StatusFailed, 1)

		code, out, errOut := runCmd(t, "jobs", "get", fmt.Sprint(id))
		require.Equal(t, 0, code, errOut)
		require.Regexp(t, `(?m)^status: +failed$`, out)
		require.Regexp(t, `(?m)^user: +alice$`, out)
		require.Regexp(t, `(?m)^ATTEMPT +OUTCOME +STARTED +FINISHED +DURATION +ERROR$`, out)
		require.Regexp(t, `(?m)^1 +failed +20.* boom: the provider said no …$`, out)
		code, out, _ = runCmd(t, "jobs", "get", fmt.Sprint(id), "--json")
		require.Equal(t, 0, code)
		var got struct {
			ID      int64               `json:"id"`
			History []models.JobAttempt `json:"history"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got))
		require.Equal(t, id, got.ID)
		require.Len(t, got.History, 1)

		code, out, errOut = runCmd(t, "jobs", "retry", fmt.Sprint(id))
		require.Equal(t, 0, code, errOut)
		require.Equal(t, fmt.Sprintf("retried %d (boom, alice): pending\n", id), out)
		code, _, errOut = runCmd(t, "jobs", "retry", fmt.Sprint(id))
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "409 job_not_retryable: ")

		code, out, errOut = runCmd(t, "jobs", "cancel", fmt.Sprint(id))
		require.Equal(t, 0, code, errOut)
		require.Equal(t, fmt.Sprintf("cancelled %d (boom, alice)\n", id), out)
		code, _, errOut = runCmd(t, "jobs", "cancel", fmt.Sprint(id))
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "409 job_not_cancellable: the job is cancelled")
		code, out, _ = runCmd(t, "jobs", "retry", "--filter", "status=cancelled,user=alice")
		require.Equal(t, 0, code)
		require.Contains(t, out, fmt.Sprintf("retried %d (boom, alice)\n", id))

		for _, args := range [][]string{{"get", "999999"}, {"retry", "999999"}, {"cancel", "999999"}} {
			code, out, errOut := runCmd(t, append([]string{"jobs"}, args...)...)
			require.Equal(t, 1, code, "%v: %s", args, errOut)
			require.Empty(t, out)
			require.Contains(t, errOut, "404 job_not_found: ", args)
			require.NotContains(t, errOut, testAdminToken)
		}

		t.Setenv("ADMIN_TOKEN", strings.Repeat("x", 40))
		code, _, errOut = runCmd(t, "jobs", "list")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "401 invalid_token: ")
		require.NotContains(t, errOut, strings.Repeat("x", 40), "the token is never printed")
	})
}

// TestJobsBulkRetryGoesOnAfterARefusal: a job the API refuses to retry is
// named with its code, the others are still retried, and the exit is 1.
func TestJobsBulkRetryGoesOnAfterARefusal(t *testing.T) {
	var retried []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer "+testAdminToken:
			w.WriteHeader(http.StatusUnauthorized)
		case r.Method == http.MethodGet:
			require.Equal(t, "failed", r.URL.Query().Get("status"))
			fmt.Fprint(w, `{"jobs":[{"id":3,"type":"x","userId":"u","status":"failed"},{"id":2,"type":"x","userId":"u","status":"failed"},{"id":1,"type":"x","userId":"u","status":"failed"}]}`)
		case r.URL.Path == "/api/jobs/2/retry":
			w.WriteHeader(http.StatusConflict)
			fmt.Fprint(w, `{"error":{"code":"job_not_retryable","message":"the job is pending"}}`)
		default:
			retried = append(retried, r.URL.Path)
			fmt.Fprint(w, `{"id":1,"status":"pending"}`)
		}
	}))
	defer srv.Close()
	t.Setenv("ADMIN_TOKEN", testAdminToken)
	code, out, errOut := runCmd(t, "jobs", "retry", "--filter", "type=x", "--url", srv.URL)
	require.Equal(t, 1, code)
	require.Equal(t, []string{"/api/jobs/1/retry", "/api/jobs/3/retry"}, retried, "oldest first, on past the refusal")
	require.Equal(t, "retried 1 (x, u)\nretried 3 (x, u)\nretried 2 of 3 jobs matching status \"failed\", type \"x\"\n", out)
	require.Contains(t, errOut, "job 2: POST "+srv.URL+"/api/jobs/2/retry: 409 job_not_retryable: the job is pending\n")
	require.Contains(t, errOut, "jobhook jobs retry: 1 of 3 jobs could not be retried\n")

	code, out, _ = runCmd(t, "jobs", "retry", "--filter", "type=x", "--dry-run", "--url", srv.URL)
	require.Equal(t, 0, code)
	require.Contains(t, out, "would retry 2 (x, u)\n")
	require.Len(t, retried, 2, "a dry run retries nothing")
}

// TestJobsUsageErrors exit 2 before any call or setting is read.
func TestJobsUsageErrors(t *testing.T) {
	t.Setenv("ADMIN_TOKEN", "")
	t.Setenv("JOBHOOK_URL", "http://127.0.0.1:1")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "--status", "lost"}, `unknown status "lost" (statuses: scheduled, pending, processing, completed, failed, cancelled)`},
		{[]string{"list", "--limit", "0"}, "--limit must be positive, not 0"},
		{[]string{"list", "--page-size", "101"}, "--page-size must be from 1 to 100, not 101"},
		{[]string{"list", "--limit", "x"}, `invalid argument "x" for "--limit"`},
		{[]string{"list", "--url", "localhost:8080"}, `--url: the server's URL "localhost:8080" is not an absolute http(s) URL`},
		{[]string{"get"}, "a job id is needed"},
		{[]string{"get", "abc"}, `unexpected argument "abc": a job id is a positive integer`},
		{[]string{"get", "0"}, `unexpected argument "0": a job id is a positive integer`},
		{[]string{"get", "1", "2"}, `unexpected argument "2": jobhook jobs get takes one job id`},
		{[]string{"cancel"}, "a job id is needed"},
		{[]string{"retry"}, "a job id is needed"},
		{[]string{"retry", "5", "--filter", "type=x"}, `unexpected argument "5": give a job id or --filter, not both`},
		{[]string{"retry", "5", "--dry-run"}, "--dry-run goes with --filter"},
		{[]string{"retry", "--filter", "colour=red"}, `--filter: unknown key "colour" (keys: status, type, user, error, parent, since, until)`},
		{[]string{"retry", "--filter", "type"}, `--filter: "type" is not key=value`},
		{[]string{"retry", "--filter", "type=a,type=b"}, "--filter: type given twice"},
		{[]string{"retry", "--filter", "status=completed"}, "only failed or cancelled jobs can be retried, not completed ones"},
		{[]string{"retry", "--filter", "status=lost"}, `unknown status "lost"`},
		{[]string{"stats", "--since", "30s"}, "--since must be from 1m to 720h, not 30s"},
		{[]string{"stats", "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "--parent", "0"}, `parent: "0" is not a job id`},
		{[]string{"list", "--until", "tomorrow"}, `until: "tomorrow" is neither an RFC 3339 time`},
		{[]string{}, "a command is needed: cancel, get, list, pause, resume, retry, stats"},
		{[]string{"pause"}, "jobhook jobs pause needs exactly one of --type and --key"},
		{[]string{"pause", "--type", "a", "--key", "ig:1"}, "jobhook jobs pause needs exactly one of --type and --key"},
		{[]string{"resume", "ok"}, `unexpected argument "ok": name the type with --type or the key with --key`},
	} {
		code, out, errOut := runCmd(t, append([]string{"jobs"}, tc.args...)...)
		require.Equal(t, 2, code, "%v: %s", tc.args, errOut)
		require.Empty(t, out, tc.args)
		require.Contains(t, errOut, tc.want, tc.args)
		require.NotContains(t, errOut, "ADMIN_TOKEN is not set", tc.args)
	}
	code, _, errOut := runCmd(t, "jobs", "list")
	require.Equal(t, 1, code)
	require.Equal(t, "jobhook jobs list: ADMIN_TOKEN is not set: the jobs commands call the API as the operator, with the server's ADMIN_TOKEN\n", errOut)
	t.Setenv("ADMIN_TOKEN", testAdminToken)
	code, _, errOut = runCmd(t, "jobs", "get", "1")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "GET http://127.0.0.1:1/api/jobs/1: ")
	require.NotContains(t, errOut, testAdminToken)
}

// TestJobsPauseAndResume holds a type and a flow key through the CLI: the
// held type's job waits, saying why, and runs once resumed.
func TestJobsPauseAndResume(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		code, out, errOut := runCmd(t, "jobs", "pause", "--type", "ok", "--reason", "deploying")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "paused type ok: deploying\n", out)
		id := s.create(t, "alice", "ok", 1)[0]
		_, err := s.eng.Worker().Drain(context.Background(), drainBudget)
		require.NoError(t, err)
		code, out, errOut = runCmd(t, "jobs", "get", fmt.Sprint(id), "--json")
		require.Equal(t, 0, code, errOut)
		require.Contains(t, out, `"status": "pending"`)
		require.Contains(t, out, "job type paused by an operator: deploying")

		code, out, errOut = runCmd(t, "jobs", "resume", "--type", "ok")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "resumed type ok\n", out)
		s.drainUntil(t, models.StatusCompleted, 1)

		code, out, errOut = runCmd(t, "jobs", "pause", "--key", "ig:1", "--reason", "review")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "paused key ig:1: paused by an operator: review (0 parked)\n", out)
		code, out, errOut = runCmd(t, "jobs", "resume", "--key", "ig:1")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "resumed key ig:1\n", out)

		code, _, errOut = runCmd(t, "jobs", "pause", "--type", "nope")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "unknown_job_type")
	})
}

// TestJobsStatsCountsWhatTheAPICounts: `jobs stats` shows a row per type
// with the API's counts per status, the total, and the last hour's
// failure rate; --json is the API's answer; a bad --since is a usage error.
func TestJobsStatsCountsWhatTheAPICounts(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		s.create(t, "alice", "boom", 3)
		s.create(t, "bob", "ok", 2)
		s.drainUntil(t, models.StatusCompleted, 2)
		s.drainUntil(t, models.StatusFailed, 3)
		s.create(t, "bob", "ok", 1)

		code, out, errOut := runCmd(t, "jobs", "stats")
		require.Equal(t, 0, code, errOut)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Regexp(t, `^TYPE +SCHEDULED +PENDING +PROCESSING +COMPLETED +FAILED +CANCELLED$`, lines[0])
		require.Regexp(t, `^boom +0 +0 +0 +0 +3 +0$`, lines[1])
		require.Regexp(t, `^ok +0 +1 +0 +2 +0 +0$`, lines[2])
		require.Regexp(t, `^TOTAL +0 +1 +0 +2 +3 +0$`, lines[3])
		require.Regexp(t, `last hour: 2 completed, 3 failed, 0 cancelled, failure rate 60\.0%$`, lines[len(lines)-1])

		code, out, errOut = runCmd(t, "jobs", "stats", "--json", "--since", "1h")
		require.Equal(t, 0, code, errOut)
		var st client.Stats
		require.NoError(t, json.Unmarshal([]byte(out), &st))
		require.EqualValues(t, 3600, st.SinceSeconds)
		require.Len(t, st.Minutes, jobs.StatsMinutes)
		require.Len(t, st.Counts, 3)

		code, _, errOut = runCmd(t, "jobs", "stats", "--since", "1s")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, "--since must be from 1m to 720h")
	})
}

// TestJobsListByParentAndCreationTime: --parent lists a job's children and
// --since/--until bound the creation time.
func TestJobsListByParentAndCreationTime(t *testing.T) {
	testenv.Run(t, func(t *testing.T, b testenv.Backend) {
		s := startJobsServer(t, b)
		ctx := context.Background()
		parent := s.create(t, "alice", "ok", 1)[0]
		var children []int64
		for i := range 2 {
			job, _, err := s.eng.Service().Create(ctx, jobs.CreateRequest{UserID: "alice", Type: "ok", ParentID: &parent, IdempotencyKey: fmt.Sprint("c", i)})
			require.NoError(t, err)
			children = append(children, job.ID)
		}
		code, out, errOut := runCmd(t, "jobs", "list", "--parent", fmt.Sprint(parent), "--json")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, children, idsOf(t, out))

		code, out, errOut = runCmd(t, "jobs", "list", "--since", "1h", "--json")
		require.Equal(t, 0, code, errOut)
		require.Len(t, idsOf(t, out), 3)
		code, out, errOut = runCmd(t, "jobs", "list", "--until", "1h", "--json")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "[]\n", out, "nothing was created over an hour ago")
		code, out, errOut = runCmd(t, "jobs", "list", "--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "--json")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "[]\n", out)

		code, _, errOut = runCmd(t, "jobs", "list", "--since", "yesterday")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, `is neither an RFC 3339 time`)
		code, _, errOut = runCmd(t, "jobs", "list", "--parent", "x")
		require.Equal(t, 2, code)
		require.Contains(t, errOut, `parent: "x" is not a job id`)
	})
}
