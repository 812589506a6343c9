package jobs

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/jobhook/jobhook/jobs/internal/store"
)

// Completer defaults.
const (
	// completerMaxBatch is the most transitions one write applies.
	completerMaxBatch = 500
	// completerQueue is how many transitions may wait for a write; a
	// handler that finds it full waits (and keeps its slot).
	completerQueue = 2 * completerMaxBatch
	// completerRetryFirst and completerRetryMax space the retries of a
	// batch whose write failed on a transient error.
	completerRetryFirst = 10 * time.Millisecond
	completerRetryMax   = time.Second
	// completerTryTimeout bounds one try of a batch's write (and of a
	// claim's statement); no try outlasts the retries' end either.
	completerTryTimeout = 10 * time.Second
	// completerLinger is the longest a write waits for jobs still in
	// their handlers to join it.
	completerLinger = 2 * time.Millisecond
)

// completion is one job's transition waiting for the completer.
type completion struct {
	item finishing
	// until is when the job's lease would run out: retries stop there
	// (the reaper then owns the job).
	until time.Time
	// reply gets what the write came to, once it is known.
	reply func(store.Applied, error)
}

// completer batches the transitions of the jobs a drain ran: every
// transition waiting when a write starts goes into that write (up to
// completerMaxBatch), applied through the finisher in one transaction (one
// UPDATE, one multi-row INSERT of the attempts, one Redis ack). While other
// jobs are still in their handlers a write waits up to completerLinger for
// them; a lone job's transition is written at once, so latency stays low
// under light load, and batches grow with the load. A write that
// fails on a transient error (connection lost, serialization, deadline) is
// retried with backoff until a lease of the batch would run out: the
// writes are fenced, so a retry never applies twice.
type completer struct {
	fin  *finisher
	log  *slog.Logger
	in   chan completion
	done chan struct{}
	// busy, when set, counts the jobs still in their handlers, whose
	// transitions may join the next write.
	busy func() int64
	// apply writes a batch (the finisher's apply); tests wrap it to
	// inject faults.
	apply func(ctx context.Context, items []finishing) ([]store.Applied, error)
	// sleep waits between retries.
	sleep func(ctx context.Context, d time.Duration) error
}

func newCompleter(fin *finisher, log *slog.Logger) *completer {
	return &completer{fin: fin, log: log.With("component", "completer"), in: make(chan completion, completerQueue), done: make(chan struct{}), apply: fin.apply, sleep: sleepCtx}
}

// start runs the completer until stop; ctx bounds nothing but carries
// values (writes outlive a cancelled drain: their outcome is known).
func (c *completer) start(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(c.done)
		for first := range c.in {
			c.write(ctx, c.gather(first))
		}
	}()
}

// gather collects a batch: what is waiting, then (while jobs are still in
// their handlers) what arrives within completerLinger.
func (c *completer) gather(first completion) []completion {
	batch := []completion{first}
	var linger *time.Timer
	defer func() {
		if linger != nil {
			linger.Stop()
		}
	}()
	for len(batch) < completerMaxBatch {
		select {
		case next, ok := <-c.in:
			if !ok {
				return batch
			}
			batch = append(batch, next)
			continue
		default:
		}
		if c.busy == nil || c.busy() == 0 {
			return batch
		}
		if linger == nil {
			linger = time.NewTimer(completerLinger)
		}
		select {
		case next, ok := <-c.in:
			if !ok {
				return batch
			}
			batch = append(batch, next)
		case <-linger.C:
			return batch
		}
	}
	return batch
}

// submit hands one transition to the completer. Its reply runs on the
// completer's goroutine.
func (c *completer) submit(cp completion) { c.in <- cp }

// stop writes what was submitted and returns when the completer has
// ended. Nothing may be submitted after.
func (c *completer) stop() {
	close(c.in)
	<-c.done
}

// write applies one batch, retrying transient errors, and replies to every
// job of it.
func (c *completer) write(ctx context.Context, batch []completion) {
	items := make([]finishing, len(batch))
	until := batch[0].until
	for i, cp := range batch {
		items[i] = cp.item
		if cp.until.Before(until) {
			until = cp.until
		}
	}
	var applied []store.Applied
	tries, err := retryTransient(ctx, until, c.sleep, func(ctx context.Context) error {
		var err error
		applied, err = c.apply(ctx, items)
		return err
	}, func(try int, wait time.Duration, err error) {
		c.log.Warn("recording job outcomes failed; retrying", "count", len(batch), "try", try, "in", wait, "err", err)
	})
	c.fin.metrics.CompleterBatch(len(batch), tries)
	if err != nil {
		c.log.Error("job outcomes not recorded; their leases' expiry brings the jobs back", "count", len(batch), "tries", tries, "err", err)
		for _, cp := range batch {
			cp.reply(store.Applied{}, err)
		}
		return
	}
	for i, cp := range batch {
		cp.reply(applied[i], nil)
	}
}

// retryTransient runs do, each try bounded by completerTryTimeout and by
// until, until it succeeds, fails on an error that is not transient, ctx
// ends, or the next wait would end after until. Between tries it sleeps (completerRetryFirst,
// doubling up to completerRetryMax) and calls retrying. It returns how many
// tries it made and the last error. A fenced write is safe to retry.
func retryTransient(ctx context.Context, until time.Time, sleep func(context.Context, time.Duration) error,
	do func(ctx context.Context) error, retrying func(try int, wait time.Duration, err error)) (int, error) {
	wait := completerRetryFirst
	for try := 1; ; try++ {
		tctx, cancel := boundedCtx(ctx, completerTryTimeout, until)
		err := do(tctx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil || time.Now().Add(wait).After(until) {
			return try, err
		}
		retrying(try, wait, err)
		if sleep(ctx, wait) != nil {
			return try, err
		}
		wait = min(2*wait, completerRetryMax)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// transient reports whether a failed write may succeed if tried again: the
// connection was lost or refused, the server is shutting down or out of
// resources, the transaction was a serialization or deadlock victim, or the
// try ran out of time. A constraint or data error is not.
func transient(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && len(pg.Code) >= 2 {
		switch pg.Code[:2] {
		case "08", "40", "53", "57", "58":
			return true
		}
		return false
	}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, driver.ErrBadConn),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE),
		errors.As(err, &ne), pgconn.SafeToRetry(err), pgconn.Timeout(err):
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"conn closed", "connection reset", "broken pipe", "unexpected eof", "database is locked", "sqlite_busy", "bad connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
