package jobs

import (
	"context"
	"strconv"

	"github.com/redis/go-redis/v9"
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
	return q.runByPriority(ctx, "requeue", requeueScript, []string{q.Key("processing"), q.Key("pending"), q.Key("seq")}, items)
}
