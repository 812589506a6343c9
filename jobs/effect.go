package jobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jobhook/jobhook/jobs/internal/store"
)

// EffectFunc performs an irreversible step (a post, a payment) and returns
// the provider's id of what it created.
type EffectFunc func(ctx context.Context) (providerID string, err error)

// EffectCheckFunc asks the provider whether the step of an intent happened
// after all, and returns its id when it did (found). It must answer from
// the provider's own records, matched by what the step sent and by time
// (the intent's At, less a small clock skew); an error means "cannot tell
// now": the job retries, nothing is guessed.
type EffectCheckFunc func(ctx context.Context, intent EffectIntent) (providerID string, found bool, err error)

// EffectIntent is what an attempt recorded before it ran an effect's step,
// and whose outcome never got recorded: the process died, the provider's
// answer was lost, or the write of the id failed.
type EffectIntent struct {
	JobID int64
	Name  string
	Key   string
	// Attempt is the attempt that recorded the intent.
	Attempt int
	// At is when the intent was recorded (the engine's clock), just
	// before the step was called: the step, if it happened, happened after.
	At time.Time
	// Taken holds the provider ids that other jobs recorded for a step of
	// the same name since an hour before At (EffectTakenWindow): what the
	// provider lists with the same text and time may be theirs, and a
	// check must not adopt those.
	Taken map[string]bool
}

// EffectTakenWindow is how long before an intent the ids other jobs
// recorded are handed to its check (EffectIntent.Taken).
const EffectTakenWindow = time.Hour

// EffectSource says how Effect came by the provider's id.
type EffectSource string

// The sources of an EffectOutcome.
const (
	// EffectRan: the step ran in this attempt.
	EffectRan EffectSource = "ran"
	// EffectRecorded: an earlier attempt ran the step and recorded its
	// id; the step was not called again.
	EffectRecorded EffectSource = "recorded"
	// EffectAdopted: an earlier attempt ran the step without recording
	// its id, and the check found it at the provider; the step was not
	// called again.
	EffectAdopted EffectSource = "adopted"
)

// EffectOutcome is what Effect did.
type EffectOutcome struct {
	// ProviderID is the provider's id of what the step created.
	ProviderID string
	Source     EffectSource
}

// Adopted reports whether the id was found by the check, rather than
// returned by the step.
func (o EffectOutcome) Adopted() bool { return o.Source == EffectAdopted }

// ErrEffectUnknown wraps an error of a step that returned no error and no
// id: its outcome is unknown, and the next attempt checks it.
var ErrEffectUnknown = errors.New("effect outcome unknown")

// Effect runs a running job's irreversible step once: name names the
// step ("media_publish"), key the thing it acts on (a container id), so a
// job may have many. Call it from inside Handle, with the context Handle
// was given; outside a handler it returns ErrNoJob.
//
//   - No record: Effect records the intent (job, name, key, attempt, time),
//     calls do, then records the id do returned. Both writes are fenced by
//     the job's lease like every write of a running job: a worker that
//     lost the job records nothing (ErrLeaseLost), and do is not called.
//   - Recorded done (an earlier attempt's outcome was lost after the id was
//     written): the id is returned, do is not called (EffectRecorded).
//   - An intent without an id (the process died, the answer or the id
//     write was lost): check is asked. Found: its id is recorded and
//     returned (EffectAdopted). Not found: a new intent is recorded and do
//     runs again. An error of check is returned as it is (its Permanent or
//     RetryAfter class kept): the job retries and nothing is guessed.
//
// An error of do is returned as it is and leaves the intent: the next
// attempt checks before it runs do again. A failed write of the id returns
// an error wrapping ErrUnavailable; the next attempt's check finds the step.
//
// The guarantee is as good as check: a step runs twice only when check
// misses a step that happened, and a step's id is another job's only when
// check matches another job's step that Taken does not name. While a
// worker holds the job's lease no other attempt runs; a worker whose lease
// was taken away while its do was in flight (it stalled past its lease)
// may still complete that do after the next attempt's check.
func Effect(ctx context.Context, name, key string, do EffectFunc, check EffectCheckFunc) (EffectOutcome, error) {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return EffectOutcome{}, fmt.Errorf("jobs: effect %s/%s: %w (call Effect from inside Handle, with its context)", name, key, ErrNoJob)
	}
	if name == "" || key == "" || do == nil || check == nil {
		return EffectOutcome{}, Permanent(fmt.Errorf("jobs: effect %q/%q: name, key, do and check are required", name, key))
	}
	e := effectRun{st: jc.w.store, clock: jc.w.cfg.Clock, fence: fenceOf(jc.job), name: name, key: key}
	log := jc.w.log.With("job_id", jc.job.ID, "attempt", jc.job.Attempts, "effect", name, "key", key)

	rec, err := e.st.Effect(ctx, e.fence.ID, name, key)
	if err != nil {
		return EffectOutcome{}, e.fail("read", fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	if rec != nil && rec.Status == store.EffectDone && rec.ProviderID != nil {
		return EffectOutcome{ProviderID: *rec.ProviderID, Source: EffectRecorded}, nil
	}
	if rec != nil {
		taken, err := e.st.EffectIDsDone(ctx, name, e.fence.ID, rec.CreatedAt.Add(-EffectTakenWindow))
		if err != nil {
			return EffectOutcome{}, e.fail("read", fmt.Errorf("%w: %w", ErrUnavailable, err))
		}
		intent := EffectIntent{JobID: rec.JobID, Name: name, Key: key, Attempt: rec.Attempt, At: rec.CreatedAt, Taken: map[string]bool{}}
		for _, id := range taken {
			intent.Taken[id] = true
		}
		id, found, err := check(ctx, intent)
		if err != nil {
			return EffectOutcome{}, e.fail("check", err)
		}
		if found {
			if id == "" || intent.Taken[id] {
				return EffectOutcome{}, e.fail("check", fmt.Errorf("check found the step but returned no id, or another job's (%q)", id))
			}
			if err := e.done(ctx, id); err != nil {
				return EffectOutcome{}, err
			}
			log.Info("effect found already done at the provider: adopted", "provider_id", id, "intent_attempt", rec.Attempt)
			return EffectOutcome{ProviderID: id, Source: EffectAdopted}, nil
		}
		log.Info("effect not found at the provider: running it again", "intent_attempt", rec.Attempt)
	}

	saved, err := e.st.RecordEffectIntent(ctx, e.fence, name, key, e.clock.Now())
	switch {
	case err != nil:
		return EffectOutcome{}, e.fail("record intent", fmt.Errorf("%w: %w", ErrUnavailable, err))
	case !saved:
		return EffectOutcome{}, e.fail("record intent", ErrLeaseLost)
	}
	id, err := do(ctx)
	if err != nil {
		return EffectOutcome{}, e.fail("run", err)
	}
	if id == "" {
		return EffectOutcome{}, e.fail("run", fmt.Errorf("%w: the step returned no id", ErrEffectUnknown))
	}
	if err := e.done(ctx, id); err != nil {
		return EffectOutcome{}, err
	}
	return EffectOutcome{ProviderID: id, Source: EffectRan}, nil
}

// effectRun is one call of Effect.
type effectRun struct {
	st        *store.Store
	clock     Clock
	fence     store.Fence
	name, key string
}

// done records the provider id, fenced.
func (e effectRun) done(ctx context.Context, id string) error {
	saved, err := e.st.RecordEffectDone(ctx, e.fence, e.name, e.key, id, e.clock.Now())
	switch {
	case err != nil:
		return e.fail("record id "+id, fmt.Errorf("%w: %w", ErrUnavailable, err))
	case !saved:
		return e.fail("record id "+id, ErrLeaseLost)
	}
	return nil
}

// fail wraps err with the step it happened in.
func (e effectRun) fail(what string, err error) error {
	return fmt.Errorf("jobs: effect %s/%s of job %d: %s: %w", e.name, e.key, e.fence.ID, what, err)
}
