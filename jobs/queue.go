package jobs

import (
	"context"
	"fmt"
	"strconv"
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

// queueItem is a job as the queue knows it: its id and priority.
type queueItem struct {
	ID       int64
	Priority int
}

// redisQueue is the Redis priority queue. Keys, under a configurable prefix:
//
//   - pending: sorted set of runnable job ids. The highest priority pops
//     first, and within one priority the first enqueued, exactly.
//   - processing: sorted set of claimed job ids scored by lease deadline
//     (Unix milliseconds).
//   - delayed: sorted set of job ids waiting for a retry, scored by the
//     time they may run (Unix milliseconds), with their priorities in the
//     hash delayed:priority.
//   - seq: the enqueue counter that orders jobs of equal priority.
//
// A job id is in at most one of the sets; every move between them is one
// atomic script call.
type redisQueue struct {
	rdb    redis.UniversalClient
	clock  Clock
	prefix string
}

// newRedisQueue returns a queue on rdb with keys under prefix (DefaultPrefix when
// empty). A nil clock is the system clock.
func newRedisQueue(rdb redis.UniversalClient, prefix string, clock Clock) *redisQueue {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if clock == nil {
		clock = SystemClock{}
	}
	return &redisQueue{rdb: rdb, clock: clock, prefix: prefix}
}

// Key returns the full name of one of the queue's keys.
func (q *redisQueue) Key(name string) string { return q.prefix + name }

// Prefix returns the queue's key prefix.
func (q *redisQueue) Prefix() string { return q.prefix }

// Redis returns the client the queue uses.
func (q *redisQueue) Redis() redis.UniversalClient { return q.rdb }

// enqueueScript adds ids to pending (NX: a job already pending keeps its
// place). KEYS: pending, seq. ARGV: id, inverted priority, id, ...
var enqueueScript = redis.NewScript(`
local n = #ARGV / 2
local last = redis.call('INCRBY', KEYS[2], n)
local added = 0
for i = 1, n do
  local seq = (last - n + i) % ` + strconv.Itoa(seqSpan) + `
  local score = tonumber(ARGV[2*i]) * ` + strconv.Itoa(seqSpan) + ` + seq
  added = added + redis.call('ZADD', KEYS[1], 'NX', string.format('%.0f', score), ARGV[2*i-1])
end
return added
`)

// Enqueue makes jobs runnable now. A job already pending keeps its place.
func (q *redisQueue) Enqueue(ctx context.Context, items ...queueItem) error {
	return q.runByPriority(ctx, "enqueue", enqueueScript, []string{q.Key("pending"), q.Key("seq")}, items)
}

// runByPriority runs script over items, at most maxArgsPerCall of them a
// call, with ARGV id, inverted priority, id, …; verb names the operation
// in errors.
func (q *redisQueue) runByPriority(ctx context.Context, verb string, script *redis.Script, keys []string, items []queueItem) error {
	for start := 0; start < len(items); start += maxArgsPerCall {
		chunk := items[start:min(start+maxArgsPerCall, len(items))]
		args := make([]any, 0, 2*len(chunk))
		for _, it := range chunk {
			if it.Priority < models.MinPriority || it.Priority > models.MaxPriority {
				return fmt.Errorf("queue: %s job %d: priority %d out of range", verb, it.ID, it.Priority)
			}
			args = append(args, it.ID, models.MaxPriority-it.Priority)
		}
		if err := script.Run(ctx, q.rdb, keys, args...).Err(); err != nil {
			return fmt.Errorf("queue: %s %d jobs: %w", verb, len(chunk), err)
		}
	}
	return nil
}

// delayScript moves ids to delayed, out of pending and processing.
// KEYS: delayed, delayed:priority, pending, processing. ARGV: runAtMs, id,
// priority, id, priority, ...
var delayScript = redis.NewScript(`
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZREM', KEYS[4], id)
  redis.call('ZADD', KEYS[1], ARGV[1], id)
  redis.call('HSET', KEYS[2], id, ARGV[i+1])
end
return 1
`)

// EnqueueAt makes jobs runnable at t (a retry's backoff, or a pending job
// that is not due yet). It moves them out of pending and processing.
func (q *redisQueue) EnqueueAt(ctx context.Context, t time.Time, items ...queueItem) error {
	for start := 0; start < len(items); start += maxArgsPerCall {
		chunk := items[start:min(start+maxArgsPerCall, len(items))]
		args := make([]any, 0, 1+2*len(chunk))
		args = append(args, t.UnixMilli())
		for _, it := range chunk {
			args = append(args, it.ID, it.Priority)
		}
		keys := []string{q.Key("delayed"), q.Key("delayed:priority"), q.Key("pending"), q.Key("processing")}
		if err := delayScript.Run(ctx, q.rdb, keys, args...).Err(); err != nil {
			return fmt.Errorf("queue: delay %d jobs: %w", len(chunk), err)
		}
	}
	return nil
}

// promoteScript moves due ids from delayed to pending.
// KEYS: delayed, delayed:priority, pending, seq. ARGV: nowMs, limit.
var promoteScript = redis.NewScript(`
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local n = #ids
if n == 0 then return 0 end
local last = redis.call('INCRBY', KEYS[4], n)
for i = 1, n do
  local id = ids[i]
  local p = tonumber(redis.call('HGET', KEYS[2], id) or '0') or 0
  local seq = (last - n + i) % ` + strconv.Itoa(seqSpan) + `
  local score = (` + strconv.Itoa(models.MaxPriority) + ` - p) * ` + strconv.Itoa(seqSpan) + ` + seq
  redis.call('ZADD', KEYS[3], 'NX', string.format('%.0f', score), id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
return n
`)

// PromoteDue moves every delayed job whose time has come to pending, and
// returns how many it moved.
func (q *redisQueue) PromoteDue(ctx context.Context) (int, error) {
	const batch = 1000
	total := 0
	keys := []string{q.Key("delayed"), q.Key("delayed:priority"), q.Key("pending"), q.Key("seq")}
	for {
		n, err := promoteScript.Run(ctx, q.rdb, keys, q.clock.Now().UnixMilli(), batch).Int()
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

// claimScript pops up to n ids from pending into processing with a lease
// deadline. KEYS: pending, processing. ARGV: n, deadlineMs.
var claimScript = redis.NewScript(`
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local ids = {}
for i = 1, #popped, 2 do
  redis.call('ZADD', KEYS[2], ARGV[2], popped[i])
  ids[#ids + 1] = popped[i]
end
return ids
`)

// Claim atomically moves up to n of the first pending jobs to processing,
// with a lease that ends after lease, and returns their ids in queue order.
func (q *redisQueue) Claim(ctx context.Context, n int, lease time.Duration) ([]int64, error) {
	if n <= 0 {
		return nil, nil
	}
	deadline := q.clock.Now().Add(lease).UnixMilli()
	raw, err := claimScript.Run(ctx, q.rdb, []string{q.Key("pending"), q.Key("processing")}, n, deadline).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("queue: claim %d jobs: %w", n, err)
	}
	ids := make([]int64, 0, len(raw))
	for _, s := range raw {
		id, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return ids, fmt.Errorf("queue: claim: bad job id %q in %s", s, q.Key("pending"))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Ack drops finished jobs from processing.
func (q *redisQueue) Ack(ctx context.Context, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	if err := q.rdb.ZRem(ctx, q.Key("processing"), int64sToAny(ids)...).Err(); err != nil {
		return fmt.Errorf("queue: ack %d jobs: %w", len(ids), err)
	}
	return nil
}

// releaseScript moves ids from processing back to the front of their
// priority in pending (sequence 0: they were claimed before anything still
// waiting), keeping no lease. KEYS: processing, pending. ARGV: id, inverted
// priority, ...
var releaseScript = redis.NewScript(`
local n = #ARGV / 2
for i = 1, n do
  redis.call('ZREM', KEYS[1], ARGV[2*i-1])
  local score = tonumber(ARGV[2*i]) * ` + strconv.Itoa(seqSpan) + `
  redis.call('ZADD', KEYS[2], string.format('%.0f', score), ARGV[2*i-1])
end
return n
`)

// Release gives claimed jobs back to pending, at the front of their
// priority: a job whose worker was lost or shut down runs again before the
// jobs that were queued after it.
func (q *redisQueue) Release(ctx context.Context, items ...queueItem) error {
	if len(items) == 0 {
		return nil
	}
	args := make([]any, 0, 2*len(items))
	for _, it := range items {
		args = append(args, it.ID, models.MaxPriority-it.Priority)
	}
	if err := releaseScript.Run(ctx, q.rdb, []string{q.Key("processing"), q.Key("pending")}, args...).Err(); err != nil {
		return fmt.Errorf("queue: release %d jobs: %w", len(items), err)
	}
	return nil
}

// Remove drops a job from every set, as when it is cancelled.
func (q *redisQueue) Remove(ctx context.Context, id int64) error {
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, q.Key("pending"), id)
		p.ZRem(ctx, q.Key("processing"), id)
		p.ZRem(ctx, q.Key("delayed"), id)
		p.HDel(ctx, q.Key("delayed:priority"), strconv.FormatInt(id, 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("queue: remove job %d: %w", id, err)
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

// RenewMany moves the lease deadline of processing jobs to deadline, in one
// call (ZADD XX: an id no longer in processing is not added back).
func (q *redisQueue) RenewMany(ctx context.Context, deadline time.Time, ids ...int64) error {
	if len(ids) == 0 {
		return nil
	}
	score := float64(deadline.UnixMilli())
	members := make([]redis.Z, len(ids))
	for i, id := range ids {
		members[i] = redis.Z{Score: score, Member: id}
	}
	if err := q.rdb.ZAddXX(ctx, q.Key("processing"), members...).Err(); err != nil {
		return fmt.Errorf("queue: renew the leases of %d jobs: %w", len(ids), err)
	}
	return nil
}

// ackExpiredScript drops from processing the ids whose lease deadline has
// passed. KEYS: processing. ARGV: now ms, id, ... Returns the ids dropped.
var ackExpiredScript = redis.NewScript(`
local dropped = {}
for i = 2, #ARGV do
  local deadline = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if deadline and tonumber(deadline) <= tonumber(ARGV[1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    dropped[#dropped + 1] = ARGV[i]
  end
end
return dropped
`)

// AckExpired drops the lease entries of ids whose lease has run out and
// returns how many it dropped. An entry whose lease still runs is kept: its
// claim may be in flight (the row not yet moved to processing).
func (q *redisQueue) AckExpired(ctx context.Context, ids ...int64) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	args := append([]any{q.clock.Now().UnixMilli()}, int64sToAny(ids)...)
	dropped, err := ackExpiredScript.Run(ctx, q.rdb, []string{q.Key("processing")}, args...).StringSlice()
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
