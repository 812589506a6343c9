package metrics_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/jobstest"
	"github.com/jobhook/jobhook/internal/metrics"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const (
	metricsToken = "metrics-token-0123456789abcdef0123456789"
	workerSecret = "worker-secret-0123456789abcdef0123456789"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// once runs a job's first attempt one way and every later one another.
type once struct {
	mu   sync.Mutex
	seen map[int64]bool
}

func (o *once) first(id int64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.seen[id] {
		return false
	}
	o.seen[id] = true
	return true
}

// scrape reads GET /metrics through srv with token.
func scrape(t *testing.T, srv http.Handler, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	srv.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	require.NoError(t, err)
	return fams
}

// sample finds the metric of family name whose labels are labels
// (name=value pairs), or nil.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			if got[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if match {
			return m
		}
	}
	return nil
}

// counter is the value of a counter sample, 0 when absent.
func counter(fams map[string]*dto.MetricFamily, name string, labels ...string) int {
	if m := sample(fams, name, labels...); m != nil {
		return int(m.GetCounter().GetValue())
	}
	return 0
}

// histCount is the observation count of a histogram sample, 0 when absent.
func histCount(fams map[string]*dto.MetricFamily, name string, labels ...string) int {
	if m := sample(fams, name, labels...); m != nil {
		return int(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// TestMetricsMatchFinalStates runs mixed jobs (completed, failed after
// retries, deferred then completed, snoozed then completed, cancelled)
// through a real engine, drained by POST /api/workers, then scrapes
// /metrics and compares every counter to the jobs' final states and
// attempts.
func TestMetricsMatchFinalStates(t *testing.T) {
	testenv.Run(t, func(t *testing.T, be testenv.Backend) {
		ctx := context.Background()
		m := metrics.New()
		deferred, snoozed := &once{seen: map[int64]bool{}}, &once{seen: map[int64]bool{}}
		reg := jobs.NewRegistry()
		reg.MustRegister("ok", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			return json.RawMessage(`{}`), nil
		}))
		reg.MustRegister("flaky", jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
			return nil, errors.New("always broken")
		}))
		reg.MustRegister("later", jobs.HandlerFunc(func(_ context.Context, j *models.Job) (json.RawMessage, error) {
			if deferred.first(j.ID) {
				return nil, jobs.RetryAfter(errors.New("busy"), time.Millisecond)
			}
			return json.RawMessage(`{}`), nil
		}))
		reg.MustRegister("nap", jobs.HandlerFunc(func(_ context.Context, j *models.Job) (json.RawMessage, error) {
			if snoozed.first(j.ID) {
				return nil, jobs.Snooze(time.Millisecond)
			}
			return json.RawMessage(`{}`), nil
		}))
		eng := jobstest.Start(t, jobs.Config{
			DB: be.DB.Gorm, Redis: be.Redis, RedisPrefix: be.Prefix, Registry: reg, Logger: quiet(),
			Backoff: func(int) time.Duration { return time.Millisecond }, Metrics: m,
		})
		require.NoError(t, m.WatchDepth(eng.Depth))
		srv := handlers.New(handlers.Config{
			Service: eng.Service(), Worker: eng.Worker(), Verifier: auth.NewHS256Verifier([]byte("user-secret-0123456789abcdef012345")),
			WorkerSecret: workerSecret, Metrics: m.Handler(), MetricsToken: metricsToken, ObserveRequest: m.ObserveRequest, Logger: quiet(),
		})

		svc := eng.Service()
		create := func(typ string, n int, req jobs.CreateRequest) []int64 {
			var ids []int64
			for range n {
				req.UserID, req.Type = "u", typ
				j, _, err := svc.Create(ctx, req)
				require.NoError(t, err)
				ids = append(ids, j.ID)
			}
			return ids
		}
		create("ok", 5, jobs.CreateRequest{})
		create("flaky", 2, jobs.CreateRequest{MaxAttempts: 3})
		create("later", 2, jobs.CreateRequest{})
		create("nap", 2, jobs.CreateRequest{})
		far := time.Now().Add(time.Hour)
		for _, id := range create("ok", 2, jobs.CreateRequest{ScheduledFor: &far}) {
			_, err := svc.Cancel(ctx, "u", id)
			require.NoError(t, err)
		}

		// Drain through the API until every job is final.
		drains := 0
		deadline := time.Now().Add(30 * time.Second)
		for {
			req := httptest.NewRequest(http.MethodPost, "/api/workers?budget=20s", strings.NewReader(""))
			req.Header.Set("Authorization", "Bearer "+workerSecret)
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			drains++
			var open int64
			require.NoError(t, be.DB.Gorm.Model(&models.Job{}).Where("status NOT IN ?", []models.Status{models.StatusCompleted, models.StatusFailed, models.StatusCancelled}).Count(&open).Error)
			if open == 0 {
				break
			}
			require.True(t, time.Now().Before(deadline), "%d jobs still unfinished", open)
		}

		fams := scrape(t, srv, metricsToken)

		// The final-state counters equal the jobs in each final state, by type.
		var rows []struct {
			Type   string
			Status models.Status
			N      int
		}
		require.NoError(t, be.DB.Gorm.Model(&models.Job{}).Select("type, status, COUNT(*) AS n").Group("type, status").Scan(&rows).Error)
		finals := 0
		for _, r := range rows {
			require.Equal(t, r.N, counter(fams, "jobhook_jobs_finished_total", "type", r.Type, "outcome", string(r.Status)), "%s %s", r.Type, r.Status)
			finals += r.N
		}
		require.Equal(t, 13, finals)
		for typ, want := range map[string]int{"ok": 7, "flaky": 2, "later": 2, "nap": 2} {
			require.Equal(t, want, counter(fams, "jobhook_jobs_created_total", "type", typ), typ)
		}
		for _, c := range []struct {
			typ, outcome string
			want         int
		}{
			{"ok", "completed", 5}, {"ok", "cancelled", 2}, {"flaky", "failed", 2}, {"flaky", "retried", 4},
			{"later", "deferred", 2}, {"later", "completed", 2}, {"nap", "snoozed", 2}, {"nap", "completed", 2},
		} {
			require.Equal(t, c.want, counter(fams, "jobhook_jobs_finished_total", "type", c.typ, "outcome", c.outcome), "%s %s", c.typ, c.outcome)
		}
		// Every attempt in the history is a claim, a duration, a queue wait.
		var attempts []struct {
			Type string
			N    int
		}
		require.NoError(t, be.DB.Gorm.Table("job_attempts").Select("jobs.type AS type, COUNT(*) AS n").
			Joins("JOIN jobs ON jobs.id = job_attempts.job_id").Group("jobs.type").Scan(&attempts).Error)
		claims := map[string]int{"ok": 5, "flaky": 6, "later": 4, "nap": 4}
		for _, a := range attempts {
			require.Equal(t, a.N, histCount(fams, "jobhook_job_duration_seconds", "type", a.Type), a.Type)
		}
		for typ, want := range claims {
			require.Equal(t, want, counter(fams, "jobhook_jobs_claimed_total", "type", typ), typ)
			require.Equal(t, want, histCount(fams, "jobhook_job_queue_wait_seconds", "type", typ), typ)
		}
		// Every claimed attempt's outcome went through the completer.
		batches := sample(fams, "jobhook_completer_batch_size")
		require.NotNil(t, batches)
		require.Equal(t, 19, int(batches.GetHistogram().GetSampleSum()))
		require.Equal(t, drains, counter(fams, "jobhook_drains_total"))
		require.Equal(t, drains, histCount(fams, "jobhook_drain_duration_seconds"))
		require.Equal(t, drains, counter(fams, "jobhook_http_requests_total", "method", "POST", "route", "/api/workers", "code", "200"))
		require.Equal(t, drains, histCount(fams, "jobhook_http_request_duration_seconds", "method", "POST", "route", "/api/workers"))
		require.Equal(t, 1, int(sample(fams, "jobhook_queue_depth_up").GetGauge().GetValue()))
		for _, s := range []string{"pending", "processing", "delayed"} {
			d := sample(fams, "jobhook_queue_depth", "status", s)
			require.NotNil(t, d, s)
			require.Zero(t, d.GetGauge().GetValue(), s)
		}
	})
}

// TestUnfinishedJobsByStatusAndType: jobhook_jobs counts the unfinished
// jobs of each status and type as the database holds them, and drops a
// status and type once its jobs finish; a failed read says so in
// jobhook_jobs_up.
func TestUnfinishedJobsByStatusAndType(t *testing.T) {
	testenv.Run(t, func(t *testing.T, be testenv.Backend) {
		m := metrics.New()
		reg := jobs.NewRegistry()
		for _, typ := range []string{"alpha", "beta"} {
			reg.MustRegister(typ, jobs.HandlerFunc(func(context.Context, *models.Job) (json.RawMessage, error) {
				return json.RawMessage(`{}`), nil
			}))
		}
		eng := jobstest.Start(t, jobs.Config{DB: be.DB.Gorm, Redis: be.Redis, RedisPrefix: be.Prefix, Registry: reg, Logger: quiet(), Metrics: m})
		require.NoError(t, m.WatchUnfinished(eng.Service().Unfinished))
		svc := eng.Service()
		later := time.Now().Add(time.Hour)
		for i, req := range []jobs.CreateRequest{{Type: "alpha"}, {Type: "alpha"}, {Type: "beta"}, {Type: "beta", ScheduledFor: &later}} {
			req.UserID = "u" + string(rune('a'+i))
			_, _, err := svc.Create(context.Background(), req)
			require.NoError(t, err)
		}
		const token = "a-metrics-token-of-some-length-1234"
		srv := handlers.New(handlers.Config{
			Service: svc, Worker: eng.Worker(), Verifier: auth.NewHS256Verifier([]byte("user-secret-0123456789abcdef012345")),
			WorkerSecret: "w-secret-0123456789abcdef0123456789", Metrics: m.Handler(), MetricsToken: token, Logger: quiet(),
		})
		gauge := func(fams map[string]*dto.MetricFamily, status, typ string) *dto.Metric {
			return sample(fams, "jobhook_jobs", "status", status, "type", typ)
		}
		fams := scrape(t, srv, token)
		require.Equal(t, 1, int(sample(fams, "jobhook_jobs_up").GetGauge().GetValue()))
		require.Equal(t, 2, int(gauge(fams, "pending", "alpha").GetGauge().GetValue()))
		require.Equal(t, 1, int(gauge(fams, "pending", "beta").GetGauge().GetValue()))
		require.Equal(t, 1, int(gauge(fams, "scheduled", "beta").GetGauge().GetValue()))
		require.Len(t, fams["jobhook_jobs"].GetMetric(), 3)

		_, err := eng.Worker().Drain(context.Background(), 4*jobstest.TestJobTimeout)
		require.NoError(t, err)
		fams = scrape(t, srv, token)
		require.Nil(t, gauge(fams, "pending", "alpha"), "finished jobs are not counted")
		require.Equal(t, 1, int(gauge(fams, "scheduled", "beta").GetGauge().GetValue()))

		failing := metrics.New()
		require.NoError(t, failing.WatchUnfinished(func(context.Context) ([]jobs.StatusTypeCount, error) {
			return nil, errors.New("database down")
		}))
		rec := httptest.NewRecorder()
		failing.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		require.Contains(t, rec.Body.String(), "jobhook_jobs_up 0")
	})
}
