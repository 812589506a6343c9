package e2e_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jobhook/jobhook/handlers"
	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/qstashclient"
	"github.com/jobhook/jobhook/internal/qstashdev"
	"github.com/jobhook/jobhook/internal/secretbox"
	"github.com/jobhook/jobhook/internal/testenv"
	"github.com/jobhook/jobhook/jobs"
	"github.com/jobhook/jobhook/models"
)

const (
	jwtSecret    = "e2e-jwt-secret"
	workerSecret = "e2e-worker-secret"
)

// system is jobhook wired to an in-process QStash on one backend, with one
// manual clock for the engine and QStash alike.
type system struct {
	b       testenv.Backend
	clock   *jobs.ManualClock
	dev     *qstashdev.Server
	client  *qstashclient.Client
	service *jobs.Service
	engine  *jobs.Engine
	server  *httptest.Server
	calls   *calls
	// WorkerURL is what QStash calls.
	workerURL string
}

type options struct {
	// publisher replaces the QStash client as the service's Publisher.
	publisher func(s *system) jobs.Publisher
	// trigger publishes a debounced trigger after each create.
	trigger bool
	// register adds more job types.
	register func(reg *jobs.Registry)
	// secrets encrypts secret payload fields.
	secrets *secretbox.Keyring
	// realClock runs the engine and QStash on the system clock, QStash
	// delivering from its background loop (advance does not work then).
	realClock bool
	// backoff spaces the engine's retries.
	backoff jobs.BackoffFunc
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newSystem(t *testing.T, b testenv.Backend, o options) *system {
	t.Helper()
	s := &system{b: b, clock: jobs.NewManualClock(time.Now().UTC().Truncate(time.Minute)), calls: &calls{n: map[int64]int{}}}
	keys, err := qstashdev.GenerateKeys()
	require.NoError(t, err)
	var clock jobs.Clock = s.clock
	if o.realClock {
		clock = jobs.SystemClock{}
	}
	s.dev, err = qstashdev.New(qstashdev.Config{
		Token: keys.Token, CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey,
		Clock: clock, Logger: quiet(),
		HTTPClient: &http.Client{Transport: &http.Transport{}, Timeout: 30 * time.Second},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.dev.Close() })
	if o.realClock {
		require.NoError(t, s.dev.Start(context.Background()))
	}

	reg := jobs.NewRegistry()
	reg.MustRegister("record", jobs.HandlerFunc(func(_ context.Context, job *models.Job) (json.RawMessage, error) {
		s.calls.add(job.ID)
		return json.RawMessage(`{"ok":true}`), nil
	}))
	if o.register != nil {
		o.register(reg)
	}

	// The server's URL is known only once it listens: route through a
	// handler that is filled in below.
	var app http.Handler
	s.server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { app.ServeHTTP(w, r) }))
	t.Cleanup(s.server.Close)
	s.workerURL = s.server.URL + "/api/workers"

	s.client, err = qstashclient.New(qstashclient.Config{
		BaseURL: "http://qstash.test", Token: keys.Token, WorkerURL: s.workerURL,
		HTTPClient: &http.Client{Transport: s.dev.Transport()},
	})
	require.NoError(t, err)
	var publisher jobs.Publisher = s.client
	if o.publisher != nil {
		publisher = o.publisher(s)
	}
	s.engine, err = jobs.New(jobs.Config{DB: b.DB.Gorm, Redis: b.Redis, RedisPrefix: b.Prefix, Registry: reg, Clock: clock, Logger: quiet(),
		Secrets: o.secrets, Backoff: o.backoff, Publisher: publisher, TriggerWindow: time.Second, DisableTriggers: !o.trigger})
	require.NoError(t, err)
	s.service = s.engine.Service()
	worker := s.engine.Worker()
	check, err := handlers.QStashSignatureAuth(handlers.QStashSignatureConfig{CurrentSigningKey: keys.CurrentSigningKey, NextSigningKey: keys.NextSigningKey, URL: s.workerURL})
	require.NoError(t, err)
	app = handlers.New(handlers.Config{
		Service: s.service, Worker: worker, Verifier: auth.NewHS256Verifier([]byte(jwtSecret)),
		WorkerSecret: workerSecret, WorkerAuth: []handlers.WorkerAuthFunc{check}, Logger: quiet(),
	})
	return s
}

func (s *system) create(t *testing.T, req jobs.CreateRequest) *models.Job {
	t.Helper()
	req.UserID, req.Type = "alice", "record"
	job, _, err := s.service.Create(context.Background(), req)
	require.NoError(t, err)
	return job
}

func (s *system) status(t *testing.T, id int64) models.Status {
	t.Helper()
	job, err := s.service.Get(context.Background(), "alice", id)
	require.NoError(t, err)
	return job.Status
}

func (s *system) advance(t *testing.T, d time.Duration) {
	t.Helper()
	_, err := s.dev.Advance(context.Background(), d)
	require.NoError(t, err)
}

// calls counts handler runs per job.
type calls struct {
	mu sync.Mutex
	n  map[int64]int
}

func (c *calls) add(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[id]++
}

func (c *calls) of(id int64) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}
