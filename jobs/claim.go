package jobs

// Claims: jobs taken from the queue and moved to processing under a lease.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/jobhook/jobhook/models"
)

// claim takes up to n jobs from the queue and moves their rows from pending
// to processing in one statement. Ids whose rows are not pending and due
// are dropped from the queue (or, if pending but not due, delayed) and
// counted as skipped. Each call has a deadline (queueCallTimeout for Redis,
// claimTimeout for the statement and its retries), none later than by.
// more says the queue call left jobs unlooked-at (it set aside many held
// back by their flow keys): claim again before concluding the queue is
// empty. Jobs set aside until a time get a wake-up then.
func (w *Worker) claim(ctx context.Context, n int, by time.Time) (rows []models.Job, skipped int, more bool, err error) {
	lease := w.cfg.LeaseDuration
	qctx, cancel := boundedCtx(ctx, queueCallTimeout, by)
	c, err := w.cfg.Queue.ClaimBatch(qctx, n, lease)
	cancel()
	if err != nil {
		return nil, 0, false, fmt.Errorf("drain: claim: %w: %w", ErrUnavailable, err)
	}
	if !c.WakeAt.IsZero() {
		w.fin.wakeAt(ctx, c.WakeAt)
	}
	rows, skipped, err = w.claimIDs(ctx, c.IDs, lease, by)
	return rows, skipped, c.More, err
}

// claimIDs moves the rows of ids the queue claimed to processing; see
// claim.
func (w *Worker) claimIDs(ctx context.Context, ids []int64, lease time.Duration, by time.Time) ([]models.Job, int, error) {
	if len(ids) == 0 {
		return nil, 0, nil
	}
	until := time.Now().Add(claimTimeout(lease))
	if until.After(by) {
		until = by
	}
	rows, err := w.claimRows(ctx, ids, lease, until)
	if err != nil {
		// The rows are unchanged: hand the ids back so nothing is lost.
		items := make([]queueItem, len(ids))
		for i, id := range ids {
			items[i] = queueItem{ID: id}
		}
		qctx, cancel := boundedCtx(ctx, queueCallTimeout, time.Time{})
		defer cancel()
		if rerr := w.cfg.Queue.Release(qctx, items...); rerr != nil {
			w.log.Error("claimed jobs neither started nor released; the reconciler will restore them", "err", rerr)
		}
		return nil, 0, fmt.Errorf("drain: %w: %w", ErrUnavailable, err)
	}
	// Keep queue order: RETURNING gives no order guarantee.
	pos := make(map[int64]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	slices.SortFunc(rows, func(a, b models.Job) int { return pos[a.ID] - pos[b.ID] })
	if len(rows) == len(ids) {
		return rows, 0, nil
	}
	claimed := make(map[int64]bool, len(rows))
	for _, r := range rows {
		claimed[r.ID] = true
	}
	var others []int64
	for _, id := range ids {
		if !claimed[id] {
			others = append(others, id)
		}
	}
	sctx, cancel := boundedCtx(ctx, queueCallTimeout, time.Time{})
	defer cancel()
	if err := w.settleSkipped(sctx, others); err != nil {
		w.log.Warn("settling skipped jobs", "err", err)
	}
	return rows, len(others), nil
}

// claimRows moves the rows of claimed ids to processing. A transient
// failure (a connection lost, a deadline) is retried with the same lease id
// until until (every try ends by then): the claim is fenced by its lease
// id, so rows a lost try already claimed come back unchanged.
func (w *Worker) claimRows(ctx context.Context, ids []int64, lease time.Duration, until time.Time) ([]models.Job, error) {
	leaseID := newLeaseID()
	var rows []models.Job
	_, err := retryTransient(ctx, until, sleepCtx, func(ctx context.Context) error {
		var err error
		rows, err = w.store.Claim(ctx, ids, w.cfg.Clock.Now(), lease, leaseID)
		return err
	}, func(try int, wait time.Duration, err error) {
		w.log.Warn("claim failed; retrying", "count", len(ids), "try", try, "in", wait, "err", err)
	})
	return rows, err
}

// settleSkipped handles claimed ids whose rows could not be moved to
// processing: a pending job that is not due yet goes back to delayed; any
// other (finished, cancelled, scheduled, running elsewhere, deleted) leaves
// the queue.
func (w *Worker) settleSkipped(ctx context.Context, ids []int64) error {
	rows, err := w.store.Lookup(ctx, ids)
	if err != nil {
		return fmt.Errorf("skipped jobs: %w", err)
	}
	drop := slices.Clone(ids)
	for _, r := range rows {
		if r.Status == models.StatusPending {
			if err := w.cfg.Queue.EnqueueAt(ctx, r.NextRunAt, itemOf(&r)); err != nil {
				return err
			}
			drop = slices.DeleteFunc(drop, func(id int64) bool { return id == r.ID })
		}
	}
	return w.cfg.Queue.Ack(ctx, drop...)
}

// newLeaseID returns a random claim id.
func newLeaseID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// claimResult is what one claim of a drain brought back.
type claimResult struct {
	n       int // the slots it was made for
	rows    []models.Job
	skipped int
	// more says the queue left jobs unlooked-at: claim again.
	more bool
	err  error
	// quiet says nothing ran, waited to be written or was being claimed
	// when the claim began: an empty answer then means the queue is
	// drained.
	quiet bool
	// leased is when the claim began: the leases of its rows run from
	// then.
	leased time.Time
}
