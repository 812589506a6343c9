package chaos

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jobhook/jobhook/internal/chaostask"
)

// endFunc says when a call ended: its finished_at, or for a call that never
// recorded one (interrupted) an upper bound such as the moment its process
// died; ok is false when the end cannot be known.
type endFunc func(c chaostask.Call) (end time.Time, ok bool)

// endAtExit bounds an interrupted call by the exit of its process.
func endAtExit(exits map[int]time.Time) endFunc {
	return func(c chaostask.Call) (time.Time, bool) {
		if c.FinishedAt != nil {
			return *c.FinishedAt, true
		}
		at, ok := exits[c.PID]
		return at, ok
	}
}

// finishedOnly knows the end of finished calls only.
func finishedOnly(c chaostask.Call) (time.Time, bool) {
	if c.FinishedAt != nil {
		return *c.FinishedAt, true
	}
	return time.Time{}, false
}

// report is what the jobs table and chaos_calls say after a scenario.
type report struct {
	Jobs      int
	Completed int
	// Lost counts jobs not completed.
	Lost  int
	Calls int
	// Interrupted counts calls that never recorded their end (finished_at
	// NULL): their process died or their context ended under them.
	Interrupted int
	// Superseded counts calls of an attempt other than the job's last one:
	// attempts a fault took away (interrupted, or the handler returned but
	// its outcome was never recorded).
	Superseded int
	// SupersededFinished counts superseded calls whose handler finished:
	// the outcome was lost between the handler's return and its commit.
	SupersededFinished int
	// Duplicates counts jobs whose handler ran to its end more than once.
	Duplicates int
	// Overlaps lists pairs of calls of one job that ran at the same time.
	Overlaps []string
	// UnknownEnds counts interrupted calls whose end could not be bounded,
	// left out of the overlap check.
	UnknownEnds int
	// Problems lists everything else that is wrong: a completed job without
	// exactly one finished call of its last attempt, an attempt that ran
	// twice, a call of a job that does not exist.
	Problems []string
	// ByPID counts calls per process.
	ByPID map[int]int
	// ByJob is every job's calls, by start time.
	ByJob map[int64][]chaostask.Call
}

func analyse(jobs []jobRow, calls []chaostask.Call, end endFunc) report {
	r := report{Jobs: len(jobs), Calls: len(calls), ByPID: map[int]int{}, ByJob: map[int64][]chaostask.Call{}}
	known := make(map[int64]jobRow, len(jobs))
	for _, j := range jobs {
		known[j.ID] = j
		if j.Status == "completed" {
			r.Completed++
		}
	}
	r.Lost = r.Jobs - r.Completed
	for _, c := range calls {
		r.ByPID[c.PID]++
		if c.FinishedAt == nil {
			r.Interrupted++
		}
		if _, ok := known[c.JobID]; !ok {
			r.Problems = append(r.Problems, fmt.Sprintf("call %d is for job %d, which does not exist", c.ID, c.JobID))
		}
		r.ByJob[c.JobID] = append(r.ByJob[c.JobID], c)
	}
	for _, j := range jobs {
		cs := r.ByJob[j.ID]
		sort.Slice(cs, func(a, b int) bool { return cs[a].StartedAt.Before(cs[b].StartedAt) })
		// The job's final call is the last to start of its current attempt
		// number: an attempt whose worker was lost does not count, so the
		// next claim runs the same attempt number again, under another
		// lease. Every other call is superseded.
		final := -1
		for i, c := range cs {
			if c.Attempt == j.Attempts {
				final = i
			}
		}
		finished := 0
		claims := map[string]int{}
		for i, c := range cs {
			if c.LeaseID != "" {
				claims[c.LeaseID]++
			}
			if c.FinishedAt != nil {
				finished++
			}
			if i != final {
				r.Superseded++
				if c.FinishedAt != nil {
					r.SupersededFinished++
				}
			}
		}
		if finished > 1 {
			r.Duplicates++
		}
		for lease, n := range claims {
			if n > 1 {
				r.Problems = append(r.Problems, fmt.Sprintf("job %d: the claim %s ran its handler %d times", j.ID, lease, n))
			}
		}
		if j.Status == "completed" {
			switch {
			case final < 0:
				r.Problems = append(r.Problems, fmt.Sprintf("job %d completed at attempt %d, which has no call", j.ID, j.Attempts))
			case cs[final].FinishedAt == nil:
				r.Problems = append(r.Problems, fmt.Sprintf("job %d completed at attempt %d, whose call never finished", j.ID, j.Attempts))
			case final != len(cs)-1:
				r.Problems = append(r.Problems, fmt.Sprintf("job %d completed at attempt %d, but a call of attempt %d started after it", j.ID, j.Attempts, cs[len(cs)-1].Attempt))
			}
		}
		for a := 0; a < len(cs); a++ {
			endA, ok := end(cs[a])
			if !ok {
				r.UnknownEnds++
				continue
			}
			for b := a + 1; b < len(cs); b++ {
				if endA.After(cs[b].StartedAt) {
					r.Overlaps = append(r.Overlaps, fmt.Sprintf("job %d: attempt %d (pid %d, %s–%s) overlaps attempt %d (pid %d, from %s)",
						j.ID, cs[a].Attempt, cs[a].PID, clock(cs[a].StartedAt), clock(endA), cs[b].Attempt, cs[b].PID, clock(cs[b].StartedAt)))
				}
			}
		}
	}
	return r
}

func clock(t time.Time) string { return t.Format("15:04:05.000000") }

// check fails the test for every lost job, overlap and problem.
func (r report) check(t *testing.T) {
	t.Helper()
	if r.Lost > 0 {
		t.Errorf("%d of %d jobs not completed", r.Lost, r.Jobs)
	}
	if len(r.Overlaps) > 0 {
		t.Errorf("%d times a job's handler ran twice at the same time:\n%s", len(r.Overlaps), firstLines(r.Overlaps, 20))
	}
	if len(r.Problems) > 0 {
		t.Errorf("%d problems:\n%s", len(r.Problems), firstLines(r.Problems, 20))
	}
}

func firstLines(lines []string, n int) string {
	if len(lines) > n {
		lines = append(lines[:n:n], fmt.Sprintf("… and %d more", len(lines)-n))
	}
	return "  " + strings.Join(lines, "\n  ")
}

// TestAnalyse checks the bookkeeping the scenarios rely on; it needs no
// servers.
func TestAnalyse(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	fin := func(ms int) *time.Time { x := at(ms); return &x }
	kill := at(100)
	exits := map[int]time.Time{1: kill, 2: at(10_000)}

	jobs := []jobRow{
		{ID: 1, Status: "completed", Attempts: 1},
		{ID: 2, Status: "completed", Attempts: 2}, // interrupted by the kill, then run again
		{ID: 3, Status: "completed", Attempts: 2}, // finished, outcome lost in the kill
		{ID: 4, Status: "pending", Attempts: 1},   // never completed
		{ID: 5, Status: "completed", Attempts: 1}, // lost its worker (not counted), then run again as attempt 1
	}
	calls := []chaostask.Call{
		{ID: 1, JobID: 1, Attempt: 1, LeaseID: "a1", PID: 1, StartedAt: at(0), FinishedAt: fin(10)},
		{ID: 2, JobID: 2, Attempt: 1, LeaseID: "b1", PID: 1, StartedAt: at(90)},
		{ID: 3, JobID: 3, Attempt: 1, LeaseID: "c1", PID: 1, StartedAt: at(80), FinishedAt: fin(95)},
		{ID: 4, JobID: 2, Attempt: 2, LeaseID: "b2", PID: 2, StartedAt: at(2000), FinishedAt: fin(2010)},
		{ID: 5, JobID: 3, Attempt: 2, LeaseID: "c2", PID: 2, StartedAt: at(2000), FinishedAt: fin(2010)},
		{ID: 6, JobID: 4, Attempt: 1, LeaseID: "d1", PID: 2, StartedAt: at(3000)},
		{ID: 7, JobID: 5, Attempt: 1, LeaseID: "e1", PID: 1, StartedAt: at(50)},
		{ID: 8, JobID: 5, Attempt: 1, LeaseID: "e2", PID: 2, StartedAt: at(2000), FinishedAt: fin(2010)},
	}
	r := analyse(jobs, calls, endAtExit(exits))
	if r.Jobs != 5 || r.Completed != 4 || r.Lost != 1 || r.Calls != 8 {
		t.Fatalf("counts: %+v", r)
	}
	if r.Interrupted != 3 || r.Superseded != 3 || r.SupersededFinished != 1 || r.Duplicates != 1 {
		t.Fatalf("interrupted %d superseded %d (finished %d) duplicates %d", r.Interrupted, r.Superseded, r.SupersededFinished, r.Duplicates)
	}
	if len(r.Overlaps) != 0 || len(r.Problems) != 0 || r.UnknownEnds != 0 {
		t.Fatalf("overlaps %v problems %v unknown %d", r.Overlaps, r.Problems, r.UnknownEnds)
	}
	if r.ByPID[1] != 4 || r.ByPID[2] != 4 {
		t.Fatalf("by pid %v", r.ByPID)
	}

	// A second call that starts while the first still runs (its process was
	// alive until the kill) overlaps; so does one inside a finished call.
	calls = append(calls,
		chaostask.Call{ID: 9, JobID: 2, Attempt: 3, LeaseID: "b3", PID: 2, StartedAt: at(95), FinishedAt: fin(99)},
		chaostask.Call{ID: 10, JobID: 1, Attempt: 1, LeaseID: "a1", PID: 2, StartedAt: at(5), FinishedAt: fin(6)},
		chaostask.Call{ID: 11, JobID: 99, Attempt: 1, LeaseID: "z1", PID: 2, StartedAt: at(5), FinishedAt: fin(6)},
		chaostask.Call{ID: 12, JobID: 3, Attempt: 3, LeaseID: "c3", PID: 2, StartedAt: at(3000), FinishedAt: fin(3010)},
	)
	r = analyse(jobs, calls, endAtExit(exits))
	if len(r.Overlaps) != 2 {
		t.Fatalf("want 2 overlaps, got %v", r.Overlaps)
	}
	// job 1: one claim ran its handler twice; job 3: a call started after
	// the attempt it completed at; job 99 does not exist.
	if len(r.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", r.Problems)
	}
	// Without a bound on interrupted calls they are left out.
	r = analyse(jobs, calls, finishedOnly)
	if r.UnknownEnds != 3 || len(r.Overlaps) != 1 {
		t.Fatalf("unknown ends %d, overlaps %v", r.UnknownEnds, r.Overlaps)
	}
}
