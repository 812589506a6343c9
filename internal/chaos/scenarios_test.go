package chaos

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/chaostask"
	"github.com/jobhook/jobhook/jobs"
)

// No scenario calls t.Parallel: they run one after the other, so that the
// faults one injects (connections killed, processes stopped) never land in
// another, and their timings (leases, grace periods) stay meaningful. Other
// packages' tests may share the servers meanwhile: each scenario keeps to
// its own schema, Redis prefix and connections.

// TestKill9MidDrain kills the server with SIGKILL while it drains 5,000
// jobs, starts it again, and checks that every job completed, no job's
// handler ran twice at the same time, and every handler call beyond one
// per job was an attempt the kill interrupted.
func TestKill9MidDrain(t *testing.T) {
	const n = 5000
	s := newScenario(t)
	s.insertJobs(n, 5, 15, 5) // sleepMs 5–20

	first := s.start("serve-1")
	p := s.waitFor(60*time.Second, "30% of the jobs to complete with calls in flight", func(p progress) bool {
		done := p.byStatus["completed"]
		return done >= n*30/100 && (p.open > 0 || done >= n*60/100)
	})
	killed := first.kill9(t)
	atKill, err := s.progress()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	t.Logf("killed %s (pid %d) with %s; after: %s", first.name, first.pid(), p, atKill)

	// The jobs the kill left in processing must go back to the queue within
	// about one lease of the kill, however long the backlog before them.
	stranded := s.strandedLeases()
	second := s.start("serve-2")
	var requeued time.Duration
	if len(stranded) > 0 {
		s.waitFor(30*time.Second, "the jobs stranded in processing by the kill to be requeued", func(progress) bool {
			left, err := s.stillHeld(stranded)
			return err == nil && left == 0
		})
		requeued = time.Since(killed)
	}
	s.waitAllCompleted(n, 120*time.Second)
	s.stopAll()

	jobs, calls := s.jobs(), s.calls()
	r := analyse(jobs, calls, endAtExit(s.exitTimes()))
	r.check(t)

	// Every call beyond one per job is an attempt the kill took away: it
	// ran in the killed process and started before the kill. Those whose
	// handler had returned lost their outcome between the handler's return
	// and its commit.
	if r.Calls != r.Jobs+r.Superseded {
		t.Errorf("calls = %d, want jobs (%d) + interrupted attempts (%d)", r.Calls, r.Jobs, r.Superseded)
	}
	last := make(map[int64]int, len(jobs))
	for _, j := range jobs {
		last[j.ID] = j.Attempts
	}
	var recovery, sinceKill time.Duration
	for id, cs := range r.ByJob {
		interrupted := false
		for _, c := range cs {
			if c.Attempt == last[id] {
				continue
			}
			interrupted = true
			if c.PID != first.pid() || c.StartedAt.After(killed) {
				t.Errorf("job %d: superseded attempt %d ran in pid %d from %s, not in the killed process before the kill", id, c.Attempt, c.PID, clock(c.StartedAt))
			}
		}
		for _, c := range cs {
			if c.PID == second.pid() && c.FinishedAt == nil {
				t.Errorf("job %d: attempt %d in the restarted process never finished", id, c.Attempt)
			}
		}
		if !interrupted {
			continue
		}
		for _, c := range cs {
			if c.PID == second.pid() {
				recovery = max(recovery, c.StartedAt.Sub(second.started))
				sinceKill = max(sinceKill, c.StartedAt.Sub(killed))
				break
			}
		}
	}
	if r.Superseded == 0 {
		t.Errorf("the kill interrupted no attempt: the scenario proved nothing about recovery")
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted_attempts=%d "+
		"(handler cut short %d, outcome lost after the handler returned %d) stranded_in_processing=%d requeued=%s after the kill (lease %s, restart %s after the kill) "+
		"recovery=%s from restart to the interrupted jobs' next call (%s after the kill)",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Superseded,
		r.Superseded-r.SupersededFinished, r.SupersededFinished, len(stranded), requeued.Round(time.Millisecond), leaseDuration,
		second.started.Sub(killed).Round(time.Millisecond), recovery.Round(time.Millisecond), sinceKill.Round(time.Millisecond))
	if requeued > 3*leaseDuration {
		t.Errorf("the stranded jobs were requeued %s after the kill: more than a few leases (%s)", requeued, leaseDuration)
	}
}

// TestKill9FiveTimes kills the serving process with SIGKILL five times,
// 2.5 s apart, during a 2,000-job drain, starting the next one at once,
// all with the default lease. No job fails (a lost attempt does not count
// against maxAttempts, and a reaped job goes behind the jobs that waited,
// so the same jobs do not absorb every kill), none is lost, none runs
// twice at once, and the jobs each kill stranded in processing are back
// within one lease and a second of it (the reaper wakes when the earliest
// lease ends). The recovery after each kill is measured and printed.
func TestKill9FiveTimes(t *testing.T) {
	const (
		n     = 2000
		kills = 5
		gap   = 2500 * time.Millisecond
	)
	lease := jobs.DefaultLeaseDuration
	leaseEnv := "LEASE_DURATION=" + lease.String()
	s := newScenario(t)
	s.insertJobs(n, 40, 80, 3) // sleepMs 40–120: about 25 s of work for 8 slots

	cur := s.start("serve-1", leaseEnv)
	s.waitFor(60*time.Second, "the first jobs to complete", func(p progress) bool { return p.byStatus["completed"] >= 50 })

	// Each kill's stranded claims are watched from the kill on: a claim is
	// back once no row is processing under its lease id any more.
	type kill struct {
		at       time.Time
		stranded []string
		back     time.Duration // zero until every stranded claim is back
	}
	var (
		mu     sync.Mutex
		record []*kill
		stop   = make(chan struct{})
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			open := make([]*kill, 0, len(record))
			for _, k := range record {
				if k.back == 0 {
					open = append(open, k)
				}
			}
			mu.Unlock()
			for _, k := range open {
				if left, err := s.stillHeld(k.stranded); err == nil && left == 0 {
					mu.Lock()
					k.back = max(time.Since(k.at), time.Nanosecond)
					mu.Unlock()
				}
			}
		}
	}()
	var pids []int
	seen := map[string]bool{} // claims an earlier kill stranded
	next := time.Now()
	for i := 0; i < kills; i++ {
		// The kills come on a fixed beat, whatever the drain is doing.
		time.Sleep(time.Until(next))
		pids = append(pids, cur.pid())
		at := cur.kill9(t)
		k := &kill{at: at}
		for _, lease := range s.strandedLeases() {
			if !seen[lease] {
				seen[lease] = true
				k.stranded = append(k.stranded, lease)
			}
		}
		mu.Lock()
		record = append(record, k)
		mu.Unlock()
		next = at.Add(gap)
		cur = s.start(fmt.Sprintf("serve-%d", i+2), leaseEnv)
	}
	s.waitAllCompleted(n, 180*time.Second)
	// Every stranded claim is back by now (its job completed).
	deadline := time.Now().Add(lease + 5*time.Second)
	for {
		mu.Lock()
		pending := 0
		for _, k := range record {
			if k.back == 0 && len(k.stranded) > 0 {
				pending++
			}
		}
		mu.Unlock()
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	<-done
	s.stopAll()

	jobRows, calls := s.jobs(), s.calls()
	r := analyse(jobRows, calls, endAtExit(s.exitTimes()))
	r.check(t)
	failed := 0
	for _, j := range jobRows {
		if j.Status == "failed" {
			failed++
		}
	}
	if failed > 0 {
		t.Errorf("%d jobs failed: a lost attempt must not count against maxAttempts", failed)
	}
	if r.Superseded == 0 {
		t.Errorf("the kills interrupted no attempt: the scenario proved nothing about recovery")
	}
	mu.Lock()
	defer mu.Unlock()
	var parts []string
	var worst time.Duration
	for i, k := range record {
		switch {
		case len(k.stranded) == 0:
			parts = append(parts, fmt.Sprintf("kill %d (pid %d): nothing stranded", i+1, pids[i]))
		case k.back == 0:
			parts = append(parts, fmt.Sprintf("kill %d (pid %d): %d claims NOT back", i+1, pids[i], len(k.stranded)))
			t.Errorf("kill %d: %d stranded claims never came back", i+1, len(k.stranded))
		default:
			parts = append(parts, fmt.Sprintf("kill %d (pid %d): %d claims back in %s", i+1, pids[i], len(k.stranded), k.back.Round(time.Millisecond)))
			worst = max(worst, k.back)
			if k.back > lease+time.Second {
				t.Errorf("kill %d: the stranded claims came back %s after it, more than one lease (%s) and a second", i+1, k.back, lease)
			}
		}
	}
	summary(t, "jobs=%d completed=%d failed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted_attempts=%d lease=%s worst_recovery=%s; %s",
		r.Jobs, r.Completed, failed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Superseded, lease, worst.Round(time.Millisecond), strings.Join(parts, "; "))
}

// TestRedisWipedMidRun deletes every Redis key of the server while it
// drains: all jobs must complete anyway, from the database.
//
// The Redis is shared with other tests, so instead of FLUSHALL the scenario
// deletes every key under its own REDIS_PREFIX (SCAN + DEL). For jobhook
// that is the same thing: it keeps nothing in Redis outside its prefix.
func TestRedisWipedMidRun(t *testing.T) {
	const n = 2000
	s := newScenario(t)
	s.insertJobs(n, 2, 8, 5)
	s.start("serve")
	before := s.waitFor(60*time.Second, "25% of the jobs to complete", func(p progress) bool {
		return p.byStatus["completed"] >= n/4
	})
	wiped := time.Now()
	deleted, err := s.deleteRedisKeys()
	if err != nil {
		t.Fatalf("chaos: wipe redis: %v", err)
	}
	t.Logf("deleted %d redis keys at %s", deleted, before)
	s.waitAllCompleted(n, 90*time.Second)
	recovered := time.Since(wiped)
	s.stopAll()

	r := analyse(s.jobs(), s.calls(), endAtExit(s.exitTimes()))
	r.check(t)
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted=%d redis_keys_deleted=%d all_done=%s after the wipe",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Interrupted, deleted, recovered.Round(time.Millisecond))
}

// TestPostgresConnectionsKilled terminates the server's Postgres
// connections several times while clients keep creating jobs: every API
// answer must be 201, or 503 with a JSON error code — never a 500, never a
// hang — and every created job must complete afterwards.
func TestPostgresConnectionsKilled(t *testing.T) {
	s := newScenario(t)
	p := s.start("serve")

	var (
		mu       sync.Mutex
		created  []int64
		status   = map[int]int{}
		codes    = map[string]int{}
		problems []string
		slowest  time.Duration
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				began := time.Now()
				a, err := s.createJob(p, 5+(i%16), 10)
				took := time.Since(began)
				mu.Lock()
				slowest = max(slowest, took)
				switch {
				case err != nil:
					problems = append(problems, fmt.Sprintf("no answer within the client's 10s (or not JSON) after %s: %v", took.Round(time.Millisecond), err))
				case a.Status == http.StatusCreated && a.JobID > 0:
					created = append(created, a.JobID)
				case a.Status == http.StatusServiceUnavailable && a.Code != "":
					codes[a.Code]++
				default:
					problems = append(problems, fmt.Sprintf("answer %d: %s", a.Status, a.Body))
				}
				status[a.Status]++
				mu.Unlock()
			}
		}()
	}
	terminated, rounds := 0, 6
	for i := 0; i < rounds; i++ {
		// Pacing the faults, not waiting for work.
		time.Sleep(400 * time.Millisecond)
		n, err := s.terminateServeConnections()
		if err != nil {
			t.Fatalf("chaos: pg_terminate_backend: %v", err)
		}
		terminated += n
	}
	time.Sleep(400 * time.Millisecond) // creates after the last kill
	close(stop)
	wg.Wait()

	if len(problems) > 0 {
		t.Errorf("%d API answers were neither 201 nor 503 with a JSON error code:\n%s", len(problems), firstLines(problems, 20))
	}
	if terminated == 0 {
		t.Errorf("no connection of the server was terminated: the scenario proved nothing")
	}
	if len(created) == 0 {
		t.Fatalf("no job was created")
	}
	if slowest > 10*time.Second {
		t.Errorf("an API call took %s", slowest)
	}
	jobCount := func() int64 {
		var n int64
		if err := s.db.Raw("SELECT count(*) FROM jobs").Scan(&n).Error; err != nil {
			t.Fatalf("chaos: %v", err)
		}
		return n
	}
	// A 503 may still have stored its job (the commit made it, the answer
	// did not): every stored job must complete, the 201s among them.
	total := jobCount()
	finishedAt := time.Now()
	s.waitAllCompleted(total, 120*time.Second)
	drainTime := time.Since(finishedAt)
	s.stopAll()

	jobs := s.jobs()
	stored := map[int64]bool{}
	for _, j := range jobs {
		stored[j.ID] = true
	}
	for _, id := range created {
		if !stored[id] {
			t.Errorf("job %d was created (201) but is not in the database", id)
		}
	}
	// A connection killed under the handler's own writes leaves the call's
	// end unknown: such calls are left out of the overlap check.
	r := analyse(jobs, s.calls(), finishedOnly)
	r.check(t)
	summary(t, "jobs=%d (201: %d) completed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted=%d "+
		"answers=%v 503_codes=%v connections_terminated=%d in %d rounds slowest_answer=%s all_done=%s after the last create",
		r.Jobs, len(created), r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Interrupted,
		status, codes, terminated, rounds, slowest.Round(time.Millisecond), drainTime.Round(time.Millisecond))
}

// TestTwoServersOneQueue runs two servers on one database schema and one
// Redis prefix: every job must be handled exactly once, and both servers
// must have done some of the work.
func TestTwoServersOneQueue(t *testing.T) {
	const n = 2000
	s := newScenario(t)
	a, b := s.start("serve-a"), s.start("serve-b")

	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := a
				if i%2 == 1 {
					p = b
				}
				ans, err := s.createJob(p, 5+i%11, 5)
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
		t.Fatalf("chaos: create: %v", err)
	}
	s.waitAllCompleted(n, 90*time.Second)
	s.stopAll()

	r := analyse(s.jobs(), s.calls(), endAtExit(s.exitTimes()))
	r.check(t)
	if r.Calls != n {
		t.Errorf("%d handler calls for %d jobs, want exactly one each", r.Calls, n)
	}
	for id, cs := range r.ByJob {
		if len(cs) != 1 {
			t.Errorf("job %d handled %d times", id, len(cs))
		}
	}
	if r.ByPID[a.pid()] == 0 || r.ByPID[b.pid()] == 0 {
		t.Errorf("one server did all the work: %s ran %d, %s ran %d", a.name, r.ByPID[a.pid()], b.name, r.ByPID[b.pid()])
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d (%s: %d, %s: %d)",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, a.name, r.ByPID[a.pid()], b.name, r.ByPID[b.pid()])
}

// TestSigtermMidDrain sends SIGTERM while handlers run: the server must let
// them finish, exit 0 within its grace period, and leave no job in
// processing; after a restart, every job completes.
func TestSigtermMidDrain(t *testing.T) {
	const n = 120
	s := newScenario(t)
	s.insertJobs(n, 250, 100, 3) // sleepMs 250–350
	first := s.start("serve-1")
	before := s.waitFor(60*time.Second, "some jobs to complete with calls in flight", func(p progress) bool {
		return p.byStatus["completed"] >= 2*concurrency && p.open >= concurrency/2
	})
	sent := first.sigterm(t)
	limit := shutdownGrace + 2*time.Second
	if !first.waitExit(limit) {
		t.Fatalf("chaos: %s still running %s after SIGTERM (grace %s)", first.name, limit, shutdownGrace)
	}
	took := first.exited.Sub(sent)
	if code := first.state.ExitCode(); code != 0 {
		t.Errorf("%s exited with %s after SIGTERM, want status 0", first.name, first.state)
	}
	after, err := s.progress()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if after.byStatus["processing"] != 0 {
		t.Errorf("%d jobs left in processing by a graceful shutdown:\n%s", after.byStatus["processing"], s.stuckJobs())
	}
	if after.open != 0 {
		t.Errorf("%d handler calls were cut short by a graceful shutdown (handlers of ~300ms, grace %s)", after.open, shutdownGrace)
	}
	t.Logf("SIGTERM at %s; exit after %s; then %s", before, took.Round(time.Millisecond), after)
	late := 0
	for _, c := range s.calls() {
		if c.PID == first.pid() && c.StartedAt.After(sent.Add(time.Second)) {
			late++
		}
	}
	if late > 0 {
		t.Errorf("%s started %d handlers more than 1s after SIGTERM: it did not stop claiming", first.name, late)
	}

	second := s.start("serve-2")
	s.waitAllCompleted(n, 90*time.Second)
	s.stopAll()
	r := analyse(s.jobs(), s.calls(), endAtExit(s.exitTimes()))
	r.check(t)
	if r.Calls != n {
		t.Errorf("%d handler calls for %d jobs: a graceful shutdown should cost no attempt", r.Calls, n)
	}
	if r.ByPID[second.pid()] == 0 {
		t.Errorf("no job ran after the restart: SIGTERM came too late to test anything")
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d exit=%d after %s (grace %s) "+
		"completed_before_restart=%d run_after_restart=%d",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, first.state.ExitCode(), took.Round(time.Millisecond), shutdownGrace,
		after.byStatus["completed"], r.ByPID[second.pid()])
}

// TestStuckProcessingRecovered leaves a job in processing with an expired
// lease and no worker (as a dead server would): serve must return it to
// pending and run it; the lost attempt is in its history but does not
// count against maxAttempts.
func TestStuckProcessingRecovered(t *testing.T) {
	s := newScenario(t)
	err := s.db.Exec(`INSERT INTO jobs (user_id, type, status, priority, payload, attempts, max_attempts, next_run_at, started_at, lease_expires_at, created_at, updated_at)
VALUES (?, ?, 'processing', 0, '{"sleepMs":5}', 1, 3, now() - interval '1 minute', now() - interval '1 minute', now() - interval '30 seconds', now() - interval '1 minute', now() - interval '1 minute')`,
		userID, chaostask.Type).Error
	if err != nil {
		t.Fatalf("chaos: insert a stuck job: %v", err)
	}
	s.insertJobs(20, 5, 5, 3) // and some ordinary work alongside
	p := s.start("serve")
	s.waitAllCompleted(21, 30*time.Second)
	recovered := time.Since(p.started)
	s.stopAll()

	jobs := s.jobs()
	r := analyse(jobs, s.calls(), endAtExit(s.exitTimes()))
	r.check(t)
	stuck := jobs[0]
	if stuck.Attempts != 1 {
		t.Errorf("the stuck job completed at attempt %d, want 1 (a lost attempt does not count)", stuck.Attempts)
	}
	var outcomes []string
	if err := s.db.Raw("SELECT outcome FROM job_attempts WHERE job_id = ? ORDER BY id", stuck.ID).Scan(&outcomes).Error; err != nil {
		t.Fatalf("chaos: read the stuck job's history: %v", err)
	}
	if strings.Join(outcomes, ",") != "lost,completed" {
		t.Errorf("the stuck job's history is %v, want [lost completed]", outcomes)
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d stuck_job_attempts=%d recovered_within=%s of start",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, stuck.Attempts, recovered.Round(time.Millisecond))
}

// TestHangPastTimeout runs a handler that hangs past JOB_TIMEOUT: its
// context is cancelled, the job goes back to pending at once (its lease
// released, not left to expire), is retried, and fails when out of
// attempts.
func TestHangPastTimeout(t *testing.T) {
	const timeout = time.Second
	s := newScenario(t)
	p := s.start("serve", "JOB_TIMEOUT="+timeout.String())
	id := s.mustCreate(p, chaostask.MaxSleepMs, 2)
	s.waitFor(10*time.Second, "the first attempt to start", func(pr progress) bool { return pr.open > 0 })
	first := s.calls()[0]
	// Back to pending with the timeout as its error, well before a lease
	// could expire on its own.
	var back time.Duration
	s.waitFor(timeout+leaseDuration, "the timed-out job to leave processing", func(progress) bool {
		var row jobRow
		if err := s.db.Raw("SELECT id, status, attempts, error FROM jobs WHERE id = ?", id).Scan(&row).Error; err != nil {
			return false
		}
		if row.Status == "processing" {
			return false
		}
		back = time.Since(first.StartedAt)
		if row.Status != "pending" || !strings.Contains(strings.ToLower(row.Error), "timed out") {
			t.Errorf("after the timeout the job is %s with error %q, want pending with a timeout error", row.Status, row.Error)
		}
		return true
	})
	s.waitFor(30*time.Second, "the job to fail after its second attempt", func(pr progress) bool { return pr.byStatus["failed"] == 1 })
	s.stopAll()

	jobs, calls := s.jobs(), s.calls()
	r := analyse(jobs, calls, endAtExit(s.exitTimes()))
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2 (one per attempt)", len(calls))
	}
	for _, c := range calls {
		if c.FinishedAt != nil {
			t.Errorf("attempt %d finished its 10s sleep: the timeout did not cancel it", c.Attempt)
		}
	}
	if gap := calls[1].StartedAt.Sub(calls[0].StartedAt); gap < timeout {
		t.Errorf("attempt 2 started %s after attempt 1, before attempt 1 timed out", gap)
	}
	if jobs[0].Status != "failed" || jobs[0].Attempts != 2 || !strings.Contains(strings.ToLower(jobs[0].Error), "timed out") {
		t.Errorf("job ended %s after %d attempts with %q, want failed after 2 with a timeout", jobs[0].Status, jobs[0].Attempts, jobs[0].Error)
	}
	if len(r.Problems) > 0 {
		t.Errorf("problems: %v", r.Problems)
	}
	summary(t, "jobs=1 status=%s attempts=%d calls=%d timeout=%s back_to_pending=%s after the attempt started error=%q",
		jobs[0].Status, jobs[0].Attempts, len(calls), timeout, back.Round(time.Millisecond), jobs[0].Error)
}

// TestSigtermReleasesUnfinished sends SIGTERM while handlers run that
// cannot finish within the grace period: the server must still exit 0
// within it, giving those jobs back (pending, not stranded in processing
// until their leases expire), and a restart must run them.
func TestSigtermReleasesUnfinished(t *testing.T) {
	const n = concurrency
	s := newScenario(t)
	s.insertJobs(n, 8000, 0, 3) // each runs 8s: longer than the grace
	first := s.start("serve-1")
	s.waitFor(30*time.Second, "every job to be running", func(p progress) bool { return p.open == n })
	sent := first.sigterm(t)
	limit := shutdownGrace + 2*time.Second
	if !first.waitExit(limit) {
		t.Fatalf("chaos: %s still running %s after SIGTERM (grace %s)", first.name, limit, shutdownGrace)
	}
	took := first.exited.Sub(sent)
	if code := first.state.ExitCode(); code != 0 {
		t.Errorf("%s exited with %s after SIGTERM, want status 0", first.name, first.state)
	}
	after, err := s.progress()
	if err != nil {
		t.Fatalf("chaos: %v", err)
	}
	if after.byStatus["processing"] != 0 {
		t.Errorf("%d unfinished jobs left in processing: their leases were not released\n%s", after.byStatus["processing"], s.stuckJobs())
	}
	second := s.start("serve-2")
	var restarted time.Duration
	s.waitFor(10*time.Second, "the released jobs to run again", func(progress) bool {
		var again int64
		if err := s.db.Raw("SELECT count(DISTINCT job_id) FROM "+chaostask.Table+" WHERE pid = ?", second.pid()).Scan(&again).Error; err != nil {
			return false
		}
		restarted = time.Since(second.started)
		return again == n
	})
	s.waitAllCompleted(n, 30*time.Second)
	s.stopAll()

	// A release may give the attempt back (a shutdown is not the job's
	// fault), so the attempt numbers are not checked here: only that each
	// job finished exactly once, in the restarted server, and that no two
	// calls overlapped.
	r := analyse(s.jobs(), s.calls(), endAtExit(s.exitTimes()))
	if r.Lost > 0 {
		t.Errorf("%d jobs not completed", r.Lost)
	}
	if len(r.Overlaps) > 0 {
		t.Errorf("overlaps:\n%s", firstLines(r.Overlaps, 20))
	}
	for id, cs := range r.ByJob {
		finished := 0
		for _, c := range cs {
			if c.FinishedAt != nil {
				finished++
				if c.PID != second.pid() {
					t.Errorf("job %d finished its 8s sleep in %s, which should have been stopped", id, first.name)
				}
			}
		}
		if finished != 1 {
			t.Errorf("job %d finished %d times, want 1", id, finished)
		}
	}
	summary(t, "jobs=%d completed=%d lost=%d duplicates=%d overlaps=%d calls=%d interrupted=%d exit=%d after %s (grace %s) "+
		"left_in_processing=%d rerun_within=%s of restart",
		r.Jobs, r.Completed, r.Lost, r.Duplicates, len(r.Overlaps), r.Calls, r.Interrupted, first.state.ExitCode(), took.Round(time.Millisecond), shutdownGrace,
		after.byStatus["processing"], restarted.Round(time.Millisecond))
}

// TestPostgresConnectionsKilledMidDrain terminates every Postgres
// connection of the server 8 times while it drains 2,000 jobs, once with
// maxAttempts 1 and once with 3. The engine retries the writes a dead
// connection broke (claims, outcomes), so no outcome is lost: no job fails
// although its handler succeeded, and no handler runs again because its
// outcome went missing. Jobs may still fail or retry because the
// handler's own writes hit a dead connection; those are counted apart.
func TestPostgresConnectionsKilledMidDrain(t *testing.T) {
	for _, maxAttempts := range []int{1, 3} {
		t.Run(fmt.Sprintf("maxAttempts=%d", maxAttempts), func(t *testing.T) {
			const n, kills = 2000, 8
			s := newScenario(t)
			s.insertJobs(n, 2, 6, maxAttempts) // sleepMs 2–8
			s.start("serve")
			terminated := 0
			for k := 1; k <= kills; k++ {
				// Each kill waits for the drain to move on past the last.
				s.waitFor(60*time.Second, fmt.Sprintf("%d jobs to end before kill %d", k*n/(kills+2), k), func(p progress) bool {
					return p.byStatus["completed"]+p.byStatus["failed"] >= int64(k*n/(kills+2))
				})
				c, err := s.terminateServeConnections()
				if err != nil {
					t.Fatalf("chaos: pg_terminate_backend: %v", err)
				}
				terminated += c
			}
			s.waitFor(120*time.Second, "every job to end", func(p progress) bool {
				return p.byStatus["completed"]+p.byStatus["failed"] == n
			})
			s.stopAll()

			// A connection killed under the handler's own writes leaves the
			// call's end unknown: such calls are left out of the overlap
			// check.
			jobs, calls := s.jobs(), s.calls()
			r := analyse(jobs, calls, finishedOnly)
			var handlerFailed, failedThatSucceeded int
			for _, j := range jobs {
				if j.Status != "failed" {
					continue
				}
				if strings.HasPrefix(j.Error, "chaos_record:") {
					handlerFailed++ // the handler's own write hit a dead connection
					continue
				}
				failedThatSucceeded++
				if failedThatSucceeded <= 10 {
					t.Errorf("job %d failed (%q) although its handler did not fail", j.ID, j.Error)
				}
			}
			if terminated == 0 {
				t.Errorf("no connection of the server was terminated: the scenario proved nothing")
			}
			if r.SupersededFinished > 0 {
				t.Errorf("%d handlers ran again after an earlier call had finished: an outcome was lost", r.SupersededFinished)
			}
			if r.Duplicates > 0 {
				t.Errorf("%d jobs ran to their end more than once", r.Duplicates)
			}
			if len(r.Overlaps) > 0 {
				t.Errorf("%d overlapping calls:\n%s", len(r.Overlaps), firstLines(r.Overlaps, 10))
			}
			if len(r.Problems) > 0 {
				t.Errorf("%d problems:\n%s", len(r.Problems), firstLines(r.Problems, 10))
			}
			if maxAttempts > 1 && r.Lost > 0 {
				t.Errorf("%d of %d jobs not completed with %d attempts each", r.Lost, n, maxAttempts)
			}
			summary(t, "jobs=%d completed=%d failed=%d (handler's own write failed %d, failed although it succeeded %d) calls=%d "+
				"handlers_rerun_after_finishing=%d duplicates=%d overlaps=%d connections_terminated=%d in %d kills",
				r.Jobs, r.Completed, r.Lost, handlerFailed, failedThatSucceeded, r.Calls, r.SupersededFinished, r.Duplicates,
				len(r.Overlaps), terminated, kills)
		})
	}
}
