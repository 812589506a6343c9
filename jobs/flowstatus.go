package jobs

// The key-status view: what operators see of the flow keys.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// FlowKeyStatus is the state of one flow key across every instance.
type FlowKeyStatus struct {
	Key string `json:"key"`
	// Limit is the limit that applies (the longest matching prefix), nil
	// when none does.
	Limit *FlowLimitView `json:"limit,omitempty"`
	// Running is how many of the key's jobs hold a slot now (counted only
	// for a key with a concurrency limit).
	Running int64 `json:"running"`
	// Parked is how many wait for a slot of the key's concurrency limit.
	Parked int64 `json:"parked"`
	// Paused says the key's jobs wait: a provider asked it to wait until
	// PausedUntil, or an operator holds it (no PausedUntil) until resumed.
	// PauseReason says why.
	Paused      bool       `json:"paused"`
	PausedUntil *time.Time `json:"pausedUntil,omitempty"`
	PauseReason string     `json:"pauseReason,omitempty"`
	// LastSeen is when a claim last met one of the key's jobs (or a pause
	// was set), nil if never.
	LastSeen *time.Time `json:"lastSeen,omitempty"`
}

// FlowLimitView is a FlowLimit as the API shows it.
type FlowLimitView struct {
	Prefix      string `json:"prefix"`
	Concurrency int    `json:"concurrency"`
	Rate        int    `json:"rate,omitempty"`
	Interval    string `json:"interval,omitempty"`
}

// limitOf returns the limit of key: the longest matching prefix.
func (q *redisQueue) limitOf(key string) *FlowLimit {
	var best *FlowLimit
	for i, l := range q.byKey {
		if strings.HasPrefix(key, l.Prefix) && (best == nil || len(l.Prefix) > len(best.Prefix)) {
			best = &q.byKey[i]
		}
	}
	return best
}

// maxListedKeys bounds the keys FlowKeys lists.
const maxListedKeys = 1000

// FlowKeys returns the status of the keys seen most recently, newest
// first, of those that start with prefix (all when empty), at most limit
// (1–maxListedKeys).
func (q *redisQueue) FlowKeys(ctx context.Context, prefix string, limit int) ([]FlowKeyStatus, error) {
	limit = min(max(limit, 1), maxListedKeys)
	seen, err := q.rdb.ZRevRange(ctx, q.Key("flowkeys"), 0, 10*maxListedKeys-1).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: list flow keys: %w", err)
	}
	var keys []string
	for _, k := range seen {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
			if len(keys) == limit {
				break
			}
		}
	}
	return q.FlowStatus(ctx, keys...)
}

// FlowStatus returns the status of each key, in one round trip.
func (q *redisQueue) FlowStatus(ctx context.Context, keys ...string) ([]FlowKeyStatus, error) {
	if len(keys) == 0 {
		return []FlowKeyStatus{}, nil
	}
	now := q.clock.Now()
	type cmds struct {
		running, parked *redis.IntCmd
		pause           *redis.StringCmd
		seen            *redis.FloatCmd
	}
	cs := make([]cmds, len(keys))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cs[i] = cmds{
				running: p.ZCount(ctx, q.Key("run:"+k), fmt.Sprintf("(%d", now.UnixMilli()), "+inf"),
				parked:  p.ZCard(ctx, q.Key("parked:"+k)),
				pause:   p.HGet(ctx, q.Key("pauses"), k),
				seen:    p.ZScore(ctx, q.Key("flowkeys"), k),
			}
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("queue: status of %d flow keys: %w", len(keys), err)
	}
	out := make([]FlowKeyStatus, len(keys))
	for i, k := range keys {
		st := FlowKeyStatus{Key: k, Running: cs[i].running.Val(), Parked: cs[i].parked.Val()}
		if l := q.limitOf(k); l != nil {
			v := &FlowLimitView{Prefix: l.Prefix, Concurrency: l.Concurrency, Rate: l.Rate}
			if l.Rate > 0 {
				v.Interval = l.Interval.String()
			}
			st.Limit = v
		}
		if s, err := cs[i].pause.Result(); err == nil {
			if w := parsePause(k, s); active(w, now) {
				st.Paused, st.PausedUntil, st.PauseReason = true, w.Until, w.Reason
			}
		}
		if ms, err := cs[i].seen.Result(); err == nil {
			t := time.UnixMilli(int64(ms)).UTC()
			st.LastSeen = &t
		}
		out[i] = st
	}
	return out, nil
}

// ErrOperatorOnly is returned to a user asking for what only an operator
// (the ADMIN_TOKEN) may see, such as the flow keys of every user.
var ErrOperatorOnly = errors.New("only an operator may see this")

// FlowKeys lists the status of the flow keys seen most recently, of those
// that start with prefix (every key when empty), at most limit
// (1–1000). Only the Operator may ask: keys name other users' accounts.
func (s *Service) FlowKeys(ctx context.Context, userID, prefix string, limit int) ([]FlowKeyStatus, error) {
	if userID != Operator {
		return nil, ErrOperatorOnly
	}
	if limit < 1 || limit > maxListedKeys {
		return nil, invalid("invalid_limit", "limit", "limit must be an integer from 1 to %d", maxListedKeys)
	}
	st, err := s.cfg.Queue.FlowKeys(ctx, prefix, limit)
	if err != nil {
		return nil, fmt.Errorf("flow keys: %w: %w", ErrUnavailable, err)
	}
	return st, nil
}

// FlowKey returns the status of one flow key; a key never seen has
// nothing running, parked or paused. Only the Operator may ask.
func (s *Service) FlowKey(ctx context.Context, userID, key string) (FlowKeyStatus, error) {
	if err := checkKeyRequest(userID, key); err != nil {
		return FlowKeyStatus{}, err
	}
	st, err := s.cfg.Queue.FlowStatus(ctx, key)
	if err != nil {
		return FlowKeyStatus{}, fmt.Errorf("flow key %s: %w: %w", key, ErrUnavailable, err)
	}
	return st[0], nil
}

// HoldFlowKey holds a flow key for the Operator until ResumeFlowKey: the
// key's jobs stay pending and wait, saying "paused by an operator:
// reason"; jobs already running finish. Only the Operator may.
func (s *Service) HoldFlowKey(ctx context.Context, userID, key, reason string) (FlowKeyStatus, error) {
	if err := checkKeyRequest(userID, key); err != nil {
		return FlowKeyStatus{}, err
	}
	if reason == "" {
		reason = "no reason given"
	}
	if err := s.cfg.Queue.HoldFlow(ctx, key, truncate(reason)); err != nil {
		return FlowKeyStatus{}, fmt.Errorf("hold flow key %s: %w: %w", key, ErrUnavailable, err)
	}
	s.log.Info("flow key held by an operator", "key", key, "reason", reason)
	return s.FlowKey(ctx, userID, key)
}

// ResumeFlowKey ends an operator's hold, or a provider's pause, of a flow
// key: its parked jobs run again. Only the Operator may.
func (s *Service) ResumeFlowKey(ctx context.Context, userID, key string) (FlowKeyStatus, error) {
	if err := checkKeyRequest(userID, key); err != nil {
		return FlowKeyStatus{}, err
	}
	n, err := s.cfg.Queue.ResumeFlow(ctx, key)
	if err != nil {
		return FlowKeyStatus{}, fmt.Errorf("resume flow key %s: %w: %w", key, ErrUnavailable, err)
	}
	s.log.Info("flow key resumed", "key", key, "jobs_let_run", n)
	if n > 0 && s.cfg.Notify != nil {
		s.cfg.Notify(ctx)
	}
	return s.FlowKey(ctx, userID, key)
}

// TypeStatus is whether an operator holds a job type, and why.
type TypeStatus struct {
	Type   string `json:"type"`
	Paused bool   `json:"paused"`
	Reason string `json:"reason,omitempty"`
}

// HoldType holds a job type for the Operator until ResumeType: its jobs
// (scheduled ones once due) stay pending and wait, saying "job type paused
// by an operator: reason"; jobs already running finish. Only the Operator
// may; the type must be registered.
func (s *Service) HoldType(ctx context.Context, userID, typ, reason string) (TypeStatus, error) {
	if err := s.checkTypeRequest(userID, typ); err != nil {
		return TypeStatus{}, err
	}
	if reason == "" {
		reason = "no reason given"
	}
	reason = truncate(reason)
	if err := s.cfg.Queue.HoldType(ctx, typ, reason); err != nil {
		return TypeStatus{}, fmt.Errorf("hold job type %s: %w: %w", typ, ErrUnavailable, err)
	}
	s.log.Info("job type held by an operator", "type", typ, "reason", reason)
	return TypeStatus{Type: typ, Paused: true, Reason: reason}, nil
}

// ResumeType ends an operator's hold of a job type: its parked jobs run
// again. Only the Operator may.
func (s *Service) ResumeType(ctx context.Context, userID, typ string) (TypeStatus, error) {
	if err := s.checkTypeRequest(userID, typ); err != nil {
		return TypeStatus{}, err
	}
	n, err := s.cfg.Queue.ResumeType(ctx, typ)
	if err != nil {
		return TypeStatus{}, fmt.Errorf("resume job type %s: %w: %w", typ, ErrUnavailable, err)
	}
	s.log.Info("job type resumed", "type", typ, "jobs_let_run", n)
	if n > 0 && s.cfg.Notify != nil {
		s.cfg.Notify(ctx)
	}
	return TypeStatus{Type: typ}, nil
}

// checkKeyRequest admits the Operator and a well-formed flow key.
func checkKeyRequest(userID, key string) error {
	if userID != Operator {
		return ErrOperatorOnly
	}
	if err := checkFlowKey(key); err != nil {
		return invalid("invalid_flow_key", "key", "%s", err.Error())
	}
	return nil
}

// checkTypeRequest admits the Operator and a registered type.
func (s *Service) checkTypeRequest(userID, typ string) error {
	if userID != Operator {
		return ErrOperatorOnly
	}
	if _, ok := s.cfg.Registry.Lookup(typ); !ok {
		return invalid("unknown_job_type", "type", "unknown job type %q", typ)
	}
	return nil
}

// Types lists every registered job type with whether an operator holds
// it. Only the Operator may ask.
func (s *Service) Types(ctx context.Context, userID string) ([]TypeStatus, error) {
	if userID != Operator {
		return nil, ErrOperatorOnly
	}
	held, err := s.cfg.Queue.HeldTypes(ctx)
	if err != nil {
		return nil, fmt.Errorf("job types: %w: %w", ErrUnavailable, err)
	}
	types := s.cfg.Registry.Types()
	out := make([]TypeStatus, len(types))
	for i, t := range types {
		reason, paused := held[t]
		out[i] = TypeStatus{Type: t, Paused: paused, Reason: reason}
	}
	return out, nil
}
