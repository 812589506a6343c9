package jobs

import "sync"

// runningSet counts the handlers running across every drain of a Worker,
// so that Shutdown can wait for them. Unlike a sync.WaitGroup it may gain
// members while Shutdown waits (a drain whose claim raced with the start
// of shutdown), which a WaitGroup forbids, and once closed it refuses new
// members: the drain then gives their jobs back instead of running them.
type runningSet struct {
	mu     sync.Mutex
	n      int
	closed bool
	// idle is closed once the set is closed and empty.
	idle     chan struct{}
	idleDone bool
}

func newRunningSet() *runningSet { return &runningSet{idle: make(chan struct{})} }

// add counts one more running handler. It returns false, counting
// nothing, once the set is closed.
func (s *runningSet) add() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.n++
	return true
}

// done counts a handler that returned.
func (s *runningSet) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n--
	s.signalIdle()
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
