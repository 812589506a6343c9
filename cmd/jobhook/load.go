package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jobhook/jobhook/internal/auth"
	"github.com/jobhook/jobhook/internal/config"
)

// loadCmd serves `jobhook load`: it creates jobs through the HTTP API of a
// running server, as one fresh user, and waits until none is pending or
// processing. It reports the create rate and latencies and the end-to-end
// throughput. It only targets loopback addresses.
func loadCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://localhost:8080", "the server (loopback only)")
	n := fs.Int("jobs", 1000, "how many jobs to create")
	conc := fs.Int("concurrency", 16, "concurrent creates")
	typ := fs.String("type", "web_scraping", "job type")
	payload := fs.String("payload", `{"url":"http://localhost:8080/"}`, "job payload (JSON object)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 || *n < 1 || *conc < 1 {
		return errUsage
	}
	u, err := url.Parse(*base)
	if err != nil || u.Host == "" {
		return fmt.Errorf("--url %q is not a URL", *base)
	}
	if ip := net.ParseIP(u.Hostname()); u.Hostname() != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--url must be a loopback address (localhost, 127.0.0.1, [::1]), not %s", u.Hostname())
	}
	if !json.Valid([]byte(*payload)) {
		return errors.New("--payload is not JSON")
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	if cfg.AuthJWTSecret == "" {
		return errors.New("AUTH_JWT_SECRET is needed to mint the load user's token")
	}
	user := fmt.Sprintf("load-%d", time.Now().UnixNano())
	token, err := auth.MintHS256([]byte(cfg.AuthJWTSecret), user, *timeout+time.Hour, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: *conc}}
	body := fmt.Sprintf(`{"type":%q,"payload":%s}`, *typ, *payload)

	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		failures  = map[int]int{}
		wg        sync.WaitGroup
	)
	start := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(*n) && ctx.Err() == nil {
				t0 := time.Now()
				status, err := post(ctx, client, *base+"/api/jobs", token, body)
				mu.Lock()
				if err != nil || status != http.StatusCreated {
					failures[status]++
				} else {
					latencies = append(latencies, time.Since(t0))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	fmt.Fprintf(stdout, "created %d jobs in %s: %.0f jobs/s", len(latencies), created.Round(time.Millisecond), float64(len(latencies))/created.Seconds())
	if len(latencies) > 0 {
		fmt.Fprintf(stdout, ", latency p50 %s p99 %s", pct(latencies, 50), pct(latencies, 99))
	}
	fmt.Fprintln(stdout)
	if len(failures) > 0 {
		fmt.Fprintf(stdout, "refused or failed creates by status (0 = transport error): %v\n", failures)
	}
	for {
		open := 0
		for _, st := range []string{"pending", "processing", "scheduled"} {
			c, err := count(ctx, client, *base+"/api/jobs?limit=1&status="+st, token)
			if err != nil {
				return fmt.Errorf("waiting for the jobs: %w", err)
			}
			open += c
		}
		if open == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jobs still open after %s", *timeout)
		case <-time.After(100 * time.Millisecond):
		}
	}
	total := time.Since(start)
	fmt.Fprintf(stdout, "all finished %s after the first create: %.0f jobs/s end to end (user %s)\n", total.Round(time.Millisecond), float64(len(latencies))/total.Seconds(), user)
	return nil
}

func post(ctx context.Context, c *http.Client, u, token, body string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewBufferString(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// count returns how many jobs a one-item list page holds (0 or 1).
func count(ctx context.Context, c *http.Client, u, token string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %d", u, res.StatusCode)
	}
	var page struct {
		Jobs []json.RawMessage `json:"jobs"`
	}
	if err := json.NewDecoder(res.Body).Decode(&page); err != nil {
		return 0, err
	}
	return len(page.Jobs), nil
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted) - 1) * p / 100
	return sorted[i].Round(time.Microsecond)
}
