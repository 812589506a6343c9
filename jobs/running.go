package jobs

import (
	"slices"
	"sync"
)

// runningSet holds the jobs in handlers (or whose outcome is still being
// written) across every drain of a Worker, by id, so that Shutdown can wait
// for them and name the ones it could not give back. Unlike a
// sync.WaitGroup it may gain members while Shutdown waits (a drain whose
// claim raced with the start of shutdown), which a WaitGroup forbids, and
// once closed it refuses new members: the drain then gives their jobs back
// instead of running them.
type runningSet struct {
	mu     sync.Mutex
	ids    map[int64]int
	n      int
	closed bool
	// idle is closed once the set is closed and empty.
	idle     chan struct{}
	idleDone bool
}

func newRunningSet() *runningSet {
	return &runningSet{ids: map[int64]int{}, idle: make(chan struct{})}
}

// add counts job id as running. It returns false, counting nothing, once
// the set is closed.
func (s *runningSet) add(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.n++
	s.ids[id]++
	return true
}

// done counts job id as no longer running.
func (s *runningSet) done(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	if s.ids[id]--; s.ids[id] <= 0 {
		delete(s.ids, id)
	}
	s.signalIdle()
}

// members returns the ids of the jobs still running, in order.
func (s *runningSet) members() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, 0, len(s.ids))
	for id := range s.ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// close refuses new members and returns a channel closed when none runs.
func (s *runningSet) close() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.signalIdle()
	return s.idle
}

// signalIdle closes idle when the set is closed and empty; s.mu is held.
func (s *runningSet) signalIdle() {
	if s.closed && s.n == 0 && !s.idleDone {
		s.idleDone = true
		close(s.idle)
	}
}
