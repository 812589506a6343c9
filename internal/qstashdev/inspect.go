package qstashdev

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
)

// Deliveries returns the delivery attempts made, oldest first (at most
// Config.DeliveryLogSize of the latest).
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneDeliveries(s.deliveries)
}

func cloneDeliveries(ds []Delivery) []Delivery {
	out := make([]Delivery, len(ds))
	for i, d := range ds {
		d.Header = d.Header.Clone()
		d.ResponseHeader = d.ResponseHeader.Clone()
		d.Body = slices.Clone(d.Body)
		d.ResponseBody = slices.Clone(d.ResponseBody)
		out[i] = d
	}
	return out
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked()
}

func (s *Server) statsLocked() Stats {
	st := s.stats
	st.Pending = len(s.messages)
	return st
}

// Messages returns the messages waiting for delivery or in flight, in due
// order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, 0, len(s.messages))
	for _, m := range s.messages {
		out = append(out, m.snapshot())
	}
	slices.SortFunc(out, func(a, b Message) int {
		return cmp.Or(a.NotBefore.Compare(b.NotBefore), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	return out
}

// Message returns a message waiting for delivery or in flight. Like QStash,
// it forgets messages once they are delivered, failed or cancelled.
func (s *Server) Message(id string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.messages[id]
	if !ok {
		return Message{}, false
	}
	return m.snapshot(), true
}

// DeadLetters returns the messages that failed (retries exhausted or a
// non-retryable response), oldest first.
func (s *Server) DeadLetters() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.deadLetters))
	for i, m := range s.deadLetters {
		m.Header = m.Header.Clone()
		m.Body = slices.Clone(m.Body)
		out[i] = m
	}
	return out
}

// Schedules returns the schedules by creation time.
func (s *Server) Schedules() []Schedule {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Schedule, 0, len(s.schedules))
	for _, sc := range s.sortedSchedulesLocked() {
		out = append(out, sc.snapshot())
	}
	return out
}

// Schedule returns one schedule.
func (s *Server) Schedule(id string) (Schedule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc, ok := s.schedules[id]
	if !ok {
		return Schedule{}, false
	}
	return sc.snapshot(), true
}

// WaitFor blocks until cond, called with the current Stats after every
// change, returns true, or until ctx is done. It is for tests running the
// background loop: wait with a deadline instead of sleeping.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) (Stats, error) {
	for {
		s.mu.Lock()
		st := s.statsLocked()
		ch := s.changed
		s.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st, fmt.Errorf("qstashdev: wait: %w (stats %+v)", ctx.Err(), st)
		}
	}
}

// WaitForDeliveries blocks until at least n delivery attempts have been made
// in total, or ctx is done, and returns the recorded deliveries.
func (s *Server) WaitForDeliveries(ctx context.Context, n int) ([]Delivery, error) {
	if _, err := s.WaitFor(ctx, func(st Stats) bool { return st.Attempts >= n }); err != nil {
		return s.Deliveries(), fmt.Errorf("qstashdev: waiting for %d deliveries: %w", n, err)
	}
	return s.Deliveries(), nil
}
