package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Artifacts is what the retention pass needs to know of the files jobs
// write (a generated image): how to find their names in a job's payload or
// result, and how to delete one. jobs owns the records (HoldArtifact, the
// job_artifacts table); the implementation owns the files.
//
// A recorded file is deleted once no remaining job names it: its holder
// (the job that wrote it) was deleted by retention, and no remaining job's
// payload or result mentioned its name over one whole lap of the jobs
// table that began after its holder went (see sweepArtifacts).
type Artifacts interface {
	// Names returns the artifact names text (a job's payload or result,
	// JSON) mentions. Naming more than the files written costs nothing.
	Names(text []byte) []string
	// Remove deletes the file name; one already gone is not an error. An
	// error is logged and the delete retried by the next pass.
	Remove(ctx context.Context, name string) error
}

// HoldArtifact records that the running job writes the file name (an
// image, named as its result will name it): call it from inside Handle,
// with its context, before writing the file. The file is then kept while
// the job remains, and after that while any remaining job names it (see
// Artifacts); a file written but never recorded is never deleted.
// Outside a handler it returns ErrNoJob.
func HoldArtifact(ctx context.Context, name string) error {
	jc, ok := ctx.Value(jobContextKey{}).(*jobContext)
	if !ok {
		return fmt.Errorf("jobs: hold artifact %s: %w (call HoldArtifact from inside Handle, with its context)", name, ErrNoJob)
	}
	if name == "" {
		return Permanent(errors.New("jobs: hold artifact: a name is required"))
	}
	if err := jc.w.store.HoldArtifact(ctx, jc.job.ID, name, jc.w.cfg.Clock.Now()); err != nil {
		return fmt.Errorf("jobs: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// Bounds of one artifact sweep (at most one a reconcile pass).
const (
	// artifactScanJobs is how many jobs (payload and result) one pass
	// reads: a lap of the jobs table takes (jobs / artifactScanJobs) + 1
	// passes, whatever the number of artifacts released.
	artifactScanJobs = 5000
	// artifactLookup bounds the names of one look-up.
	artifactLookup = 1000
	// artifactRemoves is how many files one pass deletes.
	artifactRemoves = 500
)

// artifactSweep says what a sweep did.
type artifactSweep struct {
	// Marked counts released artifacts marked at the start of a lap.
	Marked int64
	// Pinned counts released artifacts found named by a remaining job,
	// now held by it.
	Pinned int
	// Doomed counts artifacts no remaining job named over a whole lap,
	// marked for deletion.
	Doomed int64
	// Removed counts files deleted (or found gone) and forgotten.
	Removed int
	// Failed counts files whose delete failed, retried next pass.
	Failed int
}

// sweepArtifacts runs after retention, in two steps.
//
// The lap: when none is running and artifacts were released (their
// holder deleted), they are marked and a lap of the jobs table starts. A
// pass reads the next artifactScanJobs jobs in id order; a released
// artifact one names (payload or result) is pinned to that job, which
// holds it from then on. When a read comes back short, every job was read
// since the lap began: the marked artifacts still released are doomed, in
// one statement. An artifact released during a lap waits for the next one.
// A job created during a lap has a higher id than the lap's position, so
// the lap reads it too.
//
// The files: the doomed ones are deleted (after the doom's commit) and
// their rows forgotten; a missing file is not an error, a failed delete is
// logged and retried by the next pass.
func (r *reconciler) sweepArtifacts(ctx context.Context) (artifactSweep, error) {
	var res artifactSweep
	if r.artifacts == nil {
		return res, nil
	}
	if err := r.lapArtifacts(ctx, &res); err != nil {
		return res, err
	}
	doomed, err := r.store.DoomedArtifacts(ctx, r.artifactRemoves)
	if err != nil {
		return res, fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
	}
	gone := make([]string, 0, len(doomed))
	for _, name := range doomed {
		if err := r.artifacts.Remove(ctx, name); err != nil {
			res.Failed++
			r.log.Warn("artifact not deleted; retried next pass", "name", name, "err", err)
			continue
		}
		gone = append(gone, name)
	}
	if err := r.store.ForgetArtifacts(ctx, gone); err != nil {
		return res, fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
	}
	res.Removed = len(gone)
	if res.Marked+int64(res.Pinned)+res.Doomed+int64(res.Removed+res.Failed) > 0 {
		r.log.Info("artifacts swept", "marked", res.Marked, "pinned", res.Pinned, "doomed", res.Doomed, "removed", res.Removed, "failed", res.Failed)
	}
	return res, nil
}

// lapArtifacts runs one step of the lap, starting one when artifacts were
// released and none runs.
func (r *reconciler) lapArtifacts(ctx context.Context, res *artifactSweep) error {
	lap, cursor, running, err := r.artifactLap(ctx)
	if err != nil {
		return err
	}
	if !running {
		if res.Marked, err = r.store.MarkReleasedArtifacts(ctx); err != nil {
			return fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
		}
		if res.Marked == 0 {
			return nil
		}
		if lap, err = r.startArtifactLap(ctx); err != nil {
			return err
		}
		cursor = 0
	}
	texts, err := r.store.JobTexts(ctx, cursor, r.artifactScanJobs)
	if err != nil {
		return fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
	}
	namer := map[string]int64{} // a name -> the first job read naming it
	var names []string
	for _, t := range texts {
		for _, text := range [][]byte{t.Payload, t.Result} {
			for _, name := range r.artifacts.Names(text) {
				if _, seen := namer[name]; !seen {
					namer[name] = t.ID
					names = append(names, name)
				}
			}
		}
	}
	for start := 0; start < len(names); start += artifactLookup {
		found, err := r.store.ReleasedAmong(ctx, names[start:min(start+artifactLookup, len(names))])
		if err != nil {
			return fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
		}
		for _, name := range found {
			pinned, err := r.store.PinArtifact(ctx, name, namer[name])
			if err != nil {
				return fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
			}
			if pinned {
				res.Pinned++
			}
		}
	}
	if len(texts) == r.artifactScanJobs {
		return r.moveArtifactLap(ctx, lap, texts[len(texts)-1].ID)
	}
	// Every job was read since the lap began: the marked artifacts still
	// released are named by none. Only the process that ends the lap
	// dooms them (a pass that overran its turn finds the lap moved on).
	ended, err := r.endArtifactLap(ctx, lap)
	if err != nil || !ended {
		return err
	}
	if res.Doomed, err = r.store.DoomMarkedArtifacts(ctx, r.clock.Now()); err != nil {
		return fmt.Errorf("artifacts: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// The lap's state is a Redis hash: "lap", a number counted up at each
// start, and "at", the id of the last job read while a lap runs. A lost
// hash only starts a new lap (the marked artifacts wait for its end).
func (r *reconciler) artifactLapKey() string { return r.queue.Key("artifacts:lap") }

// artifactLap returns the running lap and its position, if one runs.
func (r *reconciler) artifactLap(ctx context.Context) (lap string, at int64, running bool, err error) {
	vals, err := r.queue.rdb.HMGet(ctx, r.artifactLapKey(), "lap", "at").Result()
	if err != nil {
		return "", 0, false, fmt.Errorf("artifacts: read lap: %w: %w", ErrUnavailable, err)
	}
	l, _ := vals[0].(string)
	a, _ := vals[1].(string)
	if l == "" || a == "" {
		return l, 0, false, nil
	}
	at, err = strconv.ParseInt(a, 10, 64)
	if err != nil {
		return l, 0, false, nil // not ours: start over
	}
	return l, at, true, nil
}

// startArtifactLap starts a lap at the first job and returns its number.
func (r *reconciler) startArtifactLap(ctx context.Context) (string, error) {
	n, err := r.queue.rdb.HIncrBy(ctx, r.artifactLapKey(), "lap", 1).Result()
	if err != nil {
		return "", fmt.Errorf("artifacts: start lap: %w: %w", ErrUnavailable, err)
	}
	lap := strconv.FormatInt(n, 10)
	if _, err := moveLapScript.Run(ctx, r.queue.rdb, []string{r.artifactLapKey()}, lap, 0).Result(); err != nil {
		return "", fmt.Errorf("artifacts: start lap: %w: %w", ErrUnavailable, err)
	}
	return lap, nil
}

// moveArtifactLap records that lap read every job up to id at.
func (r *reconciler) moveArtifactLap(ctx context.Context, lap string, at int64) error {
	if _, err := moveLapScript.Run(ctx, r.queue.rdb, []string{r.artifactLapKey()}, lap, at).Result(); err != nil {
		return fmt.Errorf("artifacts: move lap: %w: %w", ErrUnavailable, err)
	}
	return nil
}

// endArtifactLap ends lap, and reports whether it was still the one
// running.
func (r *reconciler) endArtifactLap(ctx context.Context, lap string) (bool, error) {
	n, err := endLapScript.Run(ctx, r.queue.rdb, []string{r.artifactLapKey()}, lap).Int()
	if err != nil {
		return false, fmt.Errorf("artifacts: end lap: %w: %w", ErrUnavailable, err)
	}
	return n == 1, nil
}

// The lap's compare-and-set scripts: each writes only while the lap named
// is the current one. No loops.
var (
	moveLapScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'lap') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'at', ARGV[2])
  return 1
end
return 0`)
	endLapScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'lap') == ARGV[1] then
  redis.call('HDEL', KEYS[1], 'at')
  return 1
end
return 0`)
)
