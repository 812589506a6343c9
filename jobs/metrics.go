package jobs

import (
	"context"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// Metrics receives the engine's measurements (see Config.Metrics). The
// engine calls it on its hot paths, so an implementation must be cheap and
// safe for concurrent use, and must not block. jobs defines only the
// interface: the Prometheus implementation lives in internal/metrics, so
// the engine (and every program that embeds it) does not depend on a
// metrics library.
type Metrics interface {
	// JobsCreated counts n jobs of type typ written by a create.
	JobsCreated(typ string, n int)
	// JobClaimed counts a claimed job of type typ that starts to run,
	// having waited wait since it fell due.
	JobClaimed(typ string, wait time.Duration)
	// JobFinished counts one recorded transition of a job of type typ:
	// outcome is one of the Outcome constants. ran is how long the
	// attempt ran; negative when the transition ended no attempt (a
	// cancel of a job that was not running, a snooze).
	JobFinished(typ, outcome string, ran time.Duration)
	// LeaseExpired counts an attempt of a job of type typ whose lease
	// expired (the reaper's lost attempts), whatever became of the job.
	LeaseExpired(typ string)
	// DrainDone counts one drain, which took d.
	DrainDone(d time.Duration)
	// CompleterBatch observes the size of one batch of outcomes the
	// completer wrote, and how many tries it took (1: no retry).
	CompleterBatch(size, tries int)
	// FlowPaused counts a pause of a flow key; prefix is the key's part
	// up to its first ':' (never the whole key: it names users).
	FlowPaused(prefix string)
	// Published counts one call of the Publisher: kind is at, cancel,
	// trigger or trigger_at; result is ok or error.
	Published(kind, result string)
}

// The outcomes JobFinished reports. A transition that ends the job reports
// the job's final status (completed, failed, cancelled), so the counts of
// those three equal the jobs in each final state; the others say why the
// job runs again.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomeRetried   = "retried"
	OutcomeDeferred  = "deferred"
	OutcomeSnoozed   = "snoozed"
	OutcomeLost      = "lost"
	OutcomeCancelled = "cancelled"
	OutcomeReleased  = "released"
)

// noMetrics is the Metrics of an engine configured without one.
type noMetrics struct{}

func (noMetrics) JobsCreated(string, int)                   {}
func (noMetrics) JobClaimed(string, time.Duration)          {}
func (noMetrics) JobFinished(string, string, time.Duration) {}
func (noMetrics) LeaseExpired(string)                       {}
func (noMetrics) DrainDone(time.Duration)                   {}
func (noMetrics) CompleterBatch(int, int)                   {}
func (noMetrics) FlowPaused(string)                         {}
func (noMetrics) Published(string, string)                  {}

// metricsOr returns m, or a Metrics that records nothing when m is nil.
func metricsOr(m Metrics) Metrics {
	if m == nil {
		return noMetrics{}
	}
	return m
}

// outcomeOf names what an applied transition came to: the job's status
// when it is final, else the transition's kind.
func outcomeOf(k store.Kind, status models.Status) string {
	switch status {
	case models.StatusCompleted:
		return OutcomeCompleted
	case models.StatusFailed:
		return OutcomeFailed
	case models.StatusCancelled:
		return OutcomeCancelled
	}
	switch k {
	case store.KindRetry:
		return OutcomeRetried
	case store.KindDeferred:
		return OutcomeDeferred
	case store.KindSnoozed:
		return OutcomeSnoozed
	case store.KindLost:
		return OutcomeLost
	}
	// Released at shutdown.
	return OutcomeReleased
}

// recordFinished reports the applied transitions of items to m.
func recordFinished(m Metrics, items []finishing, applied []store.Applied) {
	for i, it := range items {
		a := applied[i]
		u := it.update
		k := u.Transition.Kind()
		if !a.Applied || k == store.KindUnstarted {
			// Unstarted: given back unrun, neither claimed nor finished.
			continue
		}
		ran := time.Duration(-1)
		if !u.StartedAt.IsZero() && !u.Now.IsZero() && k != store.KindSnoozed {
			ran = max(u.Now.Sub(u.StartedAt), 0)
		}
		if k == store.KindLost {
			m.LeaseExpired(it.typ)
		}
		m.JobFinished(it.typ, outcomeOf(k, a.Status), ran)
	}
}

// flowPrefix is the part of a flow key up to its first ':', the label of
// its pauses.
func flowPrefix(key string) string {
	p, _, _ := strings.Cut(key, ":")
	return p
}

// CountPublishes returns p counting each of its calls and their results
// in m (Metrics.Published). Wrap the Publisher that does the publishing,
// beneath any that queues its calls, so that the results are the real
// ones.
func CountPublishes(p Publisher, m Metrics) Publisher {
	return countedPublisher{p: p, m: metricsOr(m)}
}

// countedPublisher counts the calls of a Publisher.
type countedPublisher struct {
	p Publisher
	m Metrics
}

func (c countedPublisher) count(kind string, err error) {
	r := "ok"
	if err != nil {
		r = "error"
	}
	c.m.Published(kind, r)
}

func (c countedPublisher) PublishAt(ctx context.Context, jobID int64, at time.Time) (string, error) {
	id, err := c.p.PublishAt(ctx, jobID, at)
	c.count("at", err)
	return id, err
}

func (c countedPublisher) Cancel(ctx context.Context, messageID string) error {
	err := c.p.Cancel(ctx, messageID)
	c.count("cancel", err)
	return err
}

func (c countedPublisher) Trigger(ctx context.Context, delay time.Duration) error {
	err := c.p.Trigger(ctx, delay)
	c.count("trigger", err)
	return err
}

func (c countedPublisher) TriggerAt(ctx context.Context, at time.Time) error {
	err := c.p.TriggerAt(ctx, at)
	c.count("trigger_at", err)
	return err
}

// queueWait is how long a job claimed at leased waited since it fell due
// (its next run, or its creation).
func queueWait(job *models.Job, leased time.Time) time.Duration {
	due := job.NextRunAt
	if due.IsZero() {
		due = job.CreatedAt
	}
	return max(leased.Sub(due), 0)
}
