package jobs

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jobhook/jobhook/models"
)

// Stats windows: DefaultStatsSince is the window of the finished counts
// when none is asked for, MaxStatsSince the longest one may ask for, and
// StatsMinutes the minutes of the throughput series.
const (
	DefaultStatsSince = 24 * time.Hour
	MaxStatsSince     = 30 * 24 * time.Hour
	StatsMinutes      = 60
)

// StatsRequest asks for the counts a user (or Operator) sees.
type StatsRequest struct {
	UserID string
	// Since is the window of the finished counts: the jobs that finished
	// this long ago or less. Zero is DefaultStatsSince; at most
	// MaxStatsSince.
	Since time.Duration
}

// StatusTypeCount is how many jobs of one type are in one status.
type StatusTypeCount struct {
	Status models.Status `json:"status"`
	Type   string        `json:"type"`
	Count  int64         `json:"count"`
}

// MinuteCount is how many jobs reached each final status in the minute
// that starts at Start.
type MinuteCount struct {
	Start     time.Time `json:"start"`
	Completed int64     `json:"completed"`
	Failed    int64     `json:"failed"`
	Cancelled int64     `json:"cancelled"`
}

// Stats are a user's (or every user's, for Operator) job counts.
type Stats struct {
	// At is when they were read.
	At time.Time `json:"at"`
	// Since is the window of the finished counts.
	Since time.Duration `json:"-"`
	// Counts has every unfinished job (pending, scheduled, processing) and
	// the finished ones (completed, failed, cancelled) that finished within
	// Since, by status and type: ordered by status (lifecycle order), then
	// type. A status and type with no jobs is left out.
	Counts []StatusTypeCount `json:"counts"`
	// Minutes are the last StatsMinutes minutes, oldest first, every one
	// present: the current minute, so far, is the last.
	Minutes []MinuteCount `json:"minutes"`
}

// Total is the sum of the counts in status.
func (st Stats) Total(status models.Status) int64 {
	var n int64
	for _, c := range st.Counts {
		if c.Status == status {
			n += c.Count
		}
	}
	return n
}

// Unfinished counts every user's unfinished jobs (pending, scheduled,
// processing) by status and type, from the partial index that holds just
// them: the jobhook_jobs metric reads it on every scrape.
func (s *Service) Unfinished(ctx context.Context) ([]StatusTypeCount, error) {
	rows, err := s.store.OpenCounts(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("count unfinished jobs: %w: %w", ErrUnavailable, err)
	}
	out := make([]StatusTypeCount, len(rows))
	for i, c := range rows {
		out[i] = StatusTypeCount{Status: c.Status, Type: c.Type, Count: c.Count}
	}
	return out, nil
}

// Stats counts a user's jobs by status and type (Operator: every user's),
// with the jobs finished per minute over the last hour. The unfinished
// counts read the rows in those statuses, which the partial indexes on
// status hold; the finished counts read the jobs finished within the
// window, by completed_at.
func (s *Service) Stats(ctx context.Context, req StatsRequest) (Stats, error) {
	if req.Since == 0 {
		req.Since = DefaultStatsSince
	}
	if req.Since < time.Minute || req.Since > MaxStatsSince {
		return Stats{}, invalid("invalid_since", "since", "since must be a duration from 1m to %s", MaxStatsSince)
	}
	now := s.cfg.Clock.Now().UTC()
	owner := ownerScope(req.UserID)
	open, err := s.store.OpenCounts(ctx, owner)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w: %w", ErrUnavailable, err)
	}
	done, err := s.store.FinishedCounts(ctx, owner, now.Add(-req.Since))
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w: %w", ErrUnavailable, err)
	}
	first := now.Truncate(time.Minute).Add(-(StatsMinutes - 1) * time.Minute)
	perMinute, err := s.store.FinishedPerMinute(ctx, owner, first)
	if err != nil {
		return Stats{}, fmt.Errorf("stats: %w: %w", ErrUnavailable, err)
	}

	st := Stats{At: now, Since: req.Since, Counts: make([]StatusTypeCount, 0, len(open)+len(done))}
	for _, c := range append(open, done...) {
		st.Counts = append(st.Counts, StatusTypeCount{Status: c.Status, Type: c.Type, Count: c.Count})
	}
	slices.SortFunc(st.Counts, func(a, b StatusTypeCount) int {
		return cmp.Or(cmp.Compare(slices.Index(models.Statuses, a.Status), slices.Index(models.Statuses, b.Status)), cmp.Compare(a.Type, b.Type))
	})
	st.Minutes = make([]MinuteCount, StatsMinutes)
	for i := range st.Minutes {
		st.Minutes[i].Start = first.Add(time.Duration(i) * time.Minute)
	}
	firstMinute := first.Unix() / 60
	for _, c := range perMinute {
		i := c.Minute - firstMinute
		if i < 0 || i >= StatsMinutes {
			continue // a clock step between the reads
		}
		m := &st.Minutes[i]
		switch c.Status {
		case models.StatusCompleted:
			m.Completed += c.Count
		case models.StatusFailed:
			m.Failed += c.Count
		case models.StatusCancelled:
			m.Cancelled += c.Count
		}
	}
	return st, nil
}
