// Package metrics owns jobhook's Prometheus metrics: one private
// registry, the engine's measurements (it implements jobs.Metrics), the
// HTTP requests (a handlers.RequestObserver), the queue depth read from
// Redis on each scrape, and the handler that serves them at /metrics.
// internal/app builds one Metrics and hands it to the engine and the HTTP
// layer; neither imports Prometheus.
package metrics

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/jobhook/jobhook/jobs"
)

// DepthTimeout bounds the Redis read of the queue depth on a scrape.
const DepthTimeout = 500 * time.Millisecond

// Buckets of the histograms, in seconds (sizes for the batches).
var (
	jobBuckets   = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	waitBuckets  = []float64{0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400}
	drainBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 240}
	batchBuckets = prometheus.ExponentialBuckets(1, 2, 11) // 1 … 1024
)

// Metrics is jobhook's set of Prometheus metrics in its own registry. Its
// methods are safe for concurrent use; a nil *Metrics is not valid (pass
// no Metrics to the engine instead).
type Metrics struct {
	reg *prometheus.Registry

	created        *prometheus.CounterVec
	claimed        *prometheus.CounterVec
	finished       *prometheus.CounterVec
	leaseExpired   *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	queueWait      *prometheus.HistogramVec
	drains         prometheus.Counter
	drainDuration  prometheus.Histogram
	batchSize      prometheus.Histogram
	batchRetries   prometheus.Counter
	flowPauses     *prometheus.CounterVec
	publishes      *prometheus.CounterVec
	requests       *prometheus.CounterVec
	requestSeconds *prometheus.HistogramVec
}

var _ jobs.Metrics = (*Metrics)(nil)

// New returns the metrics, registered in a new registry with the Go
// runtime's and the process's collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jobhook", Name: name, Help: help}, labels)
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "jobhook", Name: name, Help: help, Buckets: buckets}, labels)
	}
	m.created = counter("jobs_created_total", "Jobs written by a create, by type.", "type")
	m.claimed = counter("jobs_claimed_total", "Jobs claimed and started, by type.", "type")
	m.finished = counter("jobs_finished_total",
		"Recorded job transitions by type and outcome: completed, failed and cancelled end the job (their counts equal the jobs in those states); retried, deferred, snoozed, lost and released run it again.",
		"type", "outcome")
	m.leaseExpired = counter("lease_expiries_total", "Attempts whose lease expired (worker lost), reaped, by type.", "type")
	m.duration = histogram("job_duration_seconds", "How long a job's attempt ran, by type.", jobBuckets, "type")
	m.queueWait = histogram("job_queue_wait_seconds", "How long a job waited between falling due and being claimed, by type.", waitBuckets, "type")
	m.drains = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jobhook", Name: "drains_total", Help: "Drains run."})
	m.drainDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "jobhook", Name: "drain_duration_seconds", Help: "How long a drain took.", Buckets: drainBuckets})
	m.batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "jobhook", Name: "completer_batch_size", Help: "Job outcomes written per completer batch.", Buckets: batchBuckets})
	m.batchRetries = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jobhook", Name: "completer_retries_total", Help: "Retries of completer batch writes after a transient error."})
	m.flowPauses = counter("flow_pauses_total", "Flow-key pauses, by key prefix (the part before the first ':').", "prefix")
	m.publishes = counter("qstash_publishes_total", "Publisher (QStash) calls by kind (at, cancel, trigger, trigger_at) and result (ok, error).", "kind", "result")
	m.requests = counter("http_requests_total", "HTTP requests by method, route pattern and status code.", "method", "route", "code")
	m.requestSeconds = histogram("http_request_duration_seconds", "HTTP request durations by method and route pattern.", prometheus.DefBuckets, "method", "route")
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.created, m.claimed, m.finished, m.leaseExpired, m.duration, m.queueWait,
		m.drains, m.drainDuration, m.batchSize, m.batchRetries, m.flowPauses, m.publishes,
		m.requests, m.requestSeconds,
	)
	return m
}

// Registry returns the registry the metrics are in, to add collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, ErrorHandling: promhttp.ContinueOnError})
}

// WatchDepth adds the queue depth by status (pending, processing,
// delayed), read with depth on every scrape within DepthTimeout:
// jobhook_queue_depth{status}, and jobhook_queue_depth_up (0 when the
// read failed).
func (m *Metrics) WatchDepth(depth func(context.Context) (jobs.Depth, error)) error {
	return m.reg.Register(&depthCollector{depth: depth})
}

// WatchUnfinished adds the unfinished jobs in the database by status
// (pending, scheduled, processing) and type, read with count on every
// scrape within DepthTimeout: jobhook_jobs{status,type}, and
// jobhook_jobs_up (0 when the read failed). count reads an index of the
// unfinished rows only (see jobs.Service.Unfinished), never the table.
func (m *Metrics) WatchUnfinished(count func(context.Context) ([]jobs.StatusTypeCount, error)) error {
	return m.reg.Register(&unfinishedCollector{count: count})
}

// JobsCreated implements jobs.Metrics.
func (m *Metrics) JobsCreated(typ string, n int) { m.created.WithLabelValues(typ).Add(float64(n)) }

// JobClaimed implements jobs.Metrics.
func (m *Metrics) JobClaimed(typ string, wait time.Duration) {
	m.claimed.WithLabelValues(typ).Inc()
	m.queueWait.WithLabelValues(typ).Observe(wait.Seconds())
}

// JobFinished implements jobs.Metrics.
func (m *Metrics) JobFinished(typ, outcome string, ran time.Duration) {
	m.finished.WithLabelValues(typ, outcome).Inc()
	if ran >= 0 {
		m.duration.WithLabelValues(typ).Observe(ran.Seconds())
	}
}

// LeaseExpired implements jobs.Metrics.
func (m *Metrics) LeaseExpired(typ string) { m.leaseExpired.WithLabelValues(typ).Inc() }

// DrainDone implements jobs.Metrics.
func (m *Metrics) DrainDone(d time.Duration) {
	m.drains.Inc()
	m.drainDuration.Observe(d.Seconds())
}

// CompleterBatch implements jobs.Metrics.
func (m *Metrics) CompleterBatch(size, tries int) {
	m.batchSize.Observe(float64(size))
	if tries > 1 {
		m.batchRetries.Add(float64(tries - 1))
	}
}

// FlowPaused implements jobs.Metrics.
func (m *Metrics) FlowPaused(prefix string) { m.flowPauses.WithLabelValues(prefix).Inc() }

// Published implements jobs.Metrics.
func (m *Metrics) Published(kind, result string) { m.publishes.WithLabelValues(kind, result).Inc() }

// ObserveRequest counts one HTTP request (a handlers.RequestObserver).
func (m *Metrics) ObserveRequest(method, route string, code int, took time.Duration) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	m.requestSeconds.WithLabelValues(method, route).Observe(took.Seconds())
}

// depthCollector reads the queue depth from Redis on each scrape.
type depthCollector struct {
	depth func(context.Context) (jobs.Depth, error)
}

var (
	depthDesc   = prometheus.NewDesc("jobhook_queue_depth", "Jobs in the Redis queue by status (pending, processing, delayed), read at scrape time.", []string{"status"}, nil)
	depthUpDesc = prometheus.NewDesc("jobhook_queue_depth_up", "1 when the last scrape read the queue depth, 0 when the read failed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (d *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- depthUpDesc
}

// Collect implements prometheus.Collector.
func (d *depthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), DepthTimeout)
	defer cancel()
	dep, err := d.depth(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(depthUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(depthUpDesc, prometheus.GaugeValue, 1)
	for status, n := range map[string]int64{"pending": dep.Pending, "processing": dep.Processing, "delayed": dep.Delayed} {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(n), status)
	}
}

// unfinishedCollector reads the unfinished jobs by status and type from
// the database on each scrape.
type unfinishedCollector struct {
	count func(context.Context) ([]jobs.StatusTypeCount, error)
}

var (
	unfinishedDesc   = prometheus.NewDesc("jobhook_jobs", "Unfinished jobs in the database by status (pending, scheduled, processing) and type, read at scrape time.", []string{"status", "type"}, nil)
	unfinishedUpDesc = prometheus.NewDesc("jobhook_jobs_up", "1 when the last scrape read the unfinished jobs, 0 when the read failed.", nil, nil)
)

// Describe implements prometheus.Collector.
func (u *unfinishedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- unfinishedDesc
	ch <- unfinishedUpDesc
}

// Collect implements prometheus.Collector. A status and type with no
// job has no series (sum by status, or use "or vector(0)", for zeros).
func (u *unfinishedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), DepthTimeout)
	defer cancel()
	counts, err := u.count(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(unfinishedUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(unfinishedUpDesc, prometheus.GaugeValue, 1)
	for _, c := range counts {
		ch <- prometheus.MustNewConstMetric(unfinishedDesc, prometheus.GaugeValue, float64(c.Count), string(c.Status), c.Type)
	}
}
