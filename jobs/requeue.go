package jobs

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/models"
)

// requeueScript moves ids from processing to the back of their priority in
// pending, each with a fresh sequence number as enqueueScript gives (NX: a
// job already pending keeps its place), keeping no lease. KEYS:
// processing, pending, seq. ARGV: id, inverted priority, id, ...
var requeueScript = redis.NewScript(`
local n = #ARGV / 2
local last = redis.call('INCRBY', KEYS[3], n)
for i = 1, n do
  redis.call('ZREM', KEYS[1], ARGV[2*i-1])
  local seq = (last - n + i) % ` + strconv.Itoa(seqSpan) + `
  local score = tonumber(ARGV[2*i]) * ` + strconv.Itoa(seqSpan) + ` + seq
  redis.call('ZADD', KEYS[2], 'NX', string.format('%.0f', score), ARGV[2*i-1])
end
return n
`)

// Requeue gives claimed jobs back to pending at the back of their
// priority, behind every job already waiting, as a new job would be
// (Release, by contrast, puts them in front). The reaper's jobs go there:
// see finisher.after.
func (q *redisQueue) Requeue(ctx context.Context, items ...queueItem) error {
	for start := 0; start < len(items); start += maxArgsPerCall {
		chunk := items[start:min(start+maxArgsPerCall, len(items))]
		args := make([]any, 0, 2*len(chunk))
		for _, it := range chunk {
			if it.Priority < models.MinPriority || it.Priority > models.MaxPriority {
				return fmt.Errorf("queue: requeue job %d: priority %d out of range", it.ID, it.Priority)
			}
			args = append(args, it.ID, models.MaxPriority-it.Priority)
		}
		keys := []string{q.Key("processing"), q.Key("pending"), q.Key("seq")}
		if err := requeueScript.Run(ctx, q.rdb, keys, args...).Err(); err != nil {
			return fmt.Errorf("queue: requeue %d jobs: %w", len(chunk), err)
		}
	}
	return nil
}
