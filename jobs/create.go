package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
	"github.com/jobhook/jobhook/models"
)

// MaxBatchSize is the limit on the jobs one CreateMany call (one
// POST /api/jobs/batch) creates.
const MaxBatchSize = 1000

// ErrEmptyBatch is returned by CreateMany for a batch without jobs.
var ErrEmptyBatch = errors.New("a batch needs at least one job")

// ErrBatchTooLarge is returned by CreateMany for a batch of more than
// MaxBatchSize jobs.
var ErrBatchTooLarge = fmt.Errorf("a batch holds at most %d jobs", MaxBatchSize)

// ItemError is why one job of a batch is invalid.
type ItemError struct {
	// Index is the job's position in the batch, from 0.
	Index int
	// Err is the error Create would return for the job alone.
	Err *ValidationError
}

// BatchError is returned by CreateMany when jobs of the batch are invalid;
// nothing of the batch was stored. Items lists every invalid job, by
// index.
type BatchError struct {
	Items []ItemError
}

// Error names how many jobs are invalid and why, the first few by index.
func (e *BatchError) Error() string {
	const shown = 3
	parts := make([]string, 0, shown)
	for _, it := range e.Items[:min(shown, len(e.Items))] {
		parts = append(parts, "job "+strconv.Itoa(it.Index)+": "+it.Err.Error())
	}
	if len(e.Items) > shown {
		parts = append(parts, "…")
	}
	return fmt.Sprintf("%s, nothing was created: %s", invalidJobs(len(e.Items)), strings.Join(parts, "; "))
}

// invalidJobs says how many jobs of a batch are invalid, in words: "1 job
// of the batch is invalid", "3 jobs of the batch are invalid".
func invalidJobs(n int) string {
	if n == 1 {
		return "1 job of the batch is invalid"
	}
	return strconv.Itoa(n) + " jobs of the batch are invalid"
}

// Created is one job of a batch as CreateMany returns it.
type Created struct {
	Job *models.Job
	// Created is false when the job existed already: an earlier job with
	// the same Idempotency-Key, or an earlier job of the same batch.
	Created bool
}

// CreateMany validates and stores up to MaxBatchSize jobs at once, and
// enqueues those due now. It is all or nothing:
//
//   - Each job is checked exactly as Create checks it. If any is invalid,
//     nothing is stored and the error is a *BatchError listing every
//     invalid job by index. An error that is not about one job (an
//     operator's request, ErrSecretsUnconfigured) is returned as it is.
//   - Otherwise the new jobs are stored together: on Postgres one COPY
//     (or, when a concurrent create took a key meanwhile, a COPY and an
//     INSERT … ON CONFLICT in one transaction), on SQLite one
//     transaction. Every job due now is then enqueued in one Redis call,
//     in the batch's order (so jobs of equal priority run in that order),
//     and Notify is called once; scheduled jobs are published as Create
//     publishes them.
//
// Idempotency keys are honoured per job: a job whose key an earlier job
// holds is that job (Created false), and so is a job whose key an earlier
// job of the same batch carries (the first one wins, as two Creates in a
// row would). A concurrent create that takes a key first does not fail
// the batch: its job is returned for that key.
//
// The result has one entry per request, in the same order. If the enqueue
// fails after the insert, the jobs are still created: the reconciler
// enqueues them later.
func (s *Service) CreateMany(ctx context.Context, reqs []CreateRequest) (out []Created, err error) {
	ctx, span := s.tracer.start(ctx, "jobs.create_batch")
	defer func() { endBatch(span, len(reqs), err) }()
	if len(reqs) == 0 {
		return nil, ErrEmptyBatch
	}
	if len(reqs) > MaxBatchSize {
		return nil, fmt.Errorf("create %d jobs: %w", len(reqs), ErrBatchTooLarge)
	}
	prepared, err := s.prepareMany(reqs)
	if err != nil {
		return nil, err
	}
	if s.tracer.on() {
		tp := traceParentOf(ctx)
		for i := range prepared {
			prepared[i].traceParent = tp
		}
	}
	return s.insertJobs(ctx, prepared, true)
}

// ValidateMany checks each request as CreateMany does (Validate, and the
// shape of its secret fields), without touching any backend and without
// changing reqs. Invalid requests give a *BatchError listing them by
// index; the batch's size is not checked.
func (s *Service) ValidateMany(reqs []CreateRequest) error {
	_, err := s.prepareMany(reqs)
	return err
}

// prepareMany prepares a copy of every request, or reports every invalid
// one.
func (s *Service) prepareMany(reqs []CreateRequest) ([]CreateRequest, error) {
	prepared := slices.Clone(reqs)
	var bad []ItemError
	for i := range prepared {
		if err := s.prepare(&prepared[i]); err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				return nil, fmt.Errorf("create batch: job %d: %w", i, err)
			}
			bad = append(bad, ItemError{Index: i, Err: ve})
		}
	}
	if len(bad) > 0 {
		return nil, &BatchError{Items: bad}
	}
	return prepared, nil
}

// prepare validates a request as Create does (its error scrubbed of the
// request's secrets) and seals its secret fields.
func (s *Service) prepare(req *CreateRequest) error {
	if err := s.Validate(req); err != nil {
		return s.scrubValidation(*req, err)
	}
	keys, err := s.flowKeysOf(req)
	if err != nil {
		return s.scrubValidation(*req, err)
	}
	req.flowKeys = keys
	return s.sealSecrets(req)
}

// newJob fills job, the row a prepared request stores, created at now.
// Without an explicit expiry the job expires maxWait after its start (its
// scheduled time, or now); a child never after its parent.
func newJob(job *models.Job, req CreateRequest, now time.Time, maxWait time.Duration) {
	*job = models.Job{
		UserID:      req.UserID,
		Type:        req.Type,
		Status:      models.StatusPending,
		Priority:    req.Priority,
		Payload:     models.JSON(req.Payload),
		MaxAttempts: req.MaxAttempts,
		NextRunAt:   now,
		CreatedAt:   now,
		UpdatedAt:   now,
		ParentID:    req.ParentID,
		FlowKeys:    models.FlowKeys(req.flowKeys),
		TraceParent: req.traceParent,
	}
	if req.ScheduledFor != nil {
		at := req.ScheduledFor.UTC()
		job.ScheduledFor = &at
		if at.After(now) {
			job.Status = models.StatusScheduled
			job.NextRunAt = at
		}
	}
	if req.IdempotencyKey != "" {
		key := req.IdempotencyKey
		job.IdempotencyKey = &key
	}
	var expires time.Time
	if req.ExpiresAt != nil {
		expires = req.ExpiresAt.UTC()
	} else {
		base := now
		if job.ScheduledFor != nil && job.ScheduledFor.After(now) {
			base = *job.ScheduledFor
		}
		expires = base.Add(maxWait)
	}
	if p := req.parentExpiresAt; p != nil && p.Before(expires) {
		expires = p.UTC()
	}
	job.ExpiresAt = &expires
}

// insertJobs stores prepared requests (those whose keys are new), then
// publishes the scheduled ones, enqueues those due now in one call and
// notifies once. It returns every job, redacted, in request order. batch
// says whether the requests are one batch (logged as one) or a group of
// single creates (logged one by one).
func (s *Service) insertJobs(ctx context.Context, reqs []CreateRequest, batch bool) ([]Created, error) {
	out := make([]Created, len(reqs))
	rows := make([]*models.Job, len(reqs))
	stored := make([]models.Job, len(reqs)) // one allocation for the batch
	now := s.cfg.Clock.Now().UTC()
	sameAs := make(map[int]int) // a job of the batch -> the earlier one with its key
	first := make(map[store.Key]int)
	var keys []store.Key
	for i, req := range reqs {
		rows[i] = &stored[i]
		newJob(rows[i], req, now, s.maxWait(req.Type))
		if k, ok := store.KeyOf(rows[i]); ok {
			if j, seen := first[k]; seen {
				sameAs[i] = j
				continue
			}
			first[k] = i
			keys = append(keys, k)
		}
	}
	existing, err := s.byIdempotencyKeys(ctx, keys)
	if err != nil {
		return nil, err
	}
	var fresh []*models.Job
	var freshIdx []int
	for i, row := range rows {
		if _, dup := sameAs[i]; dup {
			continue
		}
		if k, ok := store.KeyOf(row); ok && existing[k] != nil {
			continue
		}
		fresh, freshIdx = append(fresh, row), append(freshIdx, i)
	}
	inserted, err := s.store.Insert(ctx, fresh)
	if err != nil {
		return nil, fmt.Errorf("create job: insert: %w: %w", ErrUnavailable, err)
	}
	// A concurrent create took these keys between the lookup and the
	// insert: its jobs are the ones to return.
	var taken []store.Key
	for n, ok := range inserted {
		if ok {
			out[freshIdx[n]] = Created{Job: fresh[n], Created: true}
			s.fin.metrics.JobsCreated(fresh[n].Type, 1)
			continue
		}
		k, hasKey := store.KeyOf(fresh[n])
		if !hasKey {
			return nil, fmt.Errorf("create job: insert: %w: a job without an idempotency key was not written", ErrUnavailable)
		}
		taken = append(taken, k)
	}
	winners, err := s.byIdempotencyKeys(ctx, taken)
	if err != nil {
		return nil, err
	}
	for k, j := range winners {
		existing[k] = j
	}
	for i, row := range rows {
		if out[i].Job != nil {
			continue
		}
		if _, dup := sameAs[i]; dup {
			continue
		}
		k, _ := store.KeyOf(row)
		j := existing[k]
		if j == nil {
			return nil, fmt.Errorf("create job: the job holding idempotency key %q was not found: %w", k.Key, ErrUnavailable)
		}
		out[i] = Created{Job: j}
	}
	s.announce(ctx, out, batch)
	for i := range out {
		if _, dup := sameAs[i]; !dup {
			s.redact(out[i].Job)
		}
	}
	for i, j := range sameAs {
		job := *out[j].Job
		out[i] = Created{Job: &job}
	}
	return out, nil
}

// byIdempotencyKeys finds the jobs created earlier with keys.
func (s *Service) byIdempotencyKeys(ctx context.Context, keys []store.Key) (map[store.Key]*models.Job, error) {
	if len(keys) == 0 {
		return map[store.Key]*models.Job{}, nil
	}
	found, err := s.store.ByIdempotencyKeys(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("create job: %w: %w", ErrUnavailable, err)
	}
	return found, nil
}

// announce publishes the new scheduled jobs, enqueues the new jobs due
// now in one call and, when any was enqueued, notifies once; it logs a
// batch as one line, single creates a line each.
func (s *Service) announce(ctx context.Context, out []Created, batch bool) {
	var items []queueItem
	var scheduled int
	for _, c := range out {
		if !c.Created {
			continue
		}
		job := c.Job
		switch job.Status {
		case models.StatusScheduled:
			scheduled++
			s.publishScheduled(ctx, s.log.With("job_id", job.ID, "type", job.Type), job)
		case models.StatusPending:
			items = append(items, itemOf(job))
		}
	}
	log := s.log
	if !batch && len(out) == 1 {
		log = s.log.With("job_id", out[0].Job.ID, "type", out[0].Job.Type)
	}
	if len(items) > 0 {
		if err := s.cfg.Queue.Enqueue(ctx, items...); err != nil {
			// The rows are the truth: the reconciler enqueues them again.
			log.Warn("jobs stored but not enqueued; the reconciler will enqueue them", "jobs", len(items), "err", err)
		} else if s.cfg.Notify != nil {
			s.cfg.Notify(ctx)
		}
	}
	if !batch {
		for _, c := range out {
			if c.Created {
				// Each in its own create's trace.
				lctx := ctx
				if s.tracer.on() {
					lctx = withTraceParent(ctx, c.Job.TraceParent)
				}
				s.log.InfoContext(lctx, "job created", "job_id", c.Job.ID, "type", c.Job.Type, "status", c.Job.Status, "priority", c.Job.Priority)
			}
		}
		return
	}
	log.InfoContext(ctx, "jobs created", "batch", len(out), "created", len(items)+scheduled, "pending", len(items), "scheduled", scheduled)
}
