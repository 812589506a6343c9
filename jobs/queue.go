package jobs

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/models"
)

// DefaultPrefix is the default prefix of jobhook's Redis keys.
const DefaultPrefix = "jobs:"

// seqSpan is the room each priority gets in a pending score: scores are
// (MaxPriority-priority)*seqSpan + seq, which stays below 2^53 for every
// priority, so float64 scores are exact. seq wraps after seqSpan (about 8.6
// billion) enqueues, the only point where FIFO order is not kept.
const seqSpan = 1 << 33

// maxArgsPerCall bounds the jobs sent in one script call.
const maxArgsPerCall = 1000

// queueItem is a job as the queue knows it: its id, its priority and, when
// known, its user and flow keys (see itemOf). An item without them keeps
// what the queue holds already.
type queueItem struct {
	ID       int64
	Priority int
	// Meta is the job's user and flow keys, encoded for the queue; empty
	// when unknown.
	Meta string
}

// itemOf is job's queue item, with its user and flow keys.
func itemOf(job *models.Job) queueItem {
	return queueItem{ID: job.ID, Priority: job.Priority, Meta: encodeMeta(job.UserID, job.Type, job.FlowKeys)}
}

// encodeMeta encodes a job's user, type and flow keys as the queue keeps
// them: the keys space-separated, the type and the user, a line each.
func encodeMeta(user, typ string, keys []string) string {
	return strings.Join(keys, " ") + "\n" + typ + "\n" + user
}

// FlowLimit is the limit of the flow keys that start with Prefix: at most
// Concurrency of their jobs at once (0: no limit), and at most Rate starts
// per Interval (0: no limit). The longest matching prefix applies.
type FlowLimit struct {
	Prefix      string
	Concurrency int
	Rate        int
	Interval    time.Duration
}

// Claimed is what one claim call took from the queue.
type Claimed struct {
	// IDs are the jobs claimed, in queue order.
	IDs []int64
	// More says jobs were left unlooked-at: the call reached its bound on
	// the jobs it may look at (jobs set aside by their flow keys count).
	More bool
	// WakeAt, when not zero, is the earliest time a job the call set aside
	// (a paused key, a rate limit) may run.
	WakeAt time.Time
}

// redisQueue is the Redis priority queue. Keys, under a configurable prefix:
//
//   - pending: sorted set of runnable job ids, scored by priority and
//     enqueue order: (MaxPriority-priority)*seqSpan + seq.
//   - u:<user>: sorted set of the user's runnable jobs, scored as in
//     pending; ring: sorted set of the users with runnable jobs, scored by
//     the priority of their first job and their turn. A claim takes the
//     first user of the ring, that user's first job, and puts the user
//     back behind the other users of that priority: the highest priority
//     runs first, exactly, and within one priority users take turns.
//   - parked:<key>: jobs (still pending) waiting for a slot of flow key
//     <key>, whose concurrency limit was reached; run:<key>: the jobs
//     holding its slots, scored by lease deadline; rate:<key>: its recent
//     starts, when it has a rate limit; pauses: hash of paused keys, the
//     time the pause ends (ms) and its reason.
//   - processing: sorted set of claimed job ids scored by lease deadline
//     (Unix milliseconds).
//   - delayed: sorted set of job ids waiting for a retry, a paused key or
//     a rate window, scored by the time they may run (Unix milliseconds),
//     with their priorities in the hash delayed:priority.
//   - meta: hash of each queued job's user and flow keys; waiting: hash of
//     why a job is held back by a key (for the API).
//   - seq: the counter that orders jobs of equal priority and users' turns.
//
// A job id is in at most one of pending, processing and delayed; every
// move between them is one atomic script call.
type redisQueue struct {
	rdb    redis.UniversalClient
	clock  Clock
	prefix string
	limits []any // the claim script's limit arguments
	byKey  []FlowLimit
}

// newRedisQueue returns a queue on rdb with keys under prefix (DefaultPrefix when
// empty) and the given flow limits. A nil clock is the system clock.
func newRedisQueue(rdb redis.UniversalClient, prefix string, clock Clock, limits ...FlowLimit) *redisQueue {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if clock == nil {
		clock = SystemClock{}
	}
	q := &redisQueue{rdb: rdb, clock: clock, prefix: prefix, byKey: limits}
	for _, l := range limits {
		q.limits = append(q.limits, l.Prefix, max(l.Concurrency, 0), max(l.Rate, 0), max(l.Interval.Milliseconds(), 1))
	}
	return q
}

// Key returns the full name of one of the queue's keys.
func (q *redisQueue) Key(name string) string { return q.prefix + name }

// Prefix returns the queue's key prefix.
func (q *redisQueue) Prefix() string { return q.prefix }

// Redis returns the client the queue uses.
func (q *redisQueue) Redis() redis.UniversalClient { return q.rdb }

// Enqueue makes jobs runnable now. A job already pending keeps its place.
func (q *redisQueue) Enqueue(ctx context.Context, items ...queueItem) error {
	return q.runByPriority(ctx, "enqueue", enqueueScript, items)
}

// runByPriority runs script over items, at most maxArgsPerCall of them a
// call, with ARGV prefix, then id, inverted priority, meta for each; verb
// names the operation in errors.
func (q *redisQueue) runByPriority(ctx context.Context, verb string, script *redis.Script, items []queueItem) error {
	for start := 0; start < len(items); start += maxArgsPerCall {
		chunk := items[start:min(start+maxArgsPerCall, len(items))]
		args := make([]any, 0, 1+3*len(chunk))
		args = append(args, q.prefix)
		for _, it := range chunk {
			if it.Priority < models.MinPriority || it.Priority > models.MaxPriority {
				return fmt.Errorf("queue: %s job %d: priority %d out of range", verb, it.ID, it.Priority)
			}
			args = append(args, it.ID, models.MaxPriority-it.Priority, it.Meta)
		}
		if err := script.Run(ctx, q.rdb, nil, args...).Err(); err != nil {
			return fmt.Errorf("queue: %s %d jobs: %w", verb, len(chunk), err)
		}
	}
	return nil
}

// EnqueueAt makes jobs runnable at t (a retry's backoff, or a pending job
// that is not due yet). It moves them out of wherever they were.
func (q *redisQueue) EnqueueAt(ctx context.Context, t time.Time, items ...queueItem) error {
	for start := 0; start < len(items); start += maxArgsPerCall {
		chunk := items[start:min(start+maxArgsPerCall, len(items))]
		args := make([]any, 0, 2+3*len(chunk))
		args = append(args, q.prefix, t.UnixMilli())
		for _, it := range chunk {
			args = append(args, it.ID, it.Priority, it.Meta)
		}
		if err := delayScript.Run(ctx, q.rdb, nil, args...).Err(); err != nil {
			return fmt.Errorf("queue: delay %d jobs: %w", len(chunk), err)
		}
	}
	return nil
}

// PromoteDue moves every delayed job whose time has come to pending, and
// returns how many it moved.
func (q *redisQueue) PromoteDue(ctx context.Context) (int, error) {
	const batch = 1000
	total := 0
	for {
		n, err := promoteScript.Run(ctx, q.rdb, nil, q.prefix, q.clock.Now().UnixMilli(), batch).Int()
		if err != nil {
			return total, fmt.Errorf("queue: promote due jobs: %w", err)
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}

// NextDelayed returns the time the earliest delayed job may run, and false
// when none is delayed.
func (q *redisQueue) NextDelayed(ctx context.Context) (time.Time, bool, error) {
	zs, err := q.rdb.ZRangeWithScores(ctx, q.Key("delayed"), 0, 0).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue: earliest delayed job: %w", err)
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(int64(zs[0].Score)), true, nil
}

// claimScanFactor bounds the jobs one claim call looks at: this many per
// job asked for (at least claimScanMin), so that a run of jobs parked by
// their keys cannot make one call long.
const (
	claimScanFactor = 4
	claimScanMin    = 64
)

// Claim atomically moves up to n of the first runnable jobs to processing,
// with a lease that ends after lease, and returns their ids in queue order
// (ClaimBatch says more).
func (q *redisQueue) Claim(ctx context.Context, n int, lease time.Duration) ([]int64, error) {
	c, err := q.ClaimBatch(ctx, n, lease)
	return c.IDs, err
}

// ClaimBatch atomically moves up to n of the first runnable jobs to
// processing, with a lease that ends after lease (see claimScript for the
// order and the flow keys' limits).
func (q *redisQueue) ClaimBatch(ctx context.Context, n int, lease time.Duration) (Claimed, error) {
	if n <= 0 {
		return Claimed{}, nil
	}
	now := q.clock.Now()
	args := make([]any, 0, 5+len(q.limits))
	args = append(args, q.prefix, n, now.Add(lease).UnixMilli(), now.UnixMilli(), max(claimScanFactor*n, claimScanMin))
	args = append(args, q.limits...)
	raw, err := claimScript.Run(ctx, q.rdb, nil, args...).StringSlice()
	if err != nil {
		return Claimed{}, fmt.Errorf("queue: claim %d jobs: %w", n, err)
	}
	if len(raw) < 2 {
		return Claimed{}, fmt.Errorf("queue: claim: the script answered %d values, want at least 2", len(raw))
	}
	var c Claimed
	c.More = raw[len(raw)-2] == "1"
	if ms, err := strconv.ParseInt(raw[len(raw)-1], 10, 64); err == nil && ms > 0 {
		c.WakeAt = time.UnixMilli(ms)
	}
	c.IDs = make([]int64, 0, len(raw)-2)
	for _, s := range raw[:len(raw)-2] {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return c, fmt.Errorf("queue: claim: bad job id %q in %s", s, q.Key("pending"))
		}
		c.IDs = append(c.IDs, id)
	}
	return c, nil
}

// Ack drops finished jobs from the queue, giving back their key slots.
func (q *redisQueue) Ack(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if err := q.runIDs(ctx, ackScript, ids); err != nil {
		return fmt.Errorf("queue: ack %d jobs: %w", len(ids), err)
	}
	return nil
}

// runIDs runs script with ARGV prefix, id, ..., at most maxArgsPerCall ids
// a call.
func (q *redisQueue) runIDs(ctx context.Context, script *redis.Script, ids []int64, lead ...any) error {
	for start := 0; start < len(ids); start += maxArgsPerCall {
		chunk := ids[start:min(start+maxArgsPerCall, len(ids))]
		args := make([]any, 0, 1+len(lead)+len(chunk))
		args = append(args, q.prefix)
		args = append(args, lead...)
		for _, id := range chunk {
			args = append(args, id)
		}
		if err := script.Run(ctx, q.rdb, nil, args...).Err(); err != nil {
			return err
		}
	}
	return nil
}

// Release gives claimed jobs back to pending, at the front of their
// priority: a job whose worker was lost or shut down runs again before the
// jobs that were queued after it.
func (q *redisQueue) Release(ctx context.Context, items ...queueItem) error {
	return q.runByPriority(ctx, "release", releaseScript, items)
}

// Requeue gives claimed jobs back to pending at the back of their
// priority, behind every job already waiting, as a new job would be
// (Release, by contrast, puts them in front). The reaper's jobs go there:
// see finisher.after.
func (q *redisQueue) Requeue(ctx context.Context, items ...queueItem) error {
	return q.runByPriority(ctx, "requeue", requeueScript, items)
}

// Remove drops a job from every set, as when it is cancelled.
func (q *redisQueue) Remove(ctx context.Context, id int64) error {
	if err := q.runIDs(ctx, removeScript, []int64{id}); err != nil {
		return fmt.Errorf("queue: remove job %d: %w", id, err)
	}
	return nil
}

// Unstick lets the jobs parked on a flow key run when the key has free
// slots (a guard: every slot given back wakes a parked job itself), and
// returns how many it let run.
func (q *redisQueue) Unstick(ctx context.Context) (int, error) {
	args := append([]any{q.prefix, q.clock.Now().UnixMilli()}, q.limits...)
	n, err := unstickScript.Run(ctx, q.rdb, nil, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: wake parked jobs: %w", err)
	}
	return n, nil
}

// HoldFlow holds flow key for an operator, for reason, until ResumeFlow:
// its jobs stay pending, parked on the key, and the API says why.
func (q *redisQueue) HoldFlow(ctx context.Context, key, reason string) error {
	if err := holdScript.Run(ctx, q.rdb, nil, q.prefix, key, reason, q.clock.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("queue: hold flow key %s: %w", key, err)
	}
	return nil
}

// ResumeFlow ends the hold or pause of flow key and returns how many
// parked jobs it let run.
func (q *redisQueue) ResumeFlow(ctx context.Context, key string) (int, error) {
	n, err := resumeScript.Run(ctx, q.rdb, nil, q.prefix, key).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: resume flow key %s: %w", key, err)
	}
	return n, nil
}

// HoldType holds a job type for an operator, for reason, until
// ResumeType: its jobs stay pending, parked on the pseudo-key
// type:<type>, and the API says why.
func (q *redisQueue) HoldType(ctx context.Context, typ, reason string) error {
	if err := holdTypeScript.Run(ctx, q.rdb, nil, q.prefix, typ, reason).Err(); err != nil {
		return fmt.Errorf("queue: hold job type %s: %w", typ, err)
	}
	return nil
}

// ResumeType ends the hold of a job type and returns how many parked jobs
// it let run.
func (q *redisQueue) ResumeType(ctx context.Context, typ string) (int, error) {
	n, err := resumeTypeScript.Run(ctx, q.rdb, nil, q.prefix, typ).Int()
	if err != nil {
		return 0, fmt.Errorf("queue: resume job type %s: %w", typ, err)
	}
	return n, nil
}

// HeldTypes returns the job types an operator holds, with the reasons.
func (q *redisQueue) HeldTypes(ctx context.Context) (map[string]string, error) {
	m, err := q.rdb.HGetAll(ctx, q.Key("typeholds")).Result()
	if err != nil {
		return nil, fmt.Errorf("queue: held job types: %w", err)
	}
	return m, nil
}

// PauseFlow pauses flow key until until, for reason, unless it is paused
// longer already; jobID, when not zero, is the job that reported it, whose
// wait the API shows.
func (q *redisQueue) PauseFlow(ctx context.Context, key string, until time.Time, reason string, jobID int64) error {
	job := ""
	if jobID != 0 {
		job = strconv.FormatInt(jobID, 10)
	}
	if err := pauseScript.Run(ctx, q.rdb, nil, q.prefix, key, until.UnixMilli(), reason, job, q.clock.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("queue: pause flow key %s: %w", key, err)
	}
	return nil
}

// Depth is how many jobs each set holds.
type Depth struct {
	Pending    int64 `json:"pending"`
	Processing int64 `json:"processing"`
	Delayed    int64 `json:"delayed"`
}

// Depth counts the jobs in each set.
func (q *redisQueue) Depth(ctx context.Context) (Depth, error) {
	var p, r, d *redis.IntCmd
	_, err := q.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		p = pl.ZCard(ctx, q.Key("pending"))
		r = pl.ZCard(ctx, q.Key("processing"))
		d = pl.ZCard(ctx, q.Key("delayed"))
		return nil
	})
	if err != nil {
		return Depth{}, fmt.Errorf("queue: depth: %w", err)
	}
	return Depth{Pending: p.Val(), Processing: r.Val(), Delayed: d.Val()}, nil
}

// Missing returns the ids, of those given, that are in none of the sets:
// one ZMSCORE per set (Redis 6.2 or later), pipelined in one round trip.
func (q *redisQueue) Missing(ctx context.Context, ids []int64) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, 2+len(ids))
	args = append(args, "ZMSCORE", "")
	for _, id := range ids {
		args = append(args, id)
	}
	sets := []string{"pending", "processing", "delayed"}
	cmds := make([]*redis.Cmd, len(sets))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, set := range sets {
			a := append([]any(nil), args...)
			a[1] = q.Key(set)
			cmds[i] = p.Do(ctx, a...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: look up %d jobs: %w", len(ids), err)
	}
	// A member that is not in a set has a nil score (a score may be 0).
	scores := make([][]any, len(cmds))
	for i, c := range cmds {
		v, err := c.Slice()
		if err != nil {
			return nil, fmt.Errorf("queue: look up %d jobs in %s: %w", len(ids), q.Key(sets[i]), err)
		}
		if len(v) != len(ids) {
			return nil, fmt.Errorf("queue: look up %d jobs in %s: %d scores came back", len(ids), q.Key(sets[i]), len(v))
		}
		scores[i] = v
	}
	var missing []int64
	for i, id := range ids {
		if scores[0][i] == nil && scores[1][i] == nil && scores[2][i] == nil {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// RenewMany moves the lease deadline of processing jobs, and of the key
// slots they hold, to deadline, in one call (an id no longer in
// processing is not added back).
func (q *redisQueue) RenewMany(ctx context.Context, deadline time.Time, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if err := q.runIDs(ctx, renewScript, ids, deadline.UnixMilli()); err != nil {
		return fmt.Errorf("queue: renew the leases of %d jobs: %w", len(ids), err)
	}
	return nil
}

// AckExpired drops the lease entries of ids whose lease has run out, giving
// back their key slots, and returns how many it dropped. An entry whose
// lease still runs is kept: its claim may be in flight (the row not yet
// moved to processing).
func (q *redisQueue) AckExpired(ctx context.Context, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := append([]any{q.prefix, q.clock.Now().UnixMilli()}, int64sToAny(ids)...)
	dropped, err := ackExpiredScript.Run(ctx, q.rdb, nil, args...).StringSlice()
	if err != nil {
		return 0, fmt.Errorf("queue: ack %d expired leases: %w", len(ids), err)
	}
	return len(dropped), nil
}

// Members returns every job id in the pending, delayed or processing set,
// with the set it is in.
func (q *redisQueue) Members(ctx context.Context) (map[int64]string, error) {
	out := map[int64]string{}
	for _, set := range []string{"pending", "delayed", "processing"} {
		ids, err := q.rdb.ZRange(ctx, q.Key(set), 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("queue: list %s: %w", set, err)
		}
		for _, m := range ids {
			id, err := strconv.ParseInt(m, 10, 64)
			if err != nil {
				continue
			}
			out[id] = set
		}
	}
	return out, nil
}

// Ping checks that Redis answers.
func (q *redisQueue) Ping(ctx context.Context) error {
	if err := q.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("queue: ping redis: %w", err)
	}
	return nil
}

func int64sToAny(ids []int64) []any {
	out := make([]any, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

// Waiting says, for each pending job given, what holds it back, if
// anything: the wait the queue noted when it set the job aside (a paused
// key, a rate window, a full concurrency limit, a held type), or else an
// operator's hold of its type or a pause of one of its keys that the job
// has not met yet. One round trip.
func (q *redisQueue) Waiting(ctx context.Context, jobs []*models.Job) (map[int64]*models.WaitingFor, error) {
	if len(jobs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(jobs))
	var keys, types []string
	for i, j := range jobs {
		ids[i] = strconv.FormatInt(j.ID, 10)
		keys = append(keys, j.FlowKeys...)
		types = append(types, j.Type)
	}
	var noted, held *redis.SliceCmd
	var paused *redis.SliceCmd
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		noted = p.HMGet(ctx, q.Key("waiting"), ids...)
		held = p.HMGet(ctx, q.Key("typeholds"), types...)
		if len(keys) > 0 {
			paused = p.HMGet(ctx, q.Key("pauses"), keys...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("queue: what %d jobs wait for: %w", len(ids), err)
	}
	now := q.clock.Now()
	pauses := map[string]*models.WaitingFor{}
	if paused != nil {
		for i, v := range paused.Val() {
			if s, ok := v.(string); ok {
				if w := parsePause(keys[i], s); active(w, now) {
					pauses[keys[i]] = w
				}
			}
		}
	}
	out := map[int64]*models.WaitingFor{}
	for i, j := range jobs {
		if s, ok := noted.Val()[i].(string); ok {
			if w := parseWaiting(s); w != nil && (w.Until == nil || w.Until.After(now)) {
				out[j.ID] = w
				continue
			}
		}
		if reason, ok := held.Val()[i].(string); ok {
			out[j.ID] = &models.WaitingFor{Key: "type:" + j.Type, Reason: "job type paused by an operator: " + reason}
			continue
		}
		for _, k := range j.FlowKeys {
			if w := pauses[k]; w != nil {
				out[j.ID] = w
				break
			}
		}
	}
	return out, nil
}

// parseWaiting reads a waiting entry: key, until (ms, 0 for none) and
// reason, a line each.
func parseWaiting(s string) *models.WaitingFor {
	parts := strings.SplitN(s, "\n", 3)
	if len(parts) != 3 {
		return nil
	}
	w := &models.WaitingFor{Key: parts[0], Reason: parts[2]}
	if ms, err := strconv.ParseInt(parts[1], 10, 64); err == nil && ms > 0 {
		t := time.UnixMilli(ms).UTC()
		w.Until = &t
	}
	return w
}

// parsePause reads a pause entry of key: until (ms, -1 for an operator's
// hold, which has no end), a space, the reason.
func parsePause(key, s string) *models.WaitingFor {
	ms, reason, _ := strings.Cut(s, " ")
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return nil
	}
	if n < 0 {
		return &models.WaitingFor{Key: key, Reason: "paused by an operator: " + reason}
	}
	t := time.UnixMilli(n).UTC()
	return &models.WaitingFor{Key: key, Until: &t, Reason: reason}
}

// active reports whether a pause read by parsePause still holds at now.
func active(w *models.WaitingFor, now time.Time) bool {
	return w != nil && (w.Until == nil || w.Until.After(now))
}
