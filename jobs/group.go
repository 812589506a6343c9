package jobs

import (
	"context"
	"sync"
	"time"
)

// groupTimeout bounds the write of one group of creates. The group's write
// does not stop when one caller gives up: the others wait for it.
const groupTimeout = 10 * time.Second

// createGroups gathers concurrent single creates into one write (group
// commit): a create that finds no write running writes at once, alone; the
// creates that arrive while a write runs wait for it and then go into the
// next write together, as one multi-row INSERT, one Redis enqueue and one
// Notify. A lone create is therefore as fast as before, and under load the
// statements and commits per create fall with the number of callers.
//
// There is no goroutine of its own: the first caller of a group writes it
// (the leader), then hands the lead to the first caller still waiting.
type createGroups struct {
	mu      sync.Mutex
	waiting []*groupedCreate
	// busy is true while a leader writes; while it is false nobody waits.
	busy bool
}

// groupedCreate is one caller's create in a group.
type groupedCreate struct {
	req CreateRequest
	// lead is signalled when this caller is to write the next group.
	lead chan struct{}
	// done is closed when the result is known.
	done chan struct{}
	out  Created
	err  error
}

// createGrouped stores one prepared request, grouped with the creates that
// arrive meanwhile, and returns its result.
func (s *Service) createGrouped(ctx context.Context, req CreateRequest) (Created, error) {
	g := &groupedCreate{req: req, lead: make(chan struct{}, 1), done: make(chan struct{})}
	s.groups.mu.Lock()
	s.groups.waiting = append(s.groups.waiting, g)
	leader := !s.groups.busy
	s.groups.busy = true
	s.groups.mu.Unlock()
	if !leader {
		select {
		case <-g.done:
			return g.out, g.err
		case <-g.lead:
		}
	}
	s.writeGroup(ctx)
	<-g.done // a leader is always in the group it writes
	return g.out, g.err
}

// writeGroup writes the creates waiting now (up to MaxBatchSize), answers
// each, and hands the lead to the next waiting create, if any.
func (s *Service) writeGroup(ctx context.Context) {
	s.groups.mu.Lock()
	n := min(len(s.groups.waiting), MaxBatchSize)
	group := s.groups.waiting[:n:n]
	s.groups.waiting = s.groups.waiting[n:]
	s.groups.mu.Unlock()

	reqs := make([]CreateRequest, len(group))
	for i, g := range group {
		reqs[i] = g.req
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), groupTimeout)
	out, err := s.insertJobs(wctx, reqs, false)
	cancel()
	for i, g := range group {
		if err != nil {
			g.err = err
		} else {
			g.out = out[i]
		}
		close(g.done)
	}

	s.groups.mu.Lock()
	defer s.groups.mu.Unlock()
	if len(s.groups.waiting) == 0 {
		s.groups.busy = false
		return
	}
	s.groups.waiting[0].lead <- struct{}{}
}
