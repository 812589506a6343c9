package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
)

// loadOptions are the flags of `jobhook load`.
type loadOptions struct {
	base        string
	jobs        int
	concurrency int
	typ         string
	payload     string
	timeout     time.Duration
	progress    time.Duration
	createOnly  bool
}

func loadCmd() *cobra.Command {
	var o loadOptions
	cmd := &cobra.Command{
		Use:   "load [--url URL] [--jobs N] [--concurrency N] [--type T] [--payload JSON] [--create-only]",
		Short: "create jobs through the API of a local server and report throughput",
		Long: `Create jobs through the HTTP API of a running local server, as one fresh
user, wait until none is open, and report the create rate and latencies,
the end-to-end throughput, and how many jobs completed, failed or were
refused. It prints progress to stderr every second and exits 1 when any
job failed or any create was refused. It only targets loopback addresses.

The default job scrapes the server's own home page (--url): web_scraping
reaches loopback addresses (and ports other than 80 and 443) only on a
server started with SCRAPE_ALLOW_PRIVATE=true, as the README's
walk-through starts it. The default --jobs fits the default per-user
create burst (CREATE_BURST); raise CREATE_RATE_PER_MINUTE and
CREATE_BURST on the server for larger runs.

With --create-only it reports the creates and exits without waiting for
the jobs: on a server that runs no drain meanwhile (EMBEDDED_QSTASH=false)
this measures the create path alone.`,
		Example:               `  jobhook load --url http://127.0.0.1:8080 --jobs 3000 --concurrency 16 --type chaos_record --payload '{"sleepMs":0}'`,
		DisableFlagsInUseLine: true,
		Args:                  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.jobs < 1 {
				return usagef("--jobs must be at least 1, not %d", o.jobs)
			}
			if o.concurrency < 1 {
				return usagef("--concurrency must be at least 1, not %d", o.concurrency)
			}
			if o.timeout <= 0 {
				return usagef("--timeout must be positive, not %s", o.timeout)
			}
			if o.progress <= 0 {
				return usagef("--progress-interval must be positive, not %s", o.progress)
			}
			u, err := url.Parse(o.base)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return usagef("--url %q is not an absolute http(s) URL", o.base)
			}
			if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
				return fmt.Errorf("--url must be a loopback address (localhost, 127.0.0.1, [::1]), not %s", u.Hostname())
			}
			o.base = strings.TrimRight(o.base, "/")
			if !cmd.Flags().Changed("payload") {
				o.payload = "{}"
				if o.typ == "web_scraping" {
					o.payload = fmt.Sprintf(`{"url":%q}`, o.base+"/")
				}
			}
			if !json.Valid([]byte(o.payload)) {
				return usagef("--payload is not JSON")
			}
			return runLoad(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.base, "url", fmt.Sprintf("http://localhost:%d", config.DefaultPort), "the server (loopback only)")
	f.IntVar(&o.jobs, "jobs", config.DefaultCreateBurst, "how many jobs to create")
	f.IntVar(&o.concurrency, "concurrency", 16, "concurrent creates")
	f.StringVar(&o.typ, "type", "web_scraping", "job type")
	f.StringVar(&o.payload, "payload", "", `job payload, a JSON object (default for web_scraping: {"url":"<--url>/"}; otherwise {})`)
	f.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up after this long")
	f.DurationVar(&o.progress, "progress-interval", time.Second, "how often progress is printed to stderr")
	f.BoolVar(&o.createOnly, "create-only", false, "report the creates and exit without waiting for the jobs to finish")
	return reads(cmd, "AUTH_JWT_SECRET", "AUTH_JWKS_URL")
}

// loadRun is one run's shared state.
type loadRun struct {
	o      loadOptions
	client *http.Client
	token  string

	sent, created atomic.Int64
	mu            sync.Mutex
	latencies     []time.Duration
	refused       map[string]int // "429 Too Many Requests (rate_limited)" → count
	transport     int            // creates that got no answer
	firstErr      error          // the first of those errors

	// open and failed are the last counts while waiting, for progress.
	waiting      atomic.Bool
	open, failed atomic.Int64
}

func runLoad(ctx context.Context, o loadOptions, stdout, stderr io.Writer) error {
	cfg, err := config.Load("AUTH_JWT_SECRET", "AUTH_JWKS_URL")
	if err != nil {
		return err
	}
	if cfg.AuthJWTSecret == "" {
		return errors.New("AUTH_JWT_SECRET is needed to mint the load user's token")
	}
	user := fmt.Sprintf("load-%d", time.Now().UnixNano())
	token, err := auth.MintHS256([]byte(cfg.AuthJWTSecret), user, o.timeout+time.Hour, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	r := &loadRun{
		o:       o,
		client:  &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency}},
		token:   token,
		refused: map[string]int{},
	}
	start := time.Now()
	stopProgress := r.showProgress(stderr, start)
	defer stopProgress()

	r.createAll(ctx)
	created := time.Since(start)
	r.mu.Lock()
	sort.Slice(r.latencies, func(i, j int) bool { return r.latencies[i] < r.latencies[j] })
	n := len(r.latencies)
	fmt.Fprintf(stdout, "created %d jobs in %s: %.0f jobs/s", n, created.Round(time.Millisecond), float64(n)/created.Seconds())
	if n > 0 {
		fmt.Fprintf(stdout, ", latency p50 %s p99 %s", pct(r.latencies, 50), pct(r.latencies, 99))
	}
	fmt.Fprintln(stdout)
	refused := 0
	if len(r.refused) > 0 {
		var parts []string
		for why, c := range r.refused {
			refused += c
			parts = append(parts, fmt.Sprintf("%d with %s", c, why))
		}
		sort.Strings(parts)
		fmt.Fprintf(stdout, "refused %d creates: %s\n", refused, strings.Join(parts, ", "))
		for why := range r.refused {
			if strings.HasPrefix(why, "429 ") {
				fmt.Fprintln(stdout, "  the server limits creates per user: raise CREATE_RATE_PER_MINUTE and CREATE_BURST on it for a run this large")
				break
			}
		}
	}
	if r.transport > 0 {
		fmt.Fprintf(stdout, "could not send %d creates: %v\n", r.transport, r.firstErr)
	}
	r.mu.Unlock()
	if ctx.Err() != nil {
		return fmt.Errorf("gave up after %s while creating jobs", o.timeout)
	}
	if o.createOnly {
		return createProblems(refused, r.transport)
	}

	r.waiting.Store(true)
	counts, err := r.waitUntilFinished(ctx)
	if err != nil {
		return err
	}
	total := time.Since(start)
	fmt.Fprintf(stdout, "all finished in %s after the first create: %d completed, %d failed", total.Round(time.Millisecond), counts["completed"], counts["failed"])
	if c := counts["cancelled"]; c > 0 {
		fmt.Fprintf(stdout, ", %d cancelled", c)
	}
	fmt.Fprintf(stdout, "; %.0f jobs/s end to end (user %s)\n", float64(counts["completed"])/total.Seconds(), user)
	if counts["failed"] > 0 {
		if why, err := r.firstFailure(ctx); err == nil && why != "" {
			fmt.Fprintf(stdout, "  a failed job's error: %s\n", why)
		}
		if o.typ == "web_scraping" {
			fmt.Fprintln(stdout, "  web_scraping reaches loopback and private addresses, and ports other than 80 and 443, only on a server started with SCRAPE_ALLOW_PRIVATE=true")
		}
	}
	var problems []string
	if f := counts["failed"]; f > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d jobs failed", f, n))
	}
	if err := createProblems(refused, r.transport); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// createProblems says how many creates were refused or not sent, nil when
// none.
func createProblems(refused, unsent int) error {
	var problems []string
	if refused > 0 {
		problems = append(problems, fmt.Sprintf("%d creates were refused", refused))
	}
	if unsent > 0 {
		problems = append(problems, fmt.Sprintf("%d creates could not be sent", unsent))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// createAll creates the jobs with o.concurrency workers.
func (r *loadRun) createAll(ctx context.Context) {
	body := fmt.Sprintf(`{"type":%q,"payload":%s}`, r.o.typ, r.o.payload)
	var wg sync.WaitGroup
	for w := 0; w < r.o.concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r.sent.Add(1) <= int64(r.o.jobs) && ctx.Err() == nil {
				t0 := time.Now()
				status, code, err := r.post(ctx, r.o.base+"/api/jobs", body)
				r.mu.Lock()
				switch {
				case err != nil:
					r.transport++
					if r.firstErr == nil {
						r.firstErr = err
					}
				case status != http.StatusCreated:
					why := fmt.Sprintf("%d %s", status, http.StatusText(status))
					if code != "" {
						why += " (" + code + ")"
					}
					r.refused[why]++
				default:
					r.latencies = append(r.latencies, time.Since(t0))
					r.created.Add(1)
				}
				r.mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

// showProgress prints a line to w every o.progress until stopped.
func (r *loadRun) showProgress(w io.Writer, start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(r.o.progress)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			elapsed := time.Since(start).Round(time.Second)
			if !r.waiting.Load() {
				sent := min(r.sent.Load(), int64(r.o.jobs))
				fmt.Fprintf(w, "load: %s: creating, %d of %d sent, %d created\n", elapsed, sent, r.o.jobs, r.created.Load())
				continue
			}
			fmt.Fprintf(w, "load: %s: %d created, waiting: %d open, %d failed so far\n", elapsed, r.created.Load(), r.open.Load(), r.failed.Load())
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// waitUntilFinished waits until the user has no open job, and returns the
// jobs counted by final status.
func (r *loadRun) waitUntilFinished(ctx context.Context) (map[string]int, error) {
	open := []string{"pending", "processing", "scheduled"}
	lastCount := time.Time{}
	for {
		// A cheap check for any open job, and once per progress interval
		// a full count for the progress line.
		someOpen := false
		for _, st := range open {
			c, err := r.countJobs(ctx, st, 1)
			if err != nil {
				return nil, r.waitError(ctx, err)
			}
			someOpen = someOpen || c > 0
		}
		if !someOpen {
			break
		}
		if time.Since(lastCount) >= r.o.progress {
			lastCount = time.Now()
			total := 0
			for _, st := range open {
				c, err := r.countJobs(ctx, st, -1)
				if err != nil {
					return nil, r.waitError(ctx, err)
				}
				total += c
			}
			failed, err := r.countJobs(ctx, "failed", -1)
			if err != nil {
				return nil, r.waitError(ctx, err)
			}
			r.open.Store(int64(total))
			r.failed.Store(int64(failed))
		}
		select {
		case <-ctx.Done():
			return nil, r.waitError(ctx, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	counts := map[string]int{}
	for _, st := range []string{"completed", "failed", "cancelled"} {
		c, err := r.countJobs(ctx, st, -1)
		if err != nil {
			return nil, r.waitError(ctx, err)
		}
		counts[st] = c
	}
	return counts, nil
}

func (r *loadRun) waitError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("jobs still open after %s (%d open at the last count)", r.o.timeout, r.open.Load())
	}
	return fmt.Errorf("waiting for the jobs: %w", err)
}

// firstFailure returns the error of the newest failed job.
func (r *loadRun) firstFailure(ctx context.Context) (string, error) {
	var page struct {
		Jobs []struct {
			ID    int64  `json:"id"`
			Error string `json:"error"`
		} `json:"jobs"`
	}
	if err := r.get(ctx, r.o.base+"/api/jobs?limit=1&status=failed", &page); err != nil || len(page.Jobs) == 0 {
		return "", err
	}
	return fmt.Sprintf("job %d: %s", page.Jobs[0].ID, page.Jobs[0].Error), nil
}

// countJobs counts the user's jobs with a status, paging through the
// list; with limit 1 it only says whether there is one (0 or 1).
func (r *loadRun) countJobs(ctx context.Context, status string, limit int) (int, error) {
	pageSize := 100
	if limit > 0 {
		pageSize = limit
	}
	total, cursor := 0, ""
	for {
		u := fmt.Sprintf("%s/api/jobs?limit=%d&status=%s", r.o.base, pageSize, status)
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		var page struct {
			Jobs       []json.RawMessage `json:"jobs"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := r.get(ctx, u, &page); err != nil {
			return 0, err
		}
		total += len(page.Jobs)
		if limit > 0 || page.NextCursor == "" {
			return total, nil
		}
		cursor = page.NextCursor
	}
}

// post sends one create and returns the status and error code.
func (r *loadRun) post(ctx context.Context, u, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewBufferString(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	req.Header.Set("Content-Type", "application/json")
	res, err := r.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &e)
	return res.StatusCode, e.Error.Code, nil
}

// get reads one JSON answer into v.
func (r *loadRun) get(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.token)
	res, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", u, res.StatusCode, http.StatusText(res.StatusCode))
	}
	return json.NewDecoder(res.Body).Decode(v)
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted) - 1) * p / 100
	return sorted[i].Round(time.Microsecond)
}
