// Command bench runs jobhook, River and asynq side by side through the same
// phases on one Postgres and one Redis, interleaved round by round, and
// prints every metric with its min, median and max over the rounds and the
// ratios of jobhook's median to River's and asynq's:
//
//  1. create: 16 goroutines insert N no-op jobs through each library's
//     ordinary insert call (jobs.Service.Create, Client.Insert,
//     Client.Enqueue).
//  2. batch create: jobhook's Service.CreateMany (beside InsertMany) and
//     River's InsertMany and InsertManyFast (COPY), in batches; asynq has
//     no batch create.
//  3. drain: M no-op jobs are preloaded, then timed until all are
//     completed at concurrency 50.
//  4. latency: jobs are inserted at a fixed rate while the workers run;
//     p50 and p99 of the time from the insert call to the handler's start.
//  5. HTTP (jobhook only): `jobhook serve` (built with -tags chaos) runs as
//     a subprocess and `jobhook load` drives POST /api/jobs with 16 clients,
//     then again on a server without QStash, so that no drain runs beside
//     the creates (as none does in the create phase).
//
// Everything lives in the schema "bench" of the database (created if
// missing, dropped at the end) and under the Redis keys "jobhook-bench*"
// and "asynq:*" of the Redis database given (deleted before and after).
//
//	cd bench && go run . -db $TEST_DATABASE_URL -redis $TEST_REDIS_URL
//
// This is its own Go module, so River and asynq never enter jobhook's
// dependencies, and `go test ./...` at the repository's root skips it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// system is one job system driven through the phases. Every method
// starts from an empty store unless it says otherwise.
type system interface {
	// name is the column the system's figures appear under.
	name() string
	// probe is what the system's no-op handler reports to.
	probe() *probe
	// insert creates one no-op job through the library's ordinary insert
	// call; sentNanos travels in the payload for the latency phase.
	insert(ctx context.Context, sentNanos int64) error
	// batch inserts n jobs through each batch API the system has, in
	// batches of size, returning each API's name and time; none when it
	// has no batch API.
	batch(ctx context.Context, n, size int) ([]timed, error)
	// preload creates m jobs for the drain, untimed.
	preload(ctx context.Context, m int) error
	// drain runs workers at concurrency 50 until the m preloaded jobs are
	// all completed, and returns how long that took.
	drain(ctx context.Context, m int) (time.Duration, error)
	// startWorkers starts workers for the latency phase; stop stops them.
	startWorkers(ctx context.Context) (stop func(), err error)
	// reset deletes every job of the system.
	reset(ctx context.Context) error
	// counter counts the system's statements and Redis calls; nil when
	// they are not counted.
	counter() *counter
	// close releases the system's connections.
	close()
}

// timed is one measured run of a named API.
type timed struct {
	api string
	d   time.Duration
}

// options are the command's flags.
type options struct {
	db, redis       string
	rounds          int
	createJobs      int
	createWorkers   int
	batchSize       int
	drainJobs       int
	concurrency     int
	pgConns         int
	latencyRate     int
	latencyDuration time.Duration
	httpJobs        int
	repo            string
	skipHTTP        bool
	// systems and phases are comma-separated lists of what runs.
	systems, phases string
	cpuProfile      string
}

func main() {
	var o options
	flag.StringVar(&o.db, "db", "postgres://postgres@127.0.0.1:5432/jobhook_bench?sslmode=disable", "Postgres URL; the database is created if missing, and the bench works in its schema \"bench\"")
	flag.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379/9", "Redis URL; keys jobhook-bench* and asynq:* of this database are deleted before and after")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each runs every phase for every system")
	flag.IntVar(&o.createJobs, "create-jobs", 20000, "jobs per create and batch create phase")
	flag.IntVar(&o.createWorkers, "create-goroutines", 16, "goroutines inserting in the create phase")
	flag.IntVar(&o.batchSize, "batch-size", 1000, "jobs per batch in the batch create phase")
	flag.IntVar(&o.drainJobs, "drain-jobs", 50000, "jobs preloaded for the drain phase")
	flag.IntVar(&o.concurrency, "concurrency", 50, "handlers running at once in the drain and latency phases")
	flag.IntVar(&o.pgConns, "pg-conns", 20, "pool size of jobhook's and River's Postgres and of jobhook's and asynq's Redis (jobhook's default; River's own would be 4 on 2 cores)")
	flag.IntVar(&o.latencyRate, "latency-rate", 500, "jobs inserted per second in the latency phase")
	flag.DurationVar(&o.latencyDuration, "latency-duration", 10*time.Second, "length of the latency phase")
	flag.IntVar(&o.httpJobs, "http-jobs", 5000, "jobs created through HTTP (jobhook load) per round")
	flag.StringVar(&o.repo, "repo", "..", "jobhook's repository root, where ./cmd/jobhook is built from")
	flag.BoolVar(&o.skipHTTP, "skip-http", false, "skip the HTTP phase")
	flag.StringVar(&o.systems, "systems", "jobhook,river,asynq", "comma-separated systems to run")
	flag.StringVar(&o.phases, "phases", "create,batch,drain,latency", "comma-separated phases of the library runs (create, batch, drain, latency); -skip-http skips the HTTP one")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (the bench process: every library's client side) to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.rounds < 1 || o.createJobs < 1 || o.drainJobs < 1 || o.concurrency < 1 || o.latencyRate < 1 || o.createWorkers < 1 || o.batchSize < 1 {
		return errors.New("rounds, create-jobs, create-goroutines, batch-size, drain-jobs, concurrency and latency-rate must be at least 1")
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	startLoad := loadAvg()
	fmt.Printf("load average at start: %s\n", startLoad)

	env, err := openEnv(ctx, o)
	if err != nil {
		return err
	}
	defer env.close(context.WithoutCancel(ctx))

	jh, err := newJobhook(ctx, env, o, quiet)
	if err != nil {
		return err
	}
	defer jh.close()
	rv, err := newRiver(ctx, env, o, quiet)
	if err != nil {
		return err
	}
	defer rv.close()
	aq := newAsynq(env, o)
	defer aq.close()
	systems, err := choose(o.systems, []system{jh, rv, aq})
	if err != nil {
		return err
	}
	phases, err := parsePhases(o.phases)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}

	var web *httpBench
	if !o.skipHTTP {
		progress("building jobhook serve (-tags chaos)")
		if web, err = newHTTPBench(ctx, env, o); err != nil {
			return err
		}
		defer web.close()
	}

	res := newResults()
	for _, m := range metricOrder {
		res.get(m.name, m.unit)
	}
	for round := 1; round <= o.rounds; round++ {
		for _, s := range systems {
			if err := runPhases(ctx, env, s, o, phases, res, round); err != nil {
				return fmt.Errorf("round %d, %s: %w", round, s.name(), err)
			}
		}
		if web != nil {
			progress(fmt.Sprintf("round %d: jobhook HTTP", round))
			if err := env.resetRedis(ctx); err != nil {
				return err
			}
			r, err := web.run(ctx, o.httpJobs, true)
			if err != nil {
				return fmt.Errorf("round %d, HTTP: %w", round, err)
			}
			res.add(metricHTTPCreate, perSecond, "jobhook", r.createRate)
			res.add(metricHTTPEndToEnd, perSecond, "jobhook", r.endToEnd)
			if err := jh.reset(ctx); err != nil {
				return err
			}
			progress(fmt.Sprintf("round %d: jobhook HTTP, no drain running", round))
			if err := env.resetRedis(ctx); err != nil {
				return err
			}
			if r, err = web.run(ctx, o.httpJobs, false); err != nil {
				return fmt.Errorf("round %d, HTTP without drains: %w", round, err)
			}
			res.add(metricHTTPCreateAlone, perSecond, "jobhook", r.createRate)
			if err := jh.reset(ctx); err != nil {
				return err
			}
		}
	}

	fmt.Printf("\n%d rounds; create %d jobs with %d goroutines; batches of %d; drain %d jobs at concurrency %d; latency at %d jobs/s for %s; HTTP %d jobs; pools of %d connections\n",
		o.rounds, o.createJobs, o.createWorkers, o.batchSize, o.drainJobs, o.concurrency, o.latencyRate, o.latencyDuration, o.httpJobs, o.pgConns)
	res.print(os.Stdout, []string{"jobhook", "river", "asynq"})
	fmt.Println("ratios are jobhook's median over the other's: above 1 means jobhook is higher (better for jobs/s, worse for ms)")
	if web != nil {
		c, _ := summarize(res.metrics[metricHTTPCreate].values["jobhook"])
		l, _ := summarize(res.metrics[metricCreate].values["jobhook"])
		a, _ := summarize(res.metrics[metricHTTPCreateAlone].values["jobhook"])
		if l.median > 0 {
			fmt.Printf("jobhook HTTP create / library create: %.2f (no drain running: %.2f)\n", c.median/l.median, a.median/l.median)
		}
	}
	fmt.Printf("load average at start: %s; at end: %s\n", startLoad, loadAvg())
	return nil
}

// Metric names, in the order they are printed.
const (
	metricCreate          = "create, 16 goroutines"
	metricBatchMany       = "batch create, InsertMany"
	metricBatchCopy       = "batch create, COPY (InsertManyFast)"
	metricDrain           = "drain, concurrency 50"
	metricDrainStatements = "drain: SQL statements"
	metricDrainCommits    = "drain: commits"
	metricDrainRedis      = "drain: Redis calls"
	metricLatencyP50      = "latency p50"
	metricLatencyP99      = "latency p99"
	metricHTTPCreate      = "HTTP create, 16 clients"
	metricHTTPEndToEnd    = "HTTP end to end"
	metricHTTPCreateAlone = "HTTP create, no drain running"
)

var metricOrder = []struct {
	name string
	unit unit
}{
	{metricCreate, perSecond}, {metricBatchMany, perSecond}, {metricBatchCopy, perSecond},
	{metricDrain, perSecond}, {metricDrainStatements, perJob}, {metricDrainCommits, perJob}, {metricDrainRedis, perJob},
	{metricLatencyP50, milliseconds}, {metricLatencyP99, milliseconds},
	{metricHTTPCreate, perSecond}, {metricHTTPEndToEnd, perSecond}, {metricHTTPCreateAlone, perSecond},
}

// batchMetrics are the batch create rows, noted "no API" for a system
// without one.
var batchMetrics = []string{metricBatchMany, metricBatchCopy}

// runPhases runs one round of phases 1–4 for one system.
func runPhases(ctx context.Context, e *env, s system, o options, phases map[string]bool, res *results, round int) error {
	name := s.name()
	step := func(phase string) { progress(fmt.Sprintf("round %d: %s %s", round, name, phase)) }

	if phases["create"] {
		step("create")
		if err := s.reset(ctx); err != nil {
			return err
		}
		d, err := createParallel(ctx, s, o.createJobs, o.createWorkers)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		res.add(metricCreate, perSecond, name, rate(o.createJobs, d))
	}

	if phases["batch"] {
		step("batch create")
		if err := s.reset(ctx); err != nil {
			return err
		}
		runs, err := s.batch(ctx, o.createJobs, o.batchSize)
		if err != nil {
			return fmt.Errorf("batch create: %w", err)
		}
		if len(runs) == 0 {
			for _, m := range batchMetrics {
				res.note(m, perSecond, name, "no API")
			}
		}
		for _, r := range runs {
			res.add(r.api, perSecond, name, rate(o.createJobs, r.d))
		}
	}

	if phases["drain"] {
		step("drain")
		if err := drainPhase(ctx, e, s, o, res); err != nil {
			return err
		}
	}

	if !phases["latency"] {
		return s.reset(ctx)
	}
	step("latency")
	if err := s.reset(ctx); err != nil {
		return err
	}
	lat, err := measureLatency(ctx, s, o.latencyRate, o.latencyDuration)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	res.add(metricLatencyP50, milliseconds, name, ms(percentile(lat, 50)))
	res.add(metricLatencyP99, milliseconds, name, ms(percentile(lat, 99)))
	return s.reset(ctx)
}

// drainPhase preloads the jobs, times their drain and counts, per drained
// job, the statements, commits and Redis calls the drain made.
func drainPhase(ctx context.Context, e *env, s system, o options, res *results) error {
	name := s.name()
	if err := s.reset(ctx); err != nil {
		return err
	}
	if err := s.preload(ctx, o.drainJobs); err != nil {
		return fmt.Errorf("preload: %w", err)
	}
	before, err := take(ctx, e, s.counter())
	if err != nil {
		return err
	}
	d, err := s.drain(ctx, o.drainJobs)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	res.add(metricDrain, perSecond, name, rate(o.drainJobs, d))
	after, err := take(ctx, e, s.counter())
	if err != nil {
		return err
	}
	per := func(n int64) float64 { return float64(n) / float64(o.drainJobs) }
	// The two reads of pg_stat_database commit once each.
	res.add(metricDrainCommits, perJob, name, per(after.commits-before.commits-1))
	if s.counter() == nil {
		res.note(metricDrainStatements, perJob, name, "not counted")
		res.note(metricDrainRedis, perJob, name, "not counted")
		return nil
	}
	res.add(metricDrainStatements, perJob, name, per(after.statements-before.statements))
	res.add(metricDrainRedis, perJob, name, per(after.redisCalls-before.redisCalls))
	return nil
}

// choose returns the systems named in list, in the order given.
func choose(list string, all []system) ([]system, error) {
	var out []system
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		found := false
		for _, s := range all {
			if s.name() == n {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("-systems: unknown system %q (jobhook, river, asynq)", n)
		}
	}
	return out, nil
}

// parsePhases returns the set of library phases named in list.
func parsePhases(list string) (map[string]bool, error) {
	out := map[string]bool{}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		switch n {
		case "create", "batch", "drain", "latency":
			out[n] = true
		default:
			return nil, fmt.Errorf("-phases: unknown phase %q (create, batch, drain, latency)", n)
		}
	}
	return out, nil
}

// startCPUProfile writes a CPU profile to path until the returned stop.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("-cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// createParallel inserts n jobs with g goroutines and returns the time.
func createParallel(ctx context.Context, s system, n, g int) (time.Duration, error) {
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for range g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) {
				if err := s.insert(ctx, 0); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), firstErr
}

// measureLatency inserts jobs at rate per second for d while the system's
// workers run, waits until every handler has started, and returns the
// insert-to-handler-start latencies, sorted.
func measureLatency(ctx context.Context, s system, rate int, d time.Duration) ([]time.Duration, error) {
	total := int(float64(rate) * d.Seconds())
	done := s.probe().arm(total, true)
	stop, err := s.startWorkers(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := range total {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.insert(ctx, time.Now().UnixNano()); err != nil {
				errOnce.Do(func() { firstErr = err })
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := waitDone(ctx, done, time.Minute); err != nil {
		return nil, fmt.Errorf("%d of %d handlers started: %w", s.probe().count.Load(), total, err)
	}
	return s.probe().recorded(), nil
}

// waitDone waits until done is closed, at most limit.
func waitDone(ctx context.Context, done <-chan struct{}, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("not done after %s", limit)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// waitFor polls cond every interval until it holds, at most limit.
func waitFor(ctx context.Context, interval, limit time.Duration, cond func(context.Context) (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// payload is the no-op jobs' payload: the insert time for the latency
// phase (0 otherwise).
func payload(sentNanos int64) []byte {
	if sentNanos == 0 {
		return []byte("{}")
	}
	return append(strconv.AppendInt([]byte(`{"t":`), sentNanos, 10), '}')
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), msg)
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
