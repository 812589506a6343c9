package jobs

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/jobhook/jobhook/internal/testenv"
)

// legacyClaimScript is the claim of the queue before flow keys and fair
// turns (one sorted set, ZPOPMIN), kept here only as the benchmarks'
// baseline.
var legacyClaimScript = redis.NewScript(`
local popped = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local ids = {}
for i = 1, #popped, 2 do
  redis.call('ZADD', KEYS[2], ARGV[2], popped[i])
  ids[#ids + 1] = popped[i]
end
return ids
`)

// BenchmarkClaimScript measures the Redis side of claiming b.N jobs in
// batches of 16, per job: the legacy script beside today's with one user,
// with 100 users taking turns, and with jobs that carry a flow key (100
// accounts, no limit reached). Reports ns/job.
func BenchmarkClaimScript(b *testing.B) {
	const batch = 16
	cases := []struct {
		name  string
		users int
		keys  bool
	}{
		{"legacy", 0, false},
		{"one-user", 1, false},
		{"100-users", 100, false},
		{"100-users-keyed", 100, true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			testenv.RunB(b, func(b *testing.B, be testenv.Backend) {
				ctx := context.Background()
				q := newRedisQueue(be.Redis, be.Prefix, nil, FlowLimit{Prefix: "ig:", Concurrency: 1 << 20})
				items := make([]queueItem, b.N)
				for i := range items {
					items[i] = queueItem{ID: int64(i + 1), Priority: i % 3}
					if c.users > 0 {
						var keys []string
						if c.keys {
							keys = []string{"ig:" + strconv.Itoa(i%100)}
						}
						items[i].Meta = encodeMeta("user-"+strconv.Itoa(i%c.users), "noop", keys)
					}
				}
				if c.users == 0 {
					zs := make([]redis.Z, len(items))
					for i, it := range items {
						zs[i] = redis.Z{Score: float64(it.Priority), Member: it.ID}
					}
					for start := 0; start < len(zs); start += 1000 {
						if err := be.Redis.ZAdd(ctx, q.Key("pending"), zs[start:min(start+1000, len(zs))]...).Err(); err != nil {
							b.Fatal(err)
						}
					}
				} else if err := q.Enqueue(ctx, items...); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(time.Hour).UnixMilli()
				b.ResetTimer()
				start := time.Now()
				claimed := 0
				for claimed < b.N {
					var n int
					if c.users == 0 {
						ids, err := legacyClaimScript.Run(ctx, be.Redis, []string{q.Key("pending"), q.Key("processing")}, batch, deadline).StringSlice()
						if err != nil {
							b.Fatal(err)
						}
						n = len(ids)
					} else {
						got, err := q.ClaimBatch(ctx, batch, time.Hour)
						if err != nil {
							b.Fatal(err)
						}
						n = len(got.IDs)
					}
					if n == 0 {
						b.Fatalf("claimed %d of %d", claimed, b.N)
					}
					claimed += n
				}
				b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(b.N), "ns/job")
			})
		})
	}
}
