package qstashdev

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxRounds bounds RunDue's rounds, so a destination that keeps publishing
// immediate messages to itself cannot hang a test.
const maxRounds = 1000

// maxResponseBody is how much of a destination's response is kept.
const maxResponseBody = 64 << 10

// signatureClaims are the claims of Upstash-Signature.
type signatureClaims struct {
	jwt.RegisteredClaims
	// Body is the padded base64url SHA-256 of the raw body.
	Body string `json:"body"`
}

// BodyHash returns the body claim QStash puts in a signature: the SHA-256 of
// the raw body, base64 with the URL-safe alphabet and '=' padding.
func BodyHash(body []byte) string {
	sum := sha256.Sum256(body)
	return base64.URLEncoding.EncodeToString(sum[:])
}

// Sign returns an Upstash-Signature for a delivery of body to url: an HS256
// JWT keyed with the bytes of key, with iss "Upstash", sub url, iat and nbf
// at now, exp at now+TokenLifetime, a fresh jti and the body hash.
func Sign(key, url string, body []byte, now time.Time) (string, error) {
	if key == "" {
		return "", errors.New("qstashdev: sign: empty signing key")
	}
	now = now.Truncate(time.Second)
	c := signatureClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    "Upstash",
			Subject:   url,
			ExpiresAt: jwt.NewNumericDate(now.Add(TokenLifetime)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        newID("jwt_", 28),
		},
		Body: BodyHash(body),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(key))
	if err != nil {
		return "", fmt.Errorf("qstashdev: sign: %w", err)
	}
	return tok, nil
}

// fireSchedulesLocked turns every schedule tick due at now into a message.
// A paused schedule's tick is consumed without a message. s.mu must be held.
func (s *Server) fireSchedulesLocked(now time.Time) {
	for _, sc := range s.sortedSchedulesLocked() {
		if sc.next.IsZero() || sc.next.After(now) {
			continue
		}
		tick := sc.next
		sc.next = sc.spec.Next(now.UTC())
		if sc.paused {
			continue
		}
		m := &message{
			id: newID("msg_", 40), url: sc.destination, method: sc.method, header: sc.header.Clone(),
			body: bytes.Clone(sc.body), maxRetries: sc.retries, notBefore: tick.Add(sc.delay),
			createdAt: tick, timeout: sc.timeout, scheduleID: sc.id, callerIP: sc.callerIP,
			state: StateCreated,
		}
		s.messages[m.id] = m
		sc.last = tick
		sc.lastStates = map[string]string{m.id: "IN_PROGRESS"}
		s.stats.ScheduleFirings++
		s.log.Info("schedule fired", "scheduleId", sc.id, "messageId", m.id, "tick", tick.UTC().Format(time.RFC3339))
	}
}

// markScheduleStateLocked records a finished message in its schedule's
// lastScheduleStates. s.mu must be held.
func (s *Server) markScheduleStateLocked(m *message, state string) {
	if m.scheduleID == "" {
		return
	}
	sc, ok := s.schedules[m.scheduleID]
	if !ok {
		return
	}
	if _, ok := sc.lastStates[m.id]; ok {
		sc.lastStates[m.id] = state
	}
}

// dueLocked returns the pending messages due at now, oldest first.
func (s *Server) dueLocked(now time.Time) []*message {
	var due []*message
	for _, m := range s.messages {
		if m.pending() && !m.notBefore.After(now) {
			due = append(due, m)
		}
	}
	slices.SortFunc(due, func(a, b *message) int {
		return cmp.Or(a.notBefore.Compare(b.notBefore), a.createdAt.Compare(b.createdAt), strings.Compare(a.id, b.id))
	})
	return due
}

// claimLocked marks messages as in flight. s.mu must be held.
func (s *Server) claimLocked(ms []*message) {
	for _, m := range ms {
		m.prevState, m.state = m.state, StateActive
	}
}

// unclaim returns claimed messages that were not attempted to their
// previous state.
func (s *Server) unclaim(ms []*message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range ms {
		if m.state != StateActive {
			continue
		}
		if m.cancelRequested {
			m.state = StateCancelled
			delete(s.messages, m.id)
			s.stats.Cancelled++
			s.markScheduleStateLocked(m, "FAIL")
			continue
		}
		m.state = m.prevState
	}
	s.notifyLocked()
}

// nextDueLocked returns the earliest time a pending message or an active
// schedule becomes due. s.mu must be held.
func (s *Server) nextDueLocked() (time.Time, bool) {
	var next time.Time
	found := false
	consider := func(t time.Time) {
		if !found || t.Before(next) {
			next, found = t, true
		}
	}
	for _, m := range s.messages {
		if m.pending() {
			consider(m.notBefore)
		}
	}
	for _, sc := range s.schedules {
		if !sc.paused && !sc.next.IsZero() {
			consider(sc.next)
		}
	}
	return next, found
}

// RunDue fires the schedules and delivers the messages that are due at the
// clock's current time, synchronously and in order, repeating while attempts
// make more work due (an immediate retry, a message the destination
// published). It returns the number of attempts made. Deliveries already in
// flight from the background loop are not waited for.
func (s *Server) RunDue(ctx context.Context) (int, error) {
	total := 0
	for round := 0; ; round++ {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("qstashdev: run due: %w", err)
		}
		now := s.clock.Now()
		s.mu.Lock()
		s.fireSchedulesLocked(now)
		due := s.dueLocked(now)
		if len(due) > 0 && round >= maxRounds {
			s.mu.Unlock()
			return total, fmt.Errorf("qstashdev: run due: still %d messages due after %d rounds (does a destination keep publishing immediate messages?)", len(due), maxRounds)
		}
		s.claimLocked(due)
		s.mu.Unlock()
		if len(due) == 0 {
			return total, nil
		}
		for i, m := range due {
			if ctx.Err() != nil {
				s.unclaim(due[i:])
				return total, fmt.Errorf("qstashdev: run due: %w", ctx.Err())
			}
			s.attempt(ctx, m)
			total++
		}
	}
}

// Advance moves a manual clock forward by d, stopping at every moment
// something becomes due (a delayed message, a retry, a cron tick) to deliver
// it synchronously, as RunDue does. When it returns, everything due up to
// the new time has been attempted. Config.Clock must have an
// Advance(time.Duration) method, like jobs.ManualClock. It returns the number
// of attempts made.
func (s *Server) Advance(ctx context.Context, d time.Duration) (int, error) {
	adv, ok := s.clock.(interface{ Advance(time.Duration) })
	if !ok {
		return 0, fmt.Errorf("qstashdev: advance: Config.Clock (%T) has no Advance(time.Duration) method; use a manual clock such as jobs.ManualClock", s.clock)
	}
	if d < 0 {
		return 0, fmt.Errorf("qstashdev: advance: negative duration %s", d)
	}
	target := s.clock.Now().Add(d)
	total := 0
	for {
		n, err := s.RunDue(ctx)
		total += n
		if err != nil {
			return total, fmt.Errorf("qstashdev: advance: %w", err)
		}
		now := s.clock.Now()
		s.mu.Lock()
		next, found := s.nextDueLocked()
		s.mu.Unlock()
		if !found || next.After(target) || !next.After(now) {
			// Nothing more before target (or the next due item is in flight
			// elsewhere); jump to target.
			break
		}
		adv.Advance(next.Sub(now))
	}
	if now := s.clock.Now(); target.After(now) {
		adv.Advance(target.Sub(now))
	}
	n, err := s.RunDue(ctx)
	total += n
	if err != nil {
		return total, fmt.Errorf("qstashdev: advance: %w", err)
	}
	return total, nil
}

// loop is the background delivery loop started by Start.
func (s *Server) loop(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	sem := make(chan struct{}, s.cfg.MaxConcurrentDeliveries)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
		now := s.clock.Now()
		s.mu.Lock()
		s.fireSchedulesLocked(now)
		due := s.dueLocked(now)
		s.claimLocked(due)
		s.mu.Unlock()
		for i, m := range due {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				s.unclaim(due[i:])
				return
			}
			s.inner.Add(1)
			go func() {
				defer s.inner.Done()
				defer func() { <-sem }()
				s.attempt(ctx, m)
				s.poke() // a retry may be due at once
			}()
		}
		wait := s.cfg.PollInterval
		s.mu.Lock()
		next, found := s.nextDueLocked()
		s.mu.Unlock()
		if found {
			if until := next.Sub(s.clock.Now()); until < wait {
				wait = max(until, time.Millisecond)
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// attempt makes one delivery attempt of a claimed message and records its
// outcome: delivered on 2xx; failed (to the DLQ) on 489 with
// Upstash-NonRetryable-Error: true or when retries are exhausted; otherwise
// retried after Retry-After or the backoff.
func (s *Server) attempt(ctx context.Context, m *message) {
	s.mu.Lock()
	key := s.current
	if s.cfg.SignWithNextKey {
		key = s.next
	}
	url, method, body, retried := m.url, m.method, m.body, m.retried
	header := m.header.Clone()
	id, scheduleID, caller, timeout := m.id, m.scheduleID, m.callerIP, m.timeout
	s.mu.Unlock()

	at := s.clock.Now()
	if header == nil {
		header = http.Header{}
	}
	header.Set("User-Agent", "Upstash-QStash")
	header.Set("Upstash-Message-Id", id)
	header.Set("Upstash-Retried", strconv.Itoa(retried))
	if scheduleID != "" {
		header.Set("Upstash-Schedule-Id", scheduleID)
	}
	if caller != "" {
		header.Set("Upstash-Caller-Ip", caller)
	}
	d := Delivery{MessageID: id, ScheduleID: scheduleID, URL: url, Method: method, Body: body, Retried: retried, At: at}

	status, respHeader, respBody, err := s.send(ctx, key, url, method, header, body, timeout)
	d.Header = header
	d.Status, d.ResponseHeader, d.ResponseBody = status, respHeader, respBody
	if err != nil {
		d.Err = err.Error()
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down or the caller gave up: the attempt does not count.
		s.unclaim([]*message{m})
		s.log.Info("delivery interrupted", "messageId", id, "err", err)
		return
	}

	s.mu.Lock()
	now := s.clock.Now()
	nonRetryable := status == 489 && headerIs(respHeader, "Upstash-NonRetryable-Error", "true")
	switch {
	case err == nil && status >= 200 && status < 300:
		d.Outcome = StateDelivered
		m.state = StateDelivered
		delete(s.messages, id)
		s.stats.Delivered++
		s.markScheduleStateLocked(m, "SUCCESS")
	case m.cancelRequested:
		d.Outcome = StateCancelled
		m.state = StateCancelled
		delete(s.messages, id)
		s.stats.Cancelled++
		s.markScheduleStateLocked(m, "FAIL")
	case !nonRetryable && m.retried < m.maxRetries:
		d.Outcome = StateRetry
		m.retried++
		wait, ok := retryAfter(respHeader, now)
		if !ok {
			wait = s.backoff(m.retried)
		}
		m.notBefore = now.Add(wait)
		m.state = StateRetry
	default:
		d.Outcome = StateFailed
		m.state = StateFailed
		delete(s.messages, id)
		s.stats.Failed++
		s.markScheduleStateLocked(m, "FAIL")
		s.deadLetters = append(s.deadLetters, m.snapshot())
		if over := len(s.deadLetters) - s.cfg.DeliveryLogSize; over > 0 {
			s.deadLetters = slices.Delete(s.deadLetters, 0, over)
		}
	}
	s.stats.Attempts++
	s.deliveries = append(s.deliveries, d)
	if over := len(s.deliveries) - s.cfg.DeliveryLogSize; over > 0 {
		s.deliveries = slices.Delete(s.deliveries, 0, over)
	}
	notBefore := m.notBefore
	s.notifyLocked()
	s.mu.Unlock()

	attrs := []any{"messageId", id, "url", url, "method", method, "retried", retried, "status", status, "outcome", d.Outcome}
	if scheduleID != "" {
		attrs = append(attrs, "scheduleId", scheduleID)
	}
	switch d.Outcome {
	case StateDelivered:
		s.log.Info("delivered", attrs...)
	case StateRetry:
		s.log.Warn("delivery failed, will retry", append(attrs, "err", d.Err, "retryAt", notBefore.UTC().Format(time.RFC3339))...)
	default:
		s.log.Warn("delivery failed", append(attrs, "err", d.Err, "nonRetryable", nonRetryable)...)
	}
}

// send makes the signed HTTP request of one attempt.
func (s *Server) send(ctx context.Context, key, url, method string, header http.Header, body []byte, timeout time.Duration) (int, http.Header, []byte, error) {
	sig, err := Sign(key, url, body, s.tokenClock.Now())
	if err != nil {
		return 0, nil, nil, err
	}
	header.Set("Upstash-Signature", sig)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("qstashdev: build delivery request: %w", err)
	}
	req.Header = header.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("qstashdev: deliver to %s: %w", url, err)
	}
	defer resp.Body.Close()
	respBody, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		// The status is known; a truncated body does not change the outcome.
		s.log.Debug("read delivery response", "url", url, "err", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, resp.Header, respBody, nil
}
