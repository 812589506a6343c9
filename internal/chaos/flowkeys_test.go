package chaos

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/chaostask"
)

// The flow key scenarios (issue 12): chaos_record jobs name a flow key in
// their payload ("flowKey"), and the servers run with FLOW_LIMITS limiting
// the keys under flowPrefix to one job at a time, as the default limit of
// an Instagram account does. Overlaps are judged on the ticks of the shared
// counter chaostask.Tick, taken by every call after it started and before
// it returned, so the calls of both processes are ordered on one clock.

const (
	// flowPrefix is the prefix of the scenarios' flow keys.
	flowPrefix = "chaos:"
	// flowLimitsEnv limits every key under flowPrefix to one job at a time.
	flowLimitsEnv = "FLOW_LIMITS=" + flowPrefix + "=1"
)

// flowJob is one chaos_record job to create on a flow key.
type flowJob struct {
	key     string
	sleepMs int
}

// createFlowJobs creates the jobs all at once, from 16 clients, through
// the servers in turn, and fails the test unless every answer is 201.
func (s *scenario) createFlowJobs(servers []*proc, specs []flowJob, maxAttempts int) {
	s.t.Helper()
	next := make(chan int, len(specs))
	for i := range specs {
		next <- i
	}
	close(next)
	errs := make(chan error, len(specs))
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body := fmt.Sprintf(`{"type":%q,"payload":{"sleepMs":%d,"flowKey":%q},"maxAttempts":%d}`,
					chaostask.Type, specs[i].sleepMs, specs[i].key, maxAttempts)
				ans, err := s.postJob(servers[i%len(servers)], body)
				if err == nil && ans.Status != http.StatusCreated {
					err = fmt.Errorf("answer %d: %s", ans.Status, ans.Body)
				}
				if err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		s.t.Fatalf("chaos: create: %v", err)
	}
}

// keyUse is how the calls of one flow key shared it, on the shared clock.
type keyUse struct {
	Calls int
	// MaxConcurrent is the most calls of the key that ran at once.
	MaxConcurrent int
	// Overlaps lists the calls that started while another call of the key
	// was running.
	Overlaps []string
	// ByPID counts the key's calls per process.
	ByPID map[int]int
	// FirstStart and LastStart are the first and last start ticks;
	// LastEnd the last end tick.
	FirstStart, LastStart, LastEnd int64
}

// endTickFunc says which tick a call ended by: its end tick, or for an
// interrupted call a bound such as a tick taken after its process died.
type endTickFunc func(c chaostask.Call) (int64, bool)

// endTickAt bounds the interrupted calls of the processes in killed by the
// tick taken after each was killed.
func endTickAt(killed map[int]int64) endTickFunc {
	return func(c chaostask.Call) (int64, bool) {
		if c.EndTick != nil {
			return *c.EndTick, true
		}
		t, ok := killed[c.PID]
		return t, ok
	}
}

// keyUses measures every flow key's concurrency from its calls' ticks. A
// call whose end end cannot bound counts as running to the end.
func keyUses(calls []chaostask.Call, end endTickFunc) map[string]*keyUse {
	type event struct {
		tick  int64
		delta int
		call  chaostask.Call
	}
	byKey := map[string][]event{}
	out := map[string]*keyUse{}
	for _, c := range calls {
		if c.FlowKey == "" {
			continue
		}
		u := out[c.FlowKey]
		if u == nil {
			u = &keyUse{ByPID: map[int]int{}, FirstStart: math.MaxInt64}
			out[c.FlowKey] = u
		}
		u.Calls++
		u.ByPID[c.PID]++
		u.FirstStart, u.LastStart = min(u.FirstStart, c.StartTick), max(u.LastStart, c.StartTick)
		e, ok := end(c)
		if !ok {
			e = math.MaxInt64
		}
		u.LastEnd = max(u.LastEnd, e)
		byKey[c.FlowKey] = append(byKey[c.FlowKey], event{c.StartTick, 1, c}, event{e, -1, c})
	}
	for key, events := range byKey {
		// Ticks are unique; an end and a start on one bound tick (two
		// calls both cut short by one kill) count the end first.
		sort.Slice(events, func(a, b int) bool {
			if events[a].tick != events[b].tick {
				return events[a].tick < events[b].tick
			}
			return events[a].delta < events[b].delta
		})
		u, running := out[key], map[int64]chaostask.Call{}
		for _, ev := range events {
			if ev.delta < 0 {
				delete(running, ev.call.ID)
				continue
			}
			for _, other := range running {
				u.Overlaps = append(u.Overlaps, fmt.Sprintf("%s: job %d (pid %d, from tick %d) started while job %d (pid %d, from tick %d) ran",
					key, ev.call.JobID, ev.call.PID, ev.call.StartTick, other.JobID, other.PID, other.StartTick))
			}
			running[ev.call.ID] = ev.call
			u.MaxConcurrent = max(u.MaxConcurrent, len(running))
		}
	}
	return out
}

// maxConcurrentAll is the most calls with a flow key that ran at once,
// whatever their keys.
func maxConcurrentAll(calls []chaostask.Call) int {
	merged := make([]chaostask.Call, 0, len(calls))
	for _, c := range calls {
		if c.FlowKey != "" {
			c.FlowKey = "all"
			merged = append(merged, c)
		}
	}
	if u := keyUses(merged, endTickAt(nil))["all"]; u != nil {
		return u.MaxConcurrent
	}
	return 0
}

// TestFlowKeyOneAtATimeAcrossServers is the Must-show of issue 12: 50 jobs
// on one flow key, created at once through two server processes on one
// database and Redis, run one at a time (FLOW_LIMITS chaos:=1, as the
// default of an Instagram account), while 10 jobs on 10 other keys run
// beside them instead of waiting behind them. Every job completes exactly
// once.
//
// Left alone, the server that finishes one of the key's jobs claims the
// next at once (its own finish wakes it), while the other only polls, so
// one server tends to run the whole key. Halfway through, the server
// running the key's job gets SIGTERM: the other, which has been claiming
// all along, must wait for that job's end before it takes the key, and then
// runs the rest, so both processes run the key's jobs.
func TestFlowKeyOneAtATimeAcrossServers(t *testing.T) {
	const (
		hot       = flowPrefix + "acct-1"
		nHot      = 50
		nOther    = 10
		hotMs     = 40
		otherMs   = 300
		totalJobs = nHot + nOther
	)
	s := newScenario(t)
	a, b := s.start("serve-a", flowLimitsEnv), s.start("serve-b", flowLimitsEnv)
	var specs []flowJob
	for i := 0; i < nHot; i++ {
		specs = append(specs, flowJob{key: hot, sleepMs: hotMs})
		if i%5 == 0 {
			specs = append(specs, flowJob{key: fmt.Sprintf("%sother-%d", flowPrefix, i/5), sleepMs: otherMs})
		}
	}
	began := time.Now()
	s.createFlowJobs([]*proc{a, b}, specs, 3)
	stopped, other := a, b
	if s.openKeyCall(hot, nHot/2, 30*time.Second) == b.pid() {
		stopped, other = b, a
	}
	stopped.sigterm(t)
	s.waitAllCompleted(totalJobs, 45*time.Second)
	took := time.Since(began)
	s.stopAll()

	calls := s.calls()
	r := analyse(s.jobs(), calls, endAtExit(s.exitTimes()))
	r.check(t)
	if r.Calls != totalJobs || r.Interrupted != 0 {
		t.Errorf("%d handler calls (%d interrupted) for %d jobs, want exactly one each", r.Calls, r.Interrupted, totalJobs)
	}
	uses := keyUses(calls, endTickAt(nil))
	u := uses[hot]
	if u == nil || u.Calls != nHot {
		t.Fatalf("key %s: %+v, want %d calls", hot, u, nHot)
	}
	if u.MaxConcurrent != 1 {
		t.Errorf("key %s ran %d jobs at once, want 1:\n%s", hot, u.MaxConcurrent, firstLines(u.Overlaps, 20))
	}
	// The other keys were not held up by the busy one: each ran once, and
	// all of them ended before the busy key's last job started.
	var otherEnd int64
	for key, o := range uses {
		if key == hot {
			continue
		}
		if o.Calls != 1 || o.MaxConcurrent != 1 {
			t.Errorf("key %s: %d calls, %d at once, want 1", key, o.Calls, o.MaxConcurrent)
		}
		otherEnd = max(otherEnd, o.LastEnd)
	}
	if len(uses) != 1+nOther {
		t.Errorf("%d keys ran, want %d", len(uses), 1+nOther)
	}
	if otherEnd > u.LastStart {
		t.Errorf("the other keys' jobs ended at tick %d, after the last job of %s started (tick %d): they waited behind it", otherEnd, hot, u.LastStart)
	}
	if u.ByPID[stopped.pid()] == 0 || u.ByPID[other.pid()] == 0 {
		t.Errorf("one server ran every job of %s: %s ran %d (SIGTERM halfway), %s ran %d", hot, stopped.name, u.ByPID[stopped.pid()], other.name, u.ByPID[other.pid()])
	}
	all := maxConcurrentAll(calls)
	if all < 2 {
		t.Errorf("at most %d keyed job ran at once: the other keys did not run beside %s", all, hot)
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d; key %s: %d calls, max_concurrent=%d (%s: %d until its SIGTERM, %s: %d); "+
		"other keys: %d, all ended by tick %d, before the key's last start (tick %d); most keyed calls at once=%d; all done in %s",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, hot, u.Calls, u.MaxConcurrent,
		stopped.name, u.ByPID[stopped.pid()], other.name, u.ByPID[other.pid()], len(uses)-1, otherEnd, u.LastStart, all, took.Round(time.Millisecond))
}

// openKeyCall returns the pid of a call of key still running, once at
// least finished calls of key have ended, waiting up to timeout.
func (s *scenario) openKeyCall(key string, finished int, timeout time.Duration) int {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var row struct {
			Done int64 `gorm:"column:done"`
			PID  *int  `gorm:"column:pid"`
		}
		err := s.db.WithContext(ctx).Raw(`SELECT
    (SELECT count(*) FROM `+chaostask.Table+` WHERE flow_key = ? AND finished_at IS NOT NULL) AS done,
    (SELECT min(pid) FROM `+chaostask.Table+` WHERE flow_key = ? AND finished_at IS NULL) AS pid`, key, key).Scan(&row).Error
		cancel()
		if err == nil && row.Done >= int64(finished) && row.PID != nil {
			return *row.PID
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("chaos: no call of %s running after %d finished within %s (err %v)\n%s", key, finished, timeout, err, s.stuckJobs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFlowKeyTakenOverAfterKill runs 12 jobs on one flow key (FLOW_LIMITS
// chaos:=1) on two servers and kills, with SIGKILL, the one running the
// key's job: the key's slot, held by a lease nobody renews any more, stops
// counting when the lease expires, and the other server runs the rest of
// the key's jobs, one at a time. Every job completes, and no two calls of
// the key overlap: a call the kill cut short ends, on the shared clock, by
// the tick taken right after the kill.
func TestFlowKeyTakenOverAfterKill(t *testing.T) {
	const (
		key = flowPrefix + "acct-k"
		n   = 12
	)
	s := newScenario(t)
	a, b := s.start("serve-a", flowLimitsEnv), s.start("serve-b", flowLimitsEnv)
	specs := make([]flowJob, n)
	for i := range specs {
		specs[i] = flowJob{key: key, sleepMs: 400}
	}
	s.createFlowJobs([]*proc{a, b}, specs, 3)

	pid := s.openKeyCall(key, 2, 30*time.Second)
	victim, survivor := a, b
	if pid == b.pid() {
		victim, survivor = b, a
	}
	killedAt := victim.kill9(t)
	killTick, err := chaostask.Tick(context.Background(), s.db)
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	s.waitAllCompleted(n, 45*time.Second)
	s.stopAll()

	calls := s.calls()
	r := analyse(s.jobs(), calls, endAtExit(s.exitTimes()))
	r.check(t)
	u := keyUses(calls, endTickAt(map[int]int64{victim.pid(): killTick}))[key]
	if u == nil {
		t.Fatalf("no call of %s", key)
	}
	if u.MaxConcurrent != 1 {
		t.Errorf("key %s ran %d jobs at once, want 1:\n%s", key, u.MaxConcurrent, firstLines(u.Overlaps, 20))
	}
	var cut, after int
	takeover := time.Duration(-1)
	for _, c := range calls {
		switch {
		case c.PID == victim.pid() && c.FinishedAt == nil:
			cut++
		case c.StartTick > killTick:
			if c.PID != survivor.pid() {
				t.Errorf("job %d started in pid %d after the kill, not in the survivor %d", c.JobID, c.PID, survivor.pid())
			}
			if after++; takeover < 0 || c.StartedAt.Sub(killedAt) < takeover {
				takeover = c.StartedAt.Sub(killedAt)
			}
		}
	}
	if cut == 0 {
		t.Errorf("the kill cut no call of %s short: the scenario proved nothing about the slot it held", key)
	}
	if after == 0 {
		t.Fatalf("no call of %s started after the kill", key)
	}
	// The slot comes back when the dead claim's lease expires and the
	// survivor's reaper gives it back: within a few leases of the kill.
	if takeover > 3*leaseDuration {
		t.Errorf("the survivor took the key %s after the kill, more than a few leases (%s)", takeover, leaseDuration)
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted=%d; key %s: max_concurrent=%d, killed %s (%d calls, %d cut short), "+
		"%s ran %d after the kill, the first %s after it (lease %s)",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Interrupted, key, u.MaxConcurrent,
		victim.name, u.ByPID[victim.pid()], cut, survivor.name, after, takeover.Round(time.Millisecond), leaseDuration)
}

// TestKeyUses checks the measure of a key's concurrency; it needs no
// servers.
func TestKeyUses(t *testing.T) {
	tick := func(n int64) *int64 { return &n }
	calls := []chaostask.Call{
		{ID: 1, JobID: 1, PID: 1, FlowKey: "k", StartTick: 1, EndTick: tick(2)},
		{ID: 2, JobID: 2, PID: 2, FlowKey: "k", StartTick: 3, EndTick: tick(6)},
		{ID: 3, JobID: 3, PID: 1, FlowKey: "j", StartTick: 4, EndTick: tick(5)},
		{ID: 4, JobID: 4, PID: 1, FlowKey: "k", StartTick: 7},                    // cut short by a kill at tick 8
		{ID: 5, JobID: 5, PID: 2, FlowKey: "k", StartTick: 9, EndTick: tick(10)}, // after the kill
		{ID: 6, JobID: 6, PID: 2, StartTick: 4, EndTick: tick(11)},               // no key
	}
	u := keyUses(calls, endTickAt(map[int]int64{1: 8}))
	if len(u) != 2 || u["k"].Calls != 4 || u["k"].MaxConcurrent != 1 || len(u["k"].Overlaps) != 0 || u["j"].MaxConcurrent != 1 {
		t.Fatalf("sequential calls: %+v %+v", u["k"], u["j"])
	}
	if u["k"].ByPID[1] != 2 || u["k"].ByPID[2] != 2 || u["k"].LastStart != 9 || u["k"].LastEnd != 10 {
		t.Fatalf("k: %+v", u["k"])
	}
	if got := maxConcurrentAll(calls); got != 2 {
		t.Fatalf("all keys at once: %d, want 2", got)
	}
	// Without the kill's bound the cut call runs to the end and overlaps
	// the one after it; so does a call started inside another.
	u = keyUses(calls, endTickAt(nil))
	if u["k"].MaxConcurrent != 2 || len(u["k"].Overlaps) != 1 {
		t.Fatalf("unbounded cut call: %+v", u["k"])
	}
	calls = append(calls, chaostask.Call{ID: 7, JobID: 7, PID: 1, FlowKey: "k", StartTick: 4, EndTick: tick(5)})
	u = keyUses(calls, endTickAt(map[int]int64{1: 8}))
	if u["k"].MaxConcurrent != 2 || len(u["k"].Overlaps) != 1 {
		t.Fatalf("overlapping calls: %+v", u["k"])
	}
}
